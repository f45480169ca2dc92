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
    },
    "ci": {
        "01_kmeans": {"n_images": 3_000, "k": 10, "n_iters": 20, "n_scatter": 2_000},
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
