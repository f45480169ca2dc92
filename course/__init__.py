"""Helpers shared by the Unsupervised Learning course notebooks, generators and grader.

Notebooks use::

    import course
    device = course.device()      # CUDA, then MPS, then CPU
    course.seed(0)                # torch, numpy and random
    S = course.scale("01_kmeans") # the knobs of the current scale profile

torch is imported on first use, so the command-line tool starts quickly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["device", "seed", "scale"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("device", "seed"):
        from course import runtime

        return getattr(runtime, name)
    if name == "scale":
        from course.profiles import scale

        return scale
    raise AttributeError(f"module 'course' has no attribute {name!r}")
