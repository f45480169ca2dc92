"""Helpers shared by the Unsupervised Learning course notebooks, generators and grader.

Notebooks use::

    import course
    device = course.device()      # CUDA, then MPS, then CPU
    course.seed(0)                # torch, numpy and random
    S = course.scale("01_kmeans") # the knobs of the current scale profile
"""

from course.device import device, seed
from course.scale import scale

__all__ = ["device", "seed", "scale"]
__version__ = "0.1.0"
