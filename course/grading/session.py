"""The grader's handle on one submission: start its worker, call into it, turn failures into
one-line messages a student can act on.

Hidden tests receive a :class:`Submission` (the ``submission`` fixture) and use it like this::

    D = submission.call("pairwise_sq_dists", X, C)          # tensors in, data out
    model = submission.call("AutoEncoder", 784)              # not data: a Remote handle
    out = submission.method(model, "forward", x)             # call a method on it
    info = submission.call_info("kmeans", X, 10, timeout=60) # value, devices, seconds
    submission.call(Ref("torch.manual_seed"), 0)             # torch names resolve in the worker

Every failure raises :class:`StudentFailure` (an ``AssertionError``), so the test fails with
its message. The worker is restarted for the next call after a crash or a timeout, within the
submission's total time budget.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.grading import protocol
from course.grading.notebook import Plan, plan_cells, preloads, read_notebook
from course.grading.plaintext import MAX_MESSAGE, MAX_TYPE, MAX_WHERE, one_line
from course.grading.protocol import Gen, Ref, Remote
from course.grading.sandbox import (
    GraderFault,
    IsolationTooWeak,
    Limits,
    WorkerCrashed,
    WorkerProcess,
    WorkerTimeout,
)

__all__ = ["Submission", "StudentFailure", "Reply", "Remote", "Ref", "Gen", "GraderFault",
           "IsolationTooWeak"]


#: Held while the worker runs a request (the notebook's code, its time judged): the grader's
#: background references (:class:`course.grading.checks.ComputedLater`) compute only while
#: it is free. Beside a call they shared the two cores with it: a 0.1 s PCA and the student's
#: 0.3 s k-means both took 2.3 s (their thread pools spinning against each other).
WORKER_BUSY = threading.RLock()


class StudentFailure(AssertionError):
    """A check failed because of the submission; the message is for the student."""


@dataclass
class Reply:
    value: Any
    devices: list[str]
    seconds: float  # what the call was charged: min(wall, CPU time of the worker's tree)
    compute_s: float  # min(wall, user CPU time): what speed tests judge (see cputime)


@dataclass
class Budget:
    """Time limits: per setup run, default per call, and for the whole submission."""

    setup_s: float = 180.0
    call_s: float = 60.0
    total_s: float = 900.0
    max_restarts: int = 3


@dataclass(frozen=True)
class WorkerRequest:
    """The worker a grader asks for, from the plugin's options (``--device``, ``--threads``,
    ``--allow-weak-isolation``, ``--release``)."""

    device: str = "cpu"
    threads: int = 0
    allow_weak_isolation: bool = False
    release: str | None = None

    @property
    def limits(self) -> Limits:
        return Limits(threads=self.threads)

    @property
    def min_isolation(self) -> str:
        return "weak" if self.allow_weak_isolation else "contained"

    def launch(self) -> WorkerProcess:
        return launch_worker(self.device, self.limits, self.min_isolation,
                             preload=preloads(Path(self.release)) if self.release else ())


#: The worker :mod:`course.grading.start` launched before pytest loaded, with its request.
_prelaunched: tuple[WorkerRequest, WorkerProcess] | None = None


def prelaunch(request: WorkerRequest) -> None:
    """Launch the worker for ``request`` now, for the plugin to adopt (see
    :func:`take_prelaunched`); where it cannot start, the plugin tries again and says why."""
    global _prelaunched
    discard_prelaunched()
    try:
        _prelaunched = (request, request.launch())
    except OSError:
        _prelaunched = None


def take_prelaunched(request: WorkerRequest) -> WorkerProcess | None:
    """The worker launched for ``request`` before pytest loaded (once); a worker launched for
    another request (the plugin read the options differently) is stopped, and None returned."""
    global _prelaunched
    if _prelaunched is not None and _prelaunched[0] == request:
        (_, worker), _prelaunched = _prelaunched, None
        return worker
    discard_prelaunched()
    return None


def discard_prelaunched() -> None:
    """Stop a launched worker nobody adopted."""
    global _prelaunched
    held, _prelaunched = _prelaunched, None
    if held is not None:
        held[1].close()


def launch_worker(device: str, limits: Limits, min_isolation: str,
                  preload: tuple[str, ...] = ()) -> WorkerProcess:
    """A worker process for a submission, started now and left booting (it imports torch,
    confined, while the grader imports torch and collects its tests: the modules the grader's
    plugin loads import no torch, so this runs a second or two into the grader's life):
    pass it to :class:`Submission`."""
    worker = WorkerProcess(device=device, limits=limits, min_level=min_isolation,
                           preload=preload)
    worker.launch()
    return worker


class Submission:
    def __init__(
        self,
        notebook: Path,
        release: Path,
        device: str = "cpu",
        limits: Limits | None = None,
        budget: Budget | None = None,
        min_isolation: str = "contained",
        launched: WorkerProcess | None = None,
    ) -> None:
        self.notebook = Path(notebook)
        self.min_isolation = min_isolation
        self.isolation: dict = {}  # how the last worker was confined (sandbox.assess)
        self.device = device
        self.limits = limits or Limits()
        self.budget = budget or Budget()
        self.plan: Plan = plan_cells(read_notebook(release), read_notebook(self.notebook))
        self.preload = preloads(release)  # what a worker it starts imports before its hello
        self.cell_report: list[dict] = []
        self.events: list[str] = []
        self.worker: WorkerProcess | None = None
        # a worker already booting (see launch_worker): the first start only awaits its hello
        self._launched = launched
        self.starts = 0
        self.used_s = 0.0  # time charged to the submission so far (see WorkerProcess.request)
        self.setup_timed_out = ""  # why the notebook's cells are not run again, once they hung
        self._outputs: list[str] = []

    # -- worker lifecycle ----------------------------------------------------------------
    def _left(self) -> float:
        return self.budget.total_s - self.used_s

    def _ensure_worker(self) -> WorkerProcess:
        if self.worker is not None and self.worker.alive():
            return self.worker
        if self.worker is not None:
            self.close()
        if self.setup_timed_out:  # it would hang again: the limit is paid once, not per test
            raise StudentFailure(f"not run: {self.setup_timed_out}")
        if self.starts > self.budget.max_restarts:
            raise StudentFailure("not run: the notebook's code crashed or timed out too often")
        if self._left() <= 0:
            raise StudentFailure(
                f"not run: the submission used up its time budget ({self.budget.total_s:g} s)")
        self.starts += 1
        worker, self._launched = self._launched, None
        if worker is None:
            worker = launch_worker(self.device, self.limits, self.min_isolation, self.preload)
        worker.await_hello()  # a GraderFault (too weak, did not start) is not the student's doing
        self.worker = worker
        self.isolation = worker.isolation
        limit = min(self.budget.setup_s, self._left())
        try:
            reply = self._charge(worker, {"op": "run_cells", "cells": self.plan.cells}, limit)
        except WorkerTimeout as exc:
            self.events.append("running the notebook's cells timed out")
            self.setup_timed_out = (
                f"running the notebook's code waited more than {self.worker_wall(limit)} s "
                "without finishing (sleep, input() or a lock at import time?)" if exc.waiting
                else f"running the notebook's code took longer than {_secs(limit)} s "
                "(an infinite loop, or training at import time?)")
            raise StudentFailure(self.setup_timed_out) from None
        except WorkerCrashed as exc:
            self.events.append(f"running the notebook's cells: {exc}")
            raise StudentFailure(f"running the notebook's code: {exc}") from None
        self.cell_report = list(reply.get("value") or [])
        return worker

    def _charge(self, worker: WorkerProcess, message: dict, limit: float,
                callbacks: dict[str, Callable[..., Any]] | None = None) -> Any:
        """One request; what it was charged (not the wall time) comes off the budget."""
        try:
            with WORKER_BUSY:
                return worker.request(message, limit, callbacks)
        finally:
            self.used_s += worker.charged_s

    def worker_wall(self, limit: float) -> str:
        return _secs(self.worker.wall_limit(limit) if self.worker else limit)

    def start(self) -> list[dict]:
        """Start the worker now (it otherwise starts on the first call); return the cell report."""
        self._ensure_worker()
        return self.cell_report

    def close(self) -> None:
        if self._launched is not None:  # launched, never used
            self._launched.close()
            self._launched = None
        if self.worker is not None:
            self.worker.close()
            self.worker.output.thread.join(2)
            self._outputs.append(self.worker.output.text())
            self.worker = None

    def output(self) -> str:
        """What the notebook's code printed, run by run (capped by the sandbox)."""
        texts = list(self._outputs)
        if self.worker is not None:
            texts.append(self.worker.output.text())
        return "\n--- worker restarted ---\n".join(t for t in texts if t)

    # -- requests ------------------------------------------------------------------------
    def _request(self, what: str, message: dict, timeout: float | None,
                 retried: bool = False,
                 stand_in: dict[str, Callable[..., Any]] | None = None) -> Reply:
        worker = self._ensure_worker()
        limit = min(timeout or self.budget.call_s, max(self._left(), 0.001))
        if stand_in:
            message = {**message, "forward": sorted(stand_in)}
        try:
            reply = self._charge(worker, message, limit, stand_in)
        except WorkerTimeout as exc:
            if exc.waiting:
                self.events.append(f"{what}: waited {self.worker_wall(limit)} s, computing little")
                raise StudentFailure(f"{what} waited more than {self.worker_wall(limit)} s "
                                     "without finishing (sleep, input(), a lock or a pipe "
                                     "nobody writes to?)") from None
            self.events.append(f"{what}: timed out after {_secs(limit)} s")
            raise StudentFailure(f"{what} did not finish within {_secs(limit)} s") from None
        except WorkerCrashed as exc:
            if exc.from_outside and not retried and not _holds_remote(message):
                # SIGKILLed by nothing the grader counts (the OOM killer, an administrator):
                # once may be the machine, so the call runs again on a fresh worker; twice is
                # the submission's doing (os.kill of itself)
                self.events.append(f"{what}: {exc}; run again on a fresh worker")
                return self._request(what, message, timeout, retried=True, stand_in=stand_in)
            self.events.append(f"{what}: {exc}")
            raise StudentFailure(f"{what}: {exc}") from None
        seconds, compute_s = worker.charged_s, worker.compute_s
        if not isinstance(reply, dict) or "ok" not in reply:
            raise StudentFailure(f"{what}: the worker sent a malformed reply")
        if not reply["ok"]:
            raise StudentFailure(self._explain(what, reply))
        devices = reply.get("devices") or []
        return Reply(protocol.decode_reply_value(reply.get("value")), list(devices), seconds,
                     compute_s)

    def call_info(self, target: str | Remote | Ref, *args: Any, timeout: float | None = None,
                  device: str | None = None,
                  stand_in: dict[str, Callable[..., Any]] | None = None, **kwargs: Any) -> Reply:
        """Call ``target`` in the worker: a name the notebook defines, a Remote, or a Ref to a
        torch name (e.g. ``Ref("torch.manual_seed")``). ``stand_in`` maps names the notebook
        defines to the grader's own functions: while this call runs, the student's code that
        calls those names gets the grader's answers (their arguments and results travel as
        data), so the call is judged on its own work only."""
        what = f"{_label(target)}(...)"
        msg = {"op": "call", "target": target, "args": args, "kwargs": kwargs,
               "device": device or self.device}
        return self._request(what, msg, timeout, stand_in=stand_in)

    def call_repeated(self, target: str | Remote | Ref, n: int, *args: Any,
                      timeout: float | None = None, device: str | None = None,
                      **kwargs: Any) -> list:
        """Call ``target`` ``n`` times with the same arguments in one request (a sampler's
        draws, say): the list of its ``n`` results, without ``n`` round trips."""
        if not 1 <= n <= 100_000:
            raise ValueError(f"n must be in 1..100000, got {n}")
        msg = {"op": "call", "target": target, "args": args, "kwargs": kwargs,
               "device": device or self.device, "repeat": int(n)}
        value = self._request(f"{_label(target)}(...)", msg, timeout).value
        if not (isinstance(value, list) and len(value) == n):
            raise StudentFailure(f"{_label(target)}(...): the worker sent a malformed reply")
        return value

    def call_echo(self, target: str, *args: Any, timeout: float | None = None,
                  **kwargs: Any) -> tuple[Any, tuple]:
        """Call ``target`` and also get back its positional arguments as the call left them:
        ``value, args_after = submission.call_echo("f", X, C)`` (was an argument modified?)."""
        msg = {"op": "call", "target": target, "args": args, "kwargs": kwargs,
               "device": self.device, "echo_args": True}
        value = self._request(f"{_label(target)}(...)", msg, timeout).value
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], tuple)):
            raise StudentFailure(f"{_label(target)}(...): the worker sent a malformed reply")
        return value[0], value[1]

    def call_grad(self, target: str | Remote, *args: Any, wrt: int = 0,
                  timeout: float | None = None, method: str = "") -> tuple[Any, Any]:
        """Call ``target`` (or its ``method``, for a Remote model) with autograd on, the
        argument ``args[wrt]`` (a tensor) requiring grad:
        ``value, grad = submission.call_grad("loss", theta, X, y)``, where ``grad`` is
        d sum(value) / d args[wrt] by the worker's autograd, None when the result is not
        differentiable (not a tensor, or not built from that argument by torch operations)."""
        msg = {"op": "call", "target": target, "args": args, "kwargs": {},
               "device": self.device, "grad_wrt": int(wrt)}
        if method:
            msg["method"] = method
        what = f"{_label(target)}{'.' + method if method else ''}(...)"
        value = self._request(what, msg, timeout).value
        if not (isinstance(value, tuple) and len(value) == 2):
            raise StudentFailure(f"{_label(target)}(...): the worker sent a malformed reply")
        return value[0], value[1]

    def call_remote(self, target: str | Remote | Ref, *args: Any, timeout: float | None = None,
                    method: str = "", **kwargs: Any) -> Remote:
        """Call ``target`` (or its ``method``) and leave the result in the worker: a handle to
        it, even for a tensor (a loss to call ``backward`` on). Drop it with :meth:`drop`."""
        msg = {"op": "call", "target": target, "args": args, "kwargs": kwargs,
               "device": self.device, "keep": True}
        if method:
            msg["method"] = method
        value = self._request(f"{_label(target)}{'.' + method if method else ''}(...)", msg,
                              timeout).value
        if not isinstance(value, Remote):
            raise StudentFailure(f"{_label(target)}(...): the worker sent a malformed reply")
        return value

    def drop(self, *objs: Remote) -> None:
        """Let the worker forget these handles (and free what they hold)."""
        ids = [o.id for o in objs if isinstance(o, Remote)]
        if ids and self.worker is not None and self.worker.alive():
            self._request("dropping handles", {"op": "drop", "ids": ids}, 30)

    def call(self, target: str | Remote | Ref, *args: Any, timeout: float | None = None,
             device: str | None = None,
             stand_in: dict[str, Callable[..., Any]] | None = None, **kwargs: Any) -> Any:
        return self.call_info(target, *args, timeout=timeout, device=device, stand_in=stand_in,
                              **kwargs).value

    def method(self, obj: Remote, name: str, *args: Any, timeout: float | None = None,
               device: str | None = None, **kwargs: Any) -> Any:
        what = f"{obj.type}.{name}(...)"
        msg = {"op": "call", "target": obj, "method": name, "args": args, "kwargs": kwargs,
               "device": device or self.device}
        return self._request(what, msg, timeout).value

    def attr(self, obj: Remote, name: str, timeout: float | None = None) -> Any:
        msg = {"op": "getattr", "target": obj, "attr": name}
        return self._request(f"{obj.type}.{name}", msg, timeout).value

    def names(self) -> list[str]:
        return list(self._request("listing the notebook's names", {"op": "names"}, 30).value)

    # -- messages ------------------------------------------------------------------------
    def _explain(self, what: str, reply: dict) -> str:
        """One line for the student. Every field of ``reply`` comes from the worker, where
        student code runs, so each is cut here to one bounded line, whatever the worker did."""
        what = one_line(what, 2 * MAX_TYPE)
        kind = reply.get("kind")
        typ = one_line(reply.get("type") or "Error", MAX_TYPE)
        message = one_line(reply.get("message") or "", MAX_MESSAGE)
        where = one_line(reply.get("where") or "", MAX_WHERE)
        where = f" ({where})" if where else ""
        if kind == "not_implemented":
            return f"{what} is not implemented yet (it raised NotImplementedError{where})"
        if kind == "missing":
            name = what.split("(")[0]
            return f"`{name}` is not defined by the notebook{self._why_missing(name)}"
        if kind == "reply":
            return f"{what} returned a value that cannot be sent back for grading: {message}"
        if _out_of_memory(typ, message):
            return _memory_sentence(what, typ, message, where)
        return f"{what} raised {typ}: {message}{where}"

    def _why_missing(self, name: str) -> str:
        pattern = re.compile(rf"^\s*(def|class)\s+{re.escape(name)}\b", re.M)
        for cell in self.plan.cells:
            if pattern.search(cell["source"]):
                for rep in self.cell_report:
                    if isinstance(rep, dict) and rep.get("id") == cell["id"] and not rep.get("ok"):
                        return (f": its cell `{one_line(cell['id'], MAX_TYPE)}` failed with "
                                f"{one_line(rep.get('type') or 'Error', MAX_TYPE)}: "
                                f"{one_line(rep.get('message') or '', MAX_MESSAGE)} "
                                f"({one_line(rep.get('where') or '', MAX_WHERE)})")
        if self.plan.missing:
            return f" ({one_line('; '.join(map(str, self.plan.notes)), MAX_MESSAGE)})"
        return ""


_ALLOCATION = re.compile(r"tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)")


def _out_of_memory(typ: str, message: str) -> bool:
    low = message.lower()
    return typ in ("MemoryError", "OutOfMemoryError") or "can't allocate memory" in low \
        or "out of memory" in low


def _memory_sentence(what: str, typ: str, message: str, where: str) -> str:
    """What to change when the student's code ran out of memory (not the allocator's text)."""
    size = ""
    m = _ALLOCATION.search(message)
    if m:
        n = float(m.group(1)) * {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
                                 "TiB": 2**40, "KB": 1e3, "MB": 1e6, "GB": 1e9,
                                 "TB": 1e12}.get(m.group(2), 1)
        size = f" {n / 1e9:.1f} GB" if n >= 1e8 else f" {n / 1e6:.0f} MB"
    return (f"{what} ran out of memory ({typ}): it tried to allocate{size} at once{where}. Build "
            "smaller intermediate tensors: for distances use the expanded form ||x||^2 - "
            "2 x.c + ||c||^2 (one matrix product) instead of an N x K x D tensor of "
            "differences, and evaluate large inputs in batches")


def _holds_remote(value: Any, depth: int = 0) -> bool:
    """Whether a request refers to an object living in the worker (lost when it restarts)."""
    if isinstance(value, Remote):
        return True
    if depth > 20:
        return True  # too deep to tell: assume it does
    if isinstance(value, dict):
        return any(_holds_remote(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_remote(v, depth + 1) for v in value)
    return False


def _secs(seconds: float) -> str:
    """A time limit for a message: "52", "2", "0.5"."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"


def _label(target: Any) -> str:
    if isinstance(target, Remote):
        return target.type
    return target.path if isinstance(target, Ref) else str(target)
