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
import itertools
import os
import pickletools
import re
import select
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the grader starts its worker before torch loads
    import torch

HEADER = struct.Struct("!Q")
#: Largest frame either side accepts (a 60k x 784 float32 tensor is 188 MB).
MAX_FRAME = 512 * 2**20

# What one frame may make the reading process build. A frame is only ever read by ``loads``,
# which checks the archive before ``torch.load`` expands anything and walks the loaded value
# after, so a worker cannot make the grader allocate much more than the frame's own cap (the
# ``max_size`` of ``read_frame``: ``Limits.reply_mb`` for replies). The legitimate replies the
# numbers leave room for: the 60000 x 784 float32 MNIST tensor (188 MB, one storage record),
# a state_dict of a 1.6M-parameter autoencoder (6.4 MB in a dozen records, a few KB of pickle),
# loss logs of ~100k Python floats (0.9 MB of pickle, 100k values).

#: Members of the frame's zip archive: torch.save writes 6 small records plus one per tensor
#: storage, so a reply of a few hundred tensors has a few hundred; this bounds what parsing the
#: central directory costs before anything is trusted.
MAX_MEMBERS = 10_000
#: Bytes of the archive's central directory (46 bytes per entry plus a name under 64 chars).
MAX_CENTRAL_DIRECTORY = 256 * MAX_MEMBERS
#: Bytes of each record that is not a tensor storage (data.pkl, the version records): 100k
#: floats pickle to 0.9 MB, so there is 9x room for loss logs.
MAX_PICKLE = 8 * 2**20
#: Opcodes of data.pkl, counted before it is unpickled: the unpickler can turn each into an
#: object (``]`` is an empty list of ~80 bytes): 8 MiB of ``]`` took 640 MiB and 17 s, 2M take
#: 150 MiB. A value takes one or two opcodes (the value, a memo PUT): 2x the walk's budget.
MAX_PICKLE_OPS = 2_000_000
#: Values visited walking a loaded frame, a shared object counted each time it is reached (as
#: ``decode_reply_value`` and the checks will reach it): 10x a 100k-entry loss log.
MAX_ITEMS = 1_000_000
#: Nesting depth (a reply is a dict holding tuples/lists/dicts a few levels deep).
MAX_DEPTH = 32
#: Characters of any one string (names, type names and one-line messages are far shorter).
MAX_STRING = 65_536


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
    """Turn grader-side values (with ``Remote``/``Ref``/``Gen``) into plain data. A tensor
    that is a contiguous part of a larger storage (``X[:500]`` of the 10,000 MNIST rows)
    travels as a copy of its own elements, with the same shape and strides: ``torch.save``
    writes the whole storage of a view, 31 MB instead of 1.6 MB there."""
    if _partial_view(obj):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
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


def _partial_view(obj: Any) -> bool:
    """Whether ``obj`` is a contiguous tensor whose storage holds more bytes than its
    elements (a slice of rows); a non-contiguous view keeps its layout, storage and all. Never
    imports torch (a value from a grader that has none of it loaded is no tensor)."""
    torch = sys.modules.get("torch")
    if (torch is None or not isinstance(obj, torch.Tensor) or obj.layout != torch.strided
            or not obj.is_contiguous()):
        return False
    try:
        return obj.untyped_storage().nbytes() > obj.numel() * obj.element_size()
    except (RuntimeError, NotImplementedError):  # no storage to look at (a meta tensor)
        return False


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
    import torch

    buf = io.BytesIO()
    torch.save(message, buf)
    return buf.getvalue()


def loads(payload: bytes, max_size: int = MAX_FRAME) -> Any:
    """Load a frame's payload as data only; anything else is a ``ProtocolError``.

    The archive is checked before ``torch.load`` reads it (:func:`check_archive`) and the
    loaded value after (:func:`check_value`), both against ``max_size``, the reader's cap."""
    import torch

    check_archive(payload, max_size)
    try:
        value = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure means the frame is not data
        raise ProtocolError(f"reply is not plain data ({type(exc).__name__})") from None
    check_value(value, max_size)
    return value


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_STORAGE = re.compile(r"[^/]+/data/[0-9]+")


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def check_archive(payload: bytes, max_size: int = MAX_FRAME) -> None:
    """Refuse a frame whose zip archive could expand beyond ``max_size`` when read.

    Only the archives torch.save writes pass: the end record at the very end (no comment, no
    data before or after the central directory, zip64 records agreeing with it, so every zip
    reader sees the same members), at most ``MAX_MEMBERS`` uniquely named members, each stored
    uncompressed inside the frame without overlapping another, their sizes adding up to at
    most ``max_size`` (hence at most the frame's length), non-storage records under
    ``MAX_PICKLE`` and pickles under ``MAX_PICKLE_OPS`` opcodes. Nothing is decompressed or
    unpickled here; only the pickle is read, to count its opcodes."""
    bad = "reply is not plain data (not a torch.save archive"
    end = len(payload) - _EOCD.size
    if end < 0 or not payload.startswith(b"PK\x03\x04"):
        raise ProtocolError(bad + ")")
    sig, disk, cd_disk, n_disk, n_total, cd_size, cd_off, comment = _EOCD.unpack_from(payload, end)
    if sig != b"PK\x05\x06" or comment or disk or cd_disk or n_disk != n_total:
        raise ProtocolError(bad + ": no plain end record at its end)")
    loc = end - _EOCD64_LOCATOR.size
    if loc >= _EOCD64.size and payload[loc:loc + 4] == b"PK\x06\x07":
        _, disk, rec, disks = _EOCD64_LOCATOR.unpack_from(payload, loc)
        if rec != loc - _EOCD64.size or disk or disks != 1:
            raise ProtocolError(bad + ": misplaced zip64 record)")
        sig, size, _, _, disk, cd_disk, n64, n64_total, size64, off64 = _EOCD64.unpack_from(
            payload, rec)
        if (sig != b"PK\x06\x06" or size != _EOCD64.size - 12 or disk or cd_disk
                or (n64, n64_total, size64, off64) != (n_total, n_total, cd_size, cd_off)):
            raise ProtocolError(bad + ": its zip64 record disagrees with its end record)")
        end = rec
    if cd_off + cd_size != end:
        raise ProtocolError(bad + ": data around its central directory)")
    if n_total > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIRECTORY:
        raise ProtocolError(f"reply archive has {n_total} members ({cd_size} bytes of central "
                            f"directory), over the cap of {MAX_MEMBERS}")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, struct.error):
        raise ProtocolError(bad + ": unreadable central directory)") from None
    if len(infos) != n_total or len({i.filename for i in infos}) != n_total:
        raise ProtocolError(bad + ": duplicate or uncounted members)")
    total, taken = 0, []
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
            raise ProtocolError(f"reply archive holds a compressed or encrypted record "
                                f"({info.filename[:80]!r}): replies travel uncompressed")
        if info.compress_size != info.file_size or info.header_offset + _LOCAL.size > cd_off:
            raise ProtocolError(bad + ": record sizes disagree)")
        local = _LOCAL.unpack_from(payload, info.header_offset)
        start = info.header_offset + _LOCAL.size + local[9] + local[10]
        if local[0] != b"PK\x03\x04" or local[3] != zipfile.ZIP_STORED:
            raise ProtocolError(bad + ": bad local header)")
        if start + info.file_size > cd_off:
            raise ProtocolError(bad + ": a record runs past the archive's data)")
        if info.file_size > MAX_PICKLE and not _STORAGE.fullmatch(info.filename):
            raise ProtocolError(f"reply archive record {info.filename[:80]!r} is "
                                f"{_mib(info.file_size)}, over the {_mib(MAX_PICKLE)} cap "
                                "on structure (not tensor data)")
        if info.filename.endswith(".pkl"):
            _count_opcodes(payload[start:start + info.file_size])
        total += info.file_size
        taken.append((info.header_offset, start + info.file_size))
    if total > max_size:
        raise ProtocolError(f"reply archive records add up to {_mib(total)}, over the "
                            f"{_mib(max_size)} cap on results")
    taken.sort()
    if any(nxt[0] < prev[1] for prev, nxt in zip(taken, taken[1:], strict=False)):
        raise ProtocolError(bad + ": overlapping records)")


def _count_opcodes(pickled: bytes) -> None:
    """Refuse a pickle of more than ``MAX_PICKLE_OPS`` opcodes, without building anything.
    Every opcode takes at least a byte, so a shorter pickle needs no count (the walk takes
    0.7 ms of a small frame's 4; a malformed one is refused by ``torch.load`` then)."""
    if len(pickled) <= MAX_PICKLE_OPS:
        return
    try:
        for n, _ in enumerate(pickletools.genops(pickled), start=1):
            if n > MAX_PICKLE_OPS:
                raise ProtocolError(f"reply's pickle has over {MAX_PICKLE_OPS:,} opcodes, "
                                    "over the cap on structure")
    except ProtocolError:
        raise
    except Exception:  # noqa: BLE001 - any failure means the frame is not a pickle
        raise ProtocolError("reply is not plain data (unreadable pickle)") from None


def _tensor_bytes(t: torch.Tensor) -> int:
    """Logical size: what a copy or a comparison of ``t`` allocates (an expanded tensor with
    zero strides counts in full, not its one-element storage)."""
    try:
        return int(t.numel()) * int(t.element_size())
    except Exception:  # noqa: BLE001 - a tensor kind whose size cannot be read
        raise ProtocolError(f"reply holds a tensor of unreadable size ({t.layout})") from None


def check_value(value: Any, max_bytes: int = MAX_FRAME) -> None:
    """Walk a loaded value (iteratively, without memoisation: a shared object is charged each
    time it is reached, as every later traversal will reach it) and refuse it when it has more
    than ``MAX_ITEMS`` values, nests deeper than ``MAX_DEPTH``, holds a string over
    ``MAX_STRING`` characters, or its tensors (logical sizes) and strings add up to more than
    ``max_bytes``."""
    import torch

    visits, data = 0, 0
    stack = [iter((value,))]
    while stack:
        obj = next(stack[-1], _END)
        if obj is _END:
            stack.pop()
            continue
        visits += 1
        if visits > MAX_ITEMS:
            raise ProtocolError(f"reply holds over {MAX_ITEMS:,} values (a shared value "
                                "counted each time it is reached)")
        if isinstance(obj, torch.Tensor):
            data += _tensor_bytes(obj)
        elif isinstance(obj, (str, bytes, bytearray)):
            if len(obj) > MAX_STRING:
                raise ProtocolError(f"reply holds a string of {len(obj):,} characters, over "
                                    f"the cap of {MAX_STRING:,}")
            data += len(obj)
        elif isinstance(obj, (list, tuple, dict, set, frozenset)):
            if len(stack) > MAX_DEPTH:
                raise ProtocolError(f"reply nests deeper than {MAX_DEPTH} levels")
            stack.append(iter(obj) if not isinstance(obj, dict)
                         else itertools.chain.from_iterable(obj.items()))
        if data > max_bytes:
            raise ProtocolError(f"reply's tensors and strings exceed the {_mib(max_bytes)} "
                                "cap on results (each counted at full size every time it is "
                                "reached)")


_END = object()


def write_frame(fd: int, message: Any) -> None:
    payload = dumps(message)
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
    for part in (HEADER.pack(len(payload)), payload):  # no joined copy of a large payload
        view = memoryview(part)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def widen_pipe(fd: int, size: int = 2**20) -> None:
    """Give a pipe a larger buffer where the system allows it (Linux, up to
    /proc/sys/fs/pipe-max-size): a frame of tens of MB crosses in fewer wake-ups of each side."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass  # the default buffer works, a little slower


class FrameTimeout(TimeoutError):
    """No complete frame arrived before the deadline."""


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytearray:
    """Read exactly ``n`` bytes (into one buffer, no chunks joined); ``EOFError`` if the other
    side closed first and ``FrameTimeout`` if ``deadline`` (a ``time.monotonic()`` value)
    passes."""
    data = bytearray(n)
    view, got = memoryview(data), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise FrameTimeout("no reply before the deadline")
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError("pipe closed")
        got += k
    return data


def read_frame(fd: int, deadline: float | None = None, max_size: int = MAX_FRAME) -> Any:
    """Read one frame and load it as data."""
    (size,) = HEADER.unpack(read_exact(fd, HEADER.size, deadline))
    if size > max_size:
        raise ProtocolError(f"a reply of {size / 2**20:.0f} MiB exceeds the "
                            f"{max_size / 2**20:.0f} MiB cap on results")
    return loads(read_exact(fd, size, deadline), max_size)
