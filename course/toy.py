"""Generate the three 2-D toy datasets of assignment 02 (shipped as ``course/datasets/*.npz``).

Each file holds ``arr_0`` = x_train (400, 2), ``arr_1`` = x_test (200, 2), ``arr_2`` = y_train
(400, 1) and ``arr_3`` = y_test (200, 1), all float32, labels 0/1, written with
``np.savez(f, x_train, x_test, y_train, y_test)``. The bytes are reproducible: the seeds are
fixed and ``np.savez`` stamps every zip member with the fixed date 1980-01-01 (only the zip's
"made on system" field differs when the files are written on Windows).

Run ``python -m course.toy [OUT_DIR]`` (or ``course data toy``) to regenerate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs, make_circles, make_moons

from course.data import TOY_DIR

N_TRAIN, N_TEST = 400, 200


def _blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian blobs: linearly separable."""
    return make_blobs(n_samples=n, centers=[(-2.5, -1.5), (2.5, 1.5)], cluster_std=0.8,
                      random_state=0)


def _moons(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half-moons, noise 0.2, and 3 % of the labels flipped."""
    x, y = make_moons(n_samples=n, noise=0.2, random_state=0)
    flip = np.random.default_rng(0).random(n) < 0.03
    return x, np.where(flip, 1 - y, y)


def _circles(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A ring around a disc (factor 0.5, noise 0.08): separable by a degree-2 feature map."""
    return make_circles(n_samples=n, factor=0.5, noise=0.08, random_state=0)


GENERATORS: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
    "toy_data": _blobs,
    "toy_data_two_moon": _moons,
    "toy_data_two_circles": _circles,
}


def make(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of toy dataset ``name``: ``(x_train, x_test, y_train, y_test)``, float32."""
    x, y = GENERATORS[name](N_TRAIN + N_TEST)
    x = x.astype(np.float32)
    y = y.astype(np.float32).reshape(-1, 1)
    return x[:N_TRAIN], x[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:]


def generate(out_dir: Path | str | None = None) -> list[Path]:
    """Write the three toy npz files into ``out_dir`` (default: the package's ``datasets``
    folder, where they ship); return their paths. Deterministic (same bytes on every run).
    Used for assignment 02."""
    folder = Path(out_dir) if out_dir is not None else TOY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in GENERATORS:
        path = folder / f"{name}.npz"
        tmp = path.with_name(f".{path.name}.part")
        with tmp.open("wb") as f:  # a file object, so np.savez keeps the name as given
            np.savez(f, *make(name))
        tmp.replace(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m course.toy [OUT_DIR]``: regenerate the toy files and print their paths."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m course.toy [OUT_DIR]  (default: the package's datasets folder)", file=sys.stderr)
        return 2
    for path in generate(args[0] if args else None):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
