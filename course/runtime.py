"""Device choice and seeding (every assignment and the grading worker use them)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on: CUDA if present, then Apple MPS, then CPU.

    ``prefer`` (or the ``COURSE_DEVICE`` environment variable) forces a choice such as
    ``"cpu"`` or ``"cuda:1"``; asking for an accelerator that is absent raises ``RuntimeError``.
    """
    choice = prefer or os.environ.get("COURSE_DEVICE") or ""
    choice = choice.strip().lower()
    if choice:
        dev = torch.device(choice)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} requested but CUDA is not available")
        if dev.type == "mps" and not _mps_available():
            raise RuntimeError(f"device {choice!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed(value: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (all devices); return a CPU generator seeded
    with ``value`` for code that wants its own stream of random numbers."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"seed must be a non-negative int, got {value!r}")
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(value)
    return torch.Generator().manual_seed(value)
