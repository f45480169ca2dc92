"""The wire format between the grader and a worker process.

Messages are length-prefixed frames of ``torch.save`` bytes holding only data: tensors,
numbers, strings, ``None``, and lists, tuples and dicts of those. The grader reads every frame
with ``torch.load(weights_only=True)``, so a worker can send back values but never code.
Objects that are not data (a model, an optimiser) stay in the worker and travel as
``{"__remote__": id}`` handles; references to things the grader wants the worker to look up
(``torch.nn.Tanh``) travel as ``{"__ref__": "torch.nn.Tanh"}``.
"""

from __future__ import annotations

import io
import os
import select
import struct
import time
from dataclasses import dataclass
from typing import Any

import torch

HEADER = struct.Struct("!Q")
#: Largest frame either side accepts (a 60k x 784 float32 tensor is 188 MB).
MAX_FRAME = 512 * 2**20


class ProtocolError(RuntimeError):
    """A frame that is malformed, too large, or not data."""


@dataclass(frozen=True)
class Remote:
    """Grader-side handle of an object that lives in the worker (for example a model)."""

    id: int
    type: str

    def __repr__(self) -> str:
        return f"<remote {self.type} #{self.id}>"


@dataclass(frozen=True)
class Ref:
    """A name the worker resolves by import, restricted to torch (e.g. ``Ref("torch.nn.Tanh")``)."""

    path: str


@dataclass(frozen=True)
class Gen:
    """A ``torch.Generator`` the worker creates with ``manual_seed(seed)`` on the call's device."""

    seed: int


def encode(obj: Any) -> Any:
    """Turn grader-side values (with ``Remote``/``Ref``/``Gen``) into plain data."""
    if isinstance(obj, Remote):
        return {"__remote__": obj.id}
    if isinstance(obj, Ref):
        return {"__ref__": obj.path}
    if isinstance(obj, Gen):
        return {"__gen__": int(obj.seed)}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def decode_reply_value(obj: Any) -> Any:
    """Turn plain data from a worker back into grader values (``Remote`` handles)."""
    if isinstance(obj, dict):
        if set(obj) == {"__remote__", "type"}:
            return Remote(int(obj["__remote__"]), str(obj["type"]))
        return {k: decode_reply_value(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_reply_value(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_reply_value(v) for v in obj)
    return obj


def dumps(message: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(message, buf)
    return buf.getvalue()


def loads(payload: bytes) -> Any:
    """Load a frame's payload as data only; anything else is a ``ProtocolError``."""
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means the frame is not data
        raise ProtocolError(f"reply is not plain data ({type(exc).__name__})") from None


def write_frame(fd: int, message: Any) -> None:
    payload = dumps(message)
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
    data = HEADER.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameTimeout(TimeoutError):
    """No complete frame arrived before the deadline."""


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytes:
    """Read exactly ``n`` bytes; ``EOFError`` if the other side closed first and
    ``FrameTimeout`` if ``deadline`` (a ``time.monotonic()`` value) passes."""
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise FrameTimeout("no reply before the deadline")
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None, max_size: int = MAX_FRAME) -> Any:
    """Read one frame and load it as data."""
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size, deadline))
    if size > max_size:
        raise ProtocolError(f"a reply of {size / 2**20:.0f} MiB exceeds the "
                            f"{max_size / 2**20:.0f} MiB cap on results")
    return loads(read_exact(fd, size, deadline))
