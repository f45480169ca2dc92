"""Checks for hidden tests: each raises ``StudentFailure`` with a message for the student.

Messages describe what is wrong with the student's value (type, shape, dtype, size of the
error) and never print reference values or test code. The comparisons run in the grader's
own torch, which student code cannot reach.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import torch

from course.grading import kept
from course.grading.session import WORKER_BUSY, StudentFailure


def points(n: float, cell: str) -> pytest.MarkDecorator:
    """Mark a hidden test as worth ``n`` points of the nbgrader grade cell ``cell``."""
    if n <= 0:
        raise ValueError("points must be positive")
    return pytest.mark.grade(points=float(n), cell=cell)


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not condition:
        raise StudentFailure(message)


def expect_tensor(value: Any, what: str, shape: tuple[int, ...] | None = None,
                  dtype: torch.dtype | None = None, floating: bool = False) -> torch.Tensor:
    """Check that ``value`` is a tensor with the given shape/dtype; return it."""
    if not isinstance(value, torch.Tensor):
        raise StudentFailure(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise StudentFailure(f"{what} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if dtype is not None and value.dtype != dtype:
        raise StudentFailure(f"{what} has dtype {value.dtype}, expected {dtype}")
    if floating and not value.is_floating_point():
        raise StudentFailure(f"{what} should be a floating-point tensor, got {value.dtype}")
    return value


def expect_finite(value: torch.Tensor, what: str) -> None:
    bad = int((~torch.isfinite(value)).sum())
    if bad:
        raise StudentFailure(f"{what} contains {bad} NaN or infinite value(s)")


def expect_close(actual: Any, expected: torch.Tensor, what: str, rtol: float = 1e-5,
                 atol: float = 1e-6, hint: str = "") -> None:
    """Elementwise ``|a - e| <= atol + rtol |e|``; the message gives only counts and sizes,
    then ``hint`` (what the student should check) when given."""
    actual = expect_tensor(actual, what, shape=tuple(expected.shape))
    a, e = actual.double(), expected.double()
    expect_finite(a, what)
    err = (a - e).abs()
    bad = err > atol + rtol * e.abs()
    if bool(bad.any()):
        rel = float((err / e.abs().clamp_min(atol)).max())
        raise StudentFailure(f"{what} is wrong in {int(bad.sum())} of {e.numel()} entries "
                             f"(largest relative error {rel:.2g})" + (f": {hint}" if hint else ""))


def expect_device(devices: list[str], device: str, what: str) -> None:
    """Every tensor the call returned lived on the device of its inputs."""
    want = torch.device(device).type
    wrong = [d for d in devices if torch.device(d).type != want]
    if wrong:
        raise StudentFailure(f"{what} returned tensors on {wrong[0]} for inputs on {device}: "
                             "keep results on the inputs' device")


def unseen_generator() -> torch.Generator:
    """A CPU generator seeded when the test runs (from os.urandom): the notebook cannot have
    computed answers for inputs drawn from it in its untimed cells, so a timing measures the
    work itself."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


def speed_bound(taken: float, floor: float, factor: float,
                reference: Callable[[], float]) -> float:
    """The time a speed test allows: ``max(floor, factor * reference())``, the reference
    (seconds of the grader's own run here, e.g. :func:`best_seconds`) measured only when
    ``taken`` is over ``floor``. A call within the floor passes whatever the reference says,
    and nearly every submission's does, so most gradings skip the measurement (01's best of
    three k-means runs took a second of each grading)."""
    return floor if taken <= floor else max(floor, factor * reference())


def best_seconds(fn: Callable[[], Any], repeats: int = 3,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest time of ``repeats`` runs of ``fn`` here (a reference to scale a speed
    bound to this machine; the best run is the least inflated by other work). With
    ``clock=time.thread_time`` (and torch on one thread) it is CPU time, as the worker's calls
    are charged: other work on the machine then inflates neither side, nor does the grader's
    own background work (:class:`ImportedLater`), which ``time.process_time`` would count."""
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


class ImportedLater:
    """Modules only some hidden tests use (scikit-learn: about a second of a grader's start),
    imported in a background thread while the grader goes on: collecting the tests, then
    waiting for its worker, which computes most of what the tests ask. ``later["name"]``
    waits for the thread and returns the module; an import that failed there is done again
    here, so the test that needs it reports the real error. A grader forked from a server
    finds them imported already (the server imports what a hidden-test file names here too:
    :func:`course.grading.forkserver.top_level_imports`). ``when_needed``: the thread starts
    only when something asks for them (:meth:`start`, :meth:`wait`, ``later[...]``): the
    modules of references that may be kept (:class:`ComputedLater`), never imported in a
    grading that finds them all kept."""

    def __init__(self, *names: str, when_needed: bool = False) -> None:
        self.names = names
        self._thread = threading.Thread(target=self._load, name="imported-later", daemon=True)
        self._starting = threading.Lock()
        self._started = False
        if not when_needed:
            self.start()

    def start(self) -> None:
        """Begin the imports in the background (once)."""
        with self._starting:
            if not self._started:
                self._started = True
                self._thread.start()

    def _load(self) -> None:
        for name in self.names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - __getitem__ raises it where a test needs it
                pass

    def wait(self) -> None:
        """Wait until the imports were tried."""
        self.start()
        self._thread.join()

    def __getitem__(self, name: str) -> ModuleType:
        if name not in self.names:
            raise KeyError(f"{name} is not among the modules imported later ({self.names})")
        self.wait()
        return importlib.import_module(name)


#: References waiting for :func:`start_computing` (the plugin calls it once tests are collected).
_NOT_STARTED: list[ComputedLater] = []
_CLAIMS = threading.Lock()


class ComputedLater:
    """A grader-side reference that does not depend on the submission (scikit-learn's
    k-means of MNIST from the prescribed start: 0.3 to 0.5 s here), computed in a background
    thread in the grader's idle time instead of inside the test that needs it: while it waits
    for its worker to start, and between the worker's requests, never during one
    (:data:`course.grading.session.WORKER_BUSY`: a call whose time is judged keeps the cores).
    ``after``: what it needs first, waited for outside that (an :class:`ImportedLater`).
    Calling it returns its value: at once when the thread has computed it, after the thread
    when it is computing it, and computed there and then when the thread has not come to it
    yet. The thread starts when the grader has collected its tests (:func:`start_computing`),
    not at import: collecting runs beside the worker's start, on the other core. Never started
    (a run without the plugin), the value is computed where it is first asked for; a
    computation that failed in the thread is done again there, so the test that needs it
    reports the real error. ``kept``: the value is looked up among the references kept
    between gradings first, and kept once computed (:mod:`course.grading.kept`; only for a
    value that the file defining it, the course package and the libraries decide); found
    there, neither its imports nor its computation happen. Use ``@ComputedLater`` or
    ``@computed_later(SKLEARN, kept=True)``."""

    def __init__(self, fn: Callable[[], Any], after: tuple[ImportedLater, ...] = (),
                 kept: bool = False) -> None:
        self.fn, self.after, self.kept = fn, tuple(after), kept
        self.__name__, self.__doc__ = fn.__name__, fn.__doc__
        self.defined_in = fn.__code__.co_filename
        name = f"{os.path.splitext(os.path.basename(self.defined_in))[0]}.{fn.__qualname__}"
        self.key = re.sub(r"[^A-Za-z0-9_.]", "_", name)  # the name of its kept entry
        self._claimed = False  # the thread or a caller computes it (once)
        self._done = threading.Event()
        self._value: Any = None
        self._ok = False
        _NOT_STARTED.append(self)

    def _claim(self) -> bool:
        with _CLAIMS:
            claimed, self._claimed = self._claimed, True
        return not claimed

    def _finish(self, value: Any) -> Any:
        self._value, self._ok = value, True
        self._done.set()
        return value

    def _compute(self, background: bool) -> Any:
        try:
            value = kept.load(self.key, self.defined_in) if self.kept else kept.MISSING
            if value is kept.MISSING:
                value = self.fn()
                if self.kept:
                    kept.store(self.key, self.defined_in, value)
            return self._finish(value)
        except Exception:
            if not background:
                raise
        finally:
            self._done.set()
        return self._value

    def _take_kept(self) -> None:
        """In the thread, before anything is computed: the value, where it was kept."""
        if self.kept and not self._claimed:
            value = kept.load(self.key, self.defined_in)
            if value is not kept.MISSING and self._claim():
                self._finish(value)

    def _compute_in_background(self) -> None:
        if self._claimed:
            return
        for needed in self.after:
            needed.wait()
        with WORKER_BUSY:  # not beside a request of the worker
            if self._claim():
                self._compute(background=True)

    def __call__(self) -> Any:
        if self._claim():
            return self._compute(background=False)
        self._done.wait()
        return self._value if self._ok else self.fn()


def computed_later(*after: ImportedLater, kept: bool = False
                   ) -> Callable[[Callable[[], Any]], ComputedLater]:
    """``@computed_later(SKLEARN)``: a :class:`ComputedLater` that waits for ``after`` first
    (``kept``: see there)."""
    return lambda fn: ComputedLater(fn, after, kept)


def start_computing() -> None:
    """Compute every :class:`ComputedLater` created so far, in order, in one background
    thread (one: the worker starting beside it has the other core)."""
    todo = list(_NOT_STARTED)
    _NOT_STARTED.clear()

    def run() -> None:
        for item in todo:  # what was kept first: a miss waits for imports and the worker
            item._take_kept()
        for item in todo:
            item._compute_in_background()

    if todo:
        threading.Thread(target=run, name="computed-later", daemon=True).start()
