"""The worker: the only process that ever runs a student's code.

Started by :mod:`course.grading.sandbox` with two pipe file descriptors. It first executes the
notebook cells the grader sends (each in the same namespace, errors recorded and skipped, as a
kernel would), then answers requests until told to exit:

- ``call``: call a function or class defined by the notebook (or a method of a remote object)
  with tensors moved to the requested device; the result comes back as data, or as a remote
  handle when it is not data (a model);
- ``getattr``: read an attribute of a remote object;
- ``names``: the public names the notebook defined.

Everything it sends is plain data (see :mod:`course.grading.protocol`); the grader decides.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course.grading import protocol
from course.grading.lockdown import lock_down

CELL_PREFIX = "<cell "
MAX_MESSAGE = 400


class _Magics:
    """Stand-in for IPython's shell: line and cell magics and shell escapes do nothing."""

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def run_cell_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def system(self, *args: Any, **kwargs: Any) -> None:
        return None

    getoutput = system


def _to_python(source: str) -> str:
    """Translate IPython syntax (``%magic``, ``!cmd``) into plain Python calls."""
    if "%" not in source and "!" not in source:
        return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return source
    return TransformerManager().transform_cell(source)


def _short(exc: BaseException) -> str:
    try:
        text = " ".join(str(exc).split())
    except BaseException:  # noqa: BLE001 - a hostile __str__
        text = "(message unavailable)"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _where(exc: BaseException) -> str:
    """The last notebook-cell frame of a traceback, as 'cell <id>, line <n>'."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(CELL_PREFIX):
            where = f"{frame.filename[1:-1]}, line {frame.lineno}"
    return where


def error_reply(exc: BaseException, kind: str = "exception") -> dict:
    if isinstance(exc, NotImplementedError):
        kind = "not_implemented"
    return {
        "ok": False,
        "kind": kind,
        "type": str(type(exc).__name__)[:80],
        "message": _short(exc),
        "where": _where(exc),
    }


class Worker:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"__name__": "__main__", "get_ipython": _Magics}
        self.handles: dict[int, Any] = {}
        self.next_handle = 1
        self.isolation: list[str] = []

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
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = obj
        return {"__remote__": handle, "type": type(obj).__name__}

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
        return {"ok": True, "value": report, "devices": [], "isolation": self.isolation}

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
        return self.value_reply(fn(*args, **kwargs))

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


def serve(fd_in: int, fd_out: int, isolation: list[str] | None = None) -> None:
    worker = Worker()
    worker.isolation = list(isolation or [])
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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    fd_in, fd_out = int(argv[0]), int(argv[1])
    isolation: list[str] = []
    if "--lockdown" in argv:
        spec = json.loads(argv[argv.index("--lockdown") + 1])
        isolation = lock_down(Path(spec["hide"]), [Path(p) for p in spec["keep"]],
                              int(spec["scratch_mb"]))
        os.environ.update(HOME="/tmp", TMPDIR="/tmp", MPLCONFIGDIR="/tmp/.mpl")
    serve(fd_in, fd_out, isolation)


if __name__ == "__main__":
    main()
