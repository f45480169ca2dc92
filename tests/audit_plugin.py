"""A test-only pytest plugin for the grader processes that tests/test_grading.py starts.

It records what must never reach a student: the reference values hidden tests compare
against (the ``expected`` argument of :func:`course.grading.checks.expect_close`) and the
tensors the tests generate and send to the worker (hidden data), so that the test can grep
every artefact of the run for them. It is loaded only when the environment asks for it
(``PYTEST_PLUGINS=audit_plugin``, ``tests/`` on ``PYTHONPATH``, ``COURSE_AUDIT_DIR`` set);
production grading never imports it, and the worker, whose environment is rebuilt from
scratch, never sees it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

from course.grading import checks
from course.grading.session import Submission

#: Inputs larger than this are data sets (MNIST), public anyway; the tests' own are smaller.
MAX_INPUT = 20_000
#: Reference tensors larger than this are kept as their head, tail and an even sample.
MAX_KEEP = 50_000

RECORDED: dict[str, list[torch.Tensor]] = {"expected": [], "inputs": []}


def _flat(value: Any, limit: int) -> torch.Tensor | None:
    """A float64 copy of a floating tensor or Python float, or None for anything else."""
    if isinstance(value, float):
        return torch.tensor([value], dtype=torch.float64)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or not value.numel():
        return None
    if value.numel() > limit:
        return None
    flat = value.detach().reshape(-1)
    if flat.numel() > MAX_KEEP:
        step = flat.numel() // 8192
        flat = torch.cat([flat[:2048], flat[::step], flat[-512:]])
    return flat.cpu().double().clone()


def _collect(value: Any, out: list[torch.Tensor], limit: int) -> None:
    if isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, out, limit)
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out, limit)
    else:
        kept = _flat(value, limit)
        if kept is not None:
            out.append(kept)


def _recording_expect_close(original):
    @functools.wraps(original)
    def expect_close(actual, expected, *args, **kwargs):
        _collect(expected, RECORDED["expected"], 10**12)
        return original(actual, expected, *args, **kwargs)
    return expect_close


def _recording_request(original):
    @functools.wraps(original)
    def _request(self, what, message, timeout, *args, **kwargs):
        _collect([message.get("args", ()), message.get("kwargs", {})], RECORDED["inputs"],
                 MAX_INPUT)
        return original(self, what, message, timeout, *args, **kwargs)
    return _request


def pytest_configure(config) -> None:  # noqa: ARG001 - runs before the hidden tests import
    if not os.environ.get("COURSE_AUDIT_DIR"):
        return
    checks.expect_close = _recording_expect_close(checks.expect_close)
    Submission._request = _recording_request(Submission._request)


def pytest_sessionfinish(session) -> None:  # noqa: ARG001
    folder = os.environ.get("COURSE_AUDIT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        torch.save(RECORDED, Path(folder) / f"recorded-{os.getpid()}.pt")
