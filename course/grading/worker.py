"""The worker: the only process that ever runs a student's code.

Started by :mod:`course.grading.sandbox` through :mod:`course.grading.boot` (which confines
the process first) with two pipe file descriptors. Its first frame says how it was confined;
then it executes the
notebook cells the grader sends (each in the same namespace, errors recorded and skipped, as a
kernel would), then answers requests until told to exit:

- ``call``: call a function or class defined by the notebook (or a method of a remote object)
  with tensors moved to the requested device; the result comes back as data, or as a remote
  handle when it is not data (a model); with ``echo_args`` also the positional arguments
  as the call left them; with ``forward`` (names the notebook defines) those names call the
  grader's own reference for the length of the call (a ``callback`` frame out, its answer in),
  so a test of one function is not charged for a mistake in another that it calls (a loss
  stand-in also sends its gradients, so the student's backward() flows through it); with
  ``grad_wrt`` (an argument's index) the result and autograd's gradient of its sum with
  respect to that argument; with ``keep`` the result as a handle even when it is data (a
  tensor that must stay here, on its autograd graph);
- ``getattr``: read an attribute of a remote object;
- ``names``: the public names the notebook defined.

Everything it sends is plain data (see :mod:`course.grading.protocol`); the grader decides.
"""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from course.grading import plaintext, protocol
from course.grading.notebook import PRELOADS
from course.grading.notebook import to_python as _to_python

CELL_PREFIX = "<cell "
#: Longest message, exception type name and "where" ("cell <id>, line <n>") of an error reply,
#: each also cut to one line. The grader cuts them again: this process runs student code, and
#: a student can compile code under any filename (``"<cell " + anything + ">"``).
MAX_MESSAGE = plaintext.MAX_MESSAGE
MAX_TYPE = plaintext.MAX_TYPE
MAX_WHERE = plaintext.MAX_WHERE


class _Magics:
    """Stand-in for IPython's shell: line and cell magics and shell escapes do nothing."""

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def run_cell_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def system(self, *args: Any, **kwargs: Any) -> None:
        return None

    getoutput = system


def _short(exc: BaseException) -> str:
    try:
        text = str(exc)[: 8 * MAX_MESSAGE]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = "(message unavailable)"
    return plaintext.one_line(text, MAX_MESSAGE)


def _where(exc: BaseException) -> str:
    """The last notebook-cell frame of a traceback, as 'cell <id>, line <n>' (one line)."""
    last = None
    try:
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename.startswith(CELL_PREFIX) and frame.filename.endswith(">"):
                last = frame
    except Exception:  # noqa: BLE001 - a traceback that cannot be read
        return ""
    if last is None:
        return ""
    cell = plaintext.one_line(last.filename[1:-1], MAX_WHERE - 20)
    return plaintext.one_line(f"{cell}, line {last.lineno}", MAX_WHERE)


def error_reply(exc: BaseException, kind: str = "exception") -> dict:
    if isinstance(exc, NotImplementedError):
        kind = "not_implemented"
    return {
        "ok": False,
        "kind": kind,
        "type": plaintext.one_line(type(exc).__name__, MAX_TYPE),
        "message": _short(exc),
        "where": _where(exc),
    }


#: Most calls of forwarded names one request may make (each is a round trip to the grader).
#: The most calls one ``repeat`` request makes (Session.call_repeated).
MAX_REPEAT = 100_000
MAX_FORWARDED_CALLS = 100_000


class Worker:
    def __init__(self, fd_in: int = -1, fd_out: int = -1) -> None:
        self.ns: dict[str, Any] = {"__name__": "__main__", "get_ipython": _Magics}
        self.handles: dict[int, Any] = {}
        self.next_handle = 1
        self.fd_in, self.fd_out = fd_in, fd_out
        self.forwarded_calls = 0

    # -- values in and out -------------------------------------------------------------
    def decode(self, obj: Any, device: torch.device) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.to(device)
        if isinstance(obj, dict):
            if set(obj) == {"__remote__"}:
                return self.handles[int(obj["__remote__"])]
            if set(obj) == {"__ref__"}:
                return _resolve_ref(str(obj["__ref__"]))
            if set(obj) == {"__gen__"}:
                return torch.Generator(device=device).manual_seed(int(obj["__gen__"]))
            return {k: self.decode(v, device) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.decode(v, device) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.decode(v, device) for v in obj)
        return obj

    def encode(self, obj: Any, devices: list[str]) -> Any:
        if isinstance(obj, torch.Tensor):
            devices.append(str(obj.device))
            if obj.device.type == "meta":
                raise ValueError("it returned a tensor on the meta device, which holds no "
                                 "values: keep results on the inputs' device")
            return obj.detach().cpu().clone().as_subclass(torch.Tensor)
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray) and obj.dtype != object:
            return torch.from_numpy(np.ascontiguousarray(obj))
        if isinstance(obj, torch.Size):
            return tuple(int(v) for v in obj)
        if isinstance(obj, (torch.dtype, torch.device)):
            return str(obj)
        if isinstance(obj, (list, tuple)):
            items = [self.encode(v, devices) for v in obj]
            return items if isinstance(obj, list) else tuple(items)
        if isinstance(obj, dict) and all(isinstance(k, (str, int)) for k in obj):
            cls = OrderedDict if isinstance(obj, OrderedDict) else dict
            return cls((k, self.encode(v, devices)) for k, v in obj.items())
        return self.keep(obj)

    def value_reply(self, value: Any) -> dict:
        devices: list[str] = []
        try:
            data = self.encode(value, devices)
        except Exception as exc:  # noqa: BLE001 - a result that cannot travel as data
            return {"ok": False, "kind": "reply", "type": str(type(exc).__name__)[:80],
                    "message": _short(exc), "where": ""}
        return {"ok": True, "value": data, "devices": sorted(set(devices))}

    # -- operations ----------------------------------------------------------------------
    def run_cells(self, cells: list[dict]) -> dict:
        report = []
        for cell in cells:
            name = f"{CELL_PREFIX}{cell['id']}>"
            try:
                code = compile(_to_python(cell["source"]), name, "exec")
                exec(code, self.ns)  # noqa: S102 - this process exists to run student code
                report.append({"id": cell["id"], "ok": True})
            except BaseException as exc:  # noqa: BLE001 - SystemExit and friends included
                err = error_reply(exc)
                if isinstance(exc, SyntaxError):
                    err["where"] = f"cell {cell['id']}, line {exc.lineno}"
                report.append({"id": cell["id"], "ok": False, **_strip_ok(err)})
        return {"ok": True, "value": report, "devices": []}

    def target(self, spec: Any) -> Any:
        if isinstance(spec, dict) and "__remote__" in spec:
            return self.handles[int(spec["__remote__"])]
        if isinstance(spec, dict) and "__ref__" in spec:
            return _resolve_ref(str(spec["__ref__"]))
        if spec not in self.ns:
            raise LookupError(f"the notebook defines no `{spec}`")
        return self.ns[spec]

    def call(self, msg: dict) -> dict:
        device = torch.device(msg.get("device") or "cpu")
        try:
            fn = self.target(msg["target"])
        except LookupError as exc:
            return {"ok": False, "kind": "missing", "type": "NameError", "message": str(exc), "where": ""}
        if msg.get("method"):
            fn = getattr(fn, msg["method"])
        args = self.decode(msg.get("args", ()), device)
        kwargs = self.decode(msg.get("kwargs", {}), device)
        wrt = msg.get("grad_wrt")
        if wrt is not None:  # autograd through the call, from this argument (a tensor)
            args = list(args)
            args[int(wrt)] = args[int(wrt)].detach().clone().requires_grad_(True)
        forward = [str(n) for n in msg.get("forward") or ()]
        saved = {n: self.ns[n] for n in forward if n in self.ns}
        self.forwarded_calls = 0
        try:
            self.ns.update({n: self._forwarder(n, device) for n in forward})
            with torch.enable_grad() if wrt is not None else contextlib.nullcontext():
                repeat = msg.get("repeat")
                if repeat is not None:  # n calls in one request: a list of their results
                    return self.value_reply([fn(*args, **kwargs)
                                             for _ in range(min(int(repeat), MAX_REPEAT))])
                out = fn(*args, **kwargs)
                if wrt is not None:
                    return self.value_reply((out, _grad_of(out, args[int(wrt)])))
        finally:
            for n in forward:
                self.ns.pop(n, None)
            self.ns.update(saved)
        if msg.get("echo_args"):  # the arguments as the call left them (was one modified?)
            return self.value_reply((out, tuple(args)))
        if msg.get("keep"):  # the result stays here, even a tensor: a handle goes back
            return {"ok": True, "value": self.keep(out), "devices": []}
        return self.value_reply(out)

    def keep(self, obj: Any) -> dict:
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = obj
        return {"__remote__": handle, "type": type(obj).__name__}

    def _forwarder(self, name: str, device: torch.device) -> Any:
        """A stand-in for the notebook's ``name`` that asks the grader for its answer."""
        def forwarded(*args: Any, **kwargs: Any) -> Any:
            self.forwarded_calls += 1
            if self.forwarded_calls > MAX_FORWARDED_CALLS:
                raise RuntimeError(f"{name} was called more than {MAX_FORWARDED_CALLS:,} times "
                                   "in one call")
            devices: list[str] = []
            frame = {"op": "callback", "name": name, "args": self.encode(args, devices),
                     "kwargs": self.encode(kwargs, devices)}
            protocol.write_frame(self.fd_out, frame)
            answer = protocol.read_frame(self.fd_in)
            if not (isinstance(answer, dict) and answer.get("ok")):
                message = answer.get("message") if isinstance(answer, dict) else None
                raise RuntimeError(str(message or f"the grader could not answer {name}(...)"))
            where = torch.device(devices[0]) if devices else device
            value = self.decode(answer.get("value"), where)
            grads = answer.get("grads")
            if isinstance(grads, list) and isinstance(value, torch.Tensor):
                # a differentiable stand-in (a loss): the grader sent d value / d each tensor
                # argument; tie the value to the arguments' graph with those gradients
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                links = [(t * g).sum() for t, g in zip(tensors, self.decode(grads, where),
                                                       strict=False)
                         if isinstance(g, torch.Tensor) and t.requires_grad]
                if links and torch.is_grad_enabled():
                    link = torch.stack(links).sum()
                    value = value + (link - link.detach())
            return value
        forwarded.__name__ = forwarded.__qualname__ = name
        return forwarded

    def getattr(self, msg: dict) -> dict:
        obj = self.target(msg["target"])
        return self.value_reply(getattr(obj, msg["attr"]))

    def names(self) -> dict:
        public = sorted(k for k, v in self.ns.items() if not k.startswith("_") and callable(v))
        return {"ok": True, "value": public, "devices": []}

    def handle(self, msg: dict) -> dict:
        op = msg.get("op")
        try:
            if op == "run_cells":
                return self.run_cells(msg["cells"])
            if op == "call":
                return self.call(msg)
            if op == "getattr":
                return self.getattr(msg)
            if op == "names":
                return self.names()
            if op == "drop":
                for h in msg.get("ids", []):
                    self.handles.pop(int(h), None)
                return {"ok": True, "value": None, "devices": []}
            if op == "ping":
                return {"ok": True, "value": "pong", "devices": []}
            return {"ok": False, "kind": "protocol", "type": "ValueError",
                    "message": f"unknown op {op!r}", "where": ""}
        except BaseException as exc:  # noqa: BLE001 - report, never die on student errors
            return error_reply(exc)


def _grad_of(out: Any, wrt: torch.Tensor) -> torch.Tensor | None:
    """d sum(out) / d wrt by autograd (``out`` a tensor, or a tuple or list of them: the sum
    of all their entries); None when nothing in ``out`` is on a graph from ``wrt``."""
    parts = [t for t in (out if isinstance(out, (tuple, list)) else (out,))
             if isinstance(t, torch.Tensor) and t.requires_grad and t.is_floating_point()]
    if not parts:
        return None
    (grad,) = torch.autograd.grad(torch.stack([t.sum() for t in parts]).sum(), wrt,
                                  allow_unused=True)
    return grad


def _strip_ok(err: dict) -> dict:
    return {k: v for k, v in err.items() if k != "ok"}


def _resolve_ref(path: str) -> Any:
    if not (path == "torch" or path.startswith("torch.")):
        raise ValueError(f"refusing to resolve {path!r}: only torch names")
    parts = path.split(".")
    obj: Any = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def preload(names: Any) -> None:
    """Import what the grader asked for ahead (before the hello, so no request is charged
    for it); only modules named in ``notebook.PRELOADS``, and a failure is left for the
    notebook's own import to meet."""
    for name in names if isinstance(names, (list, tuple)) else ():
        if name in PRELOADS:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - the notebook's import will say why
                continue


def serve(fd_in: int, fd_out: int, confinement: dict | None = None) -> None:
    """Say how this process is confined (before any student code runs), then answer requests
    until told to exit."""
    protocol.write_frame(fd_out, {"ok": True, "op": "hello", "value": confinement or {},
                                  "devices": []})
    worker = Worker(fd_in, fd_out)
    while True:
        try:
            msg = protocol.read_frame(fd_in)
        except EOFError:
            return
        if msg.get("op") == "exit":
            return
        reply = worker.handle(msg)
        try:
            protocol.write_frame(fd_out, reply)
        except Exception as exc:  # noqa: BLE001 - e.g. a value too large to send
            protocol.write_frame(fd_out, error_reply(exc, kind="reply"))
