"""The two scale profiles, defined once for every assignment.

``full`` (the default) is what students and instructors run; ``ci`` uses subsets and fewer
epochs so each notebook executes in about a minute on 2 CPU cores. Select with the
``COURSE_SCALE`` environment variable. Notebooks read their knobs with
``course.scale("<assignment id>")``; they never define a switch of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        # 01_kmeans: the 10,000 MNIST test images, k = 10, 20 Lloyd iterations.
        "01_kmeans": {"n_images": 10_000, "k": 10, "n_iters": 20, "n_scatter": 5_000},
        # 02_gradient_descent: epochs of each experiment on the tiny 2-D toy data, and the
        # side of the grid on which decision boundaries are drawn.
        "02_gradient_descent": {"gd_epochs": 200, "clf_epochs": 200, "circle_epochs": 300,
                                "mlp_epochs": 2_000, "grid": 250},
        # 03_autoencoder: all of MNIST; epochs and batch sizes of the three autoencoders (the
        # MLP one for 15 epochs, as in the course's reference numbers), images in the speed
        # comparison, points in each t-SNE map.
        "03_autoencoder": {"n_train": 60_000, "n_test": 10_000, "n_epochs": 15, "batch_size": 1024,
                           "linear_hidden": 50, "linear_lr": 1.0, "linear_epochs": 20,
                           "conv_epochs": 5, "conv_batch_size": 128, "conv_lr": 5e-3,
                           "n_speed": 10_240, "n_tsne": 2_000},
        # 04_contrastive: all of MNIST; the MLP autoencoder of 03 trained four ways (plain,
        # one class pair, all pairs, NT-Xent) with the same seed and batches, for 8 epochs
        # (not 03's 15: four runs of 15 took 13 minutes on a 2-core CPU without AVX-512; the
        # notebook must fit in about 10).
        "04_contrastive": {"n_train": 60_000, "n_test": 10_000, "n_epochs": 8,
                           "batch_size": 1024, "tau": 0.5, "weight": 1.0, "n_tsne": 2_000},
        # 05_vae: all of MNIST; PyTorch's example VAE (784-400-20, batch 128, Adam 1e-3) for
        # 10 epochs, the 2-D latent map model for 20, the denoising and anomaly models for 10;
        # the corruption's standard deviation.
        "05_vae": {"n_train": 60_000, "n_test": 10_000, "n_epochs": 10, "batch_size": 128,
                   "n_epochs_2d": 20, "n_epochs_uses": 10, "noise": 0.5},
    },
    "ci": {
        "01_kmeans": {"n_images": 3_000, "k": 10, "n_iters": 20, "n_scatter": 2_000},
        "02_gradient_descent": {"gd_epochs": 100, "clf_epochs": 100, "circle_epochs": 150,
                                "mlp_epochs": 500, "grid": 120},
        "03_autoencoder": {"n_train": 5_000, "n_test": 2_000, "n_epochs": 2, "batch_size": 1024,
                           "linear_hidden": 50, "linear_lr": 1.0, "linear_epochs": 3,
                           "conv_epochs": 1, "conv_batch_size": 128, "conv_lr": 5e-3,
                           "n_speed": 2_048, "n_tsne": 500},
        "04_contrastive": {"n_train": 5_000, "n_test": 2_000, "n_epochs": 2,
                           "batch_size": 256, "tau": 0.5, "weight": 1.0, "n_tsne": 500},
        "05_vae": {"n_train": 5_000, "n_test": 2_000, "n_epochs": 2, "batch_size": 128,
                   "n_epochs_2d": 2, "n_epochs_uses": 2, "noise": 0.5},
    },
}

DEFAULT = "full"


def profile_name() -> str:
    """The active profile: ``COURSE_SCALE`` or ``full``. Unknown names raise ``ValueError``."""
    name = os.environ.get("COURSE_SCALE", DEFAULT).strip().lower() or DEFAULT
    if name not in PROFILES:
        raise ValueError(
            f"COURSE_SCALE={name!r} is not a scale profile; choose one of {sorted(PROFILES)}"
        )
    return name


class Scale(Mapping[str, Any]):
    """Read-only mapping of an assignment's knobs that also allows attribute access."""

    def __init__(self, knobs: Mapping[str, Any]) -> None:
        self._knobs = dict(knobs)

    def __getitem__(self, key: str) -> Any:
        return self._knobs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._knobs)

    def __len__(self) -> int:
        return len(self._knobs)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._knobs[key]
        except KeyError:
            raise AttributeError(f"scale has no knob {key!r}") from None

    def __repr__(self) -> str:
        return f"Scale({self._knobs!r})"


def scale(assignment: str, profile: str | None = None) -> Scale:
    """Return the knobs of ``assignment`` under ``profile`` (default: the active profile).

    The result also has ``.profile`` with the profile's name.
    """
    name = profile or profile_name()
    if name not in PROFILES:
        raise ValueError(f"unknown scale profile {name!r}; choose one of {sorted(PROFILES)}")
    knobs = PROFILES[name].get(assignment)
    if knobs is None:
        raise KeyError(f"no scale settings for assignment {assignment!r} in profile {name!r}")
    return Scale({**knobs, "profile": name})
