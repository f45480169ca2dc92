"""Every frame from a worker is bounded before the grader expands it.

The hostile frames are built here directly, as a worker that student code has taken over could
send them: shared references that multiply when walked, a deflated storage record that
inflates to gigabytes, storage records sharing their bytes, a zero-stride tensor with a huge
shape, deep nesting, huge numbers of keys, long strings, too many archive members. Each must
be refused by ``protocol.loads`` / ``read_frame`` quickly, with the reading process's peak
memory barely moving (measured in a fresh process), while legitimate big replies still load.
The grader process (the pytest run of the hidden tests) also gets its own address-space cap.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from course.grading import protocol, runner

#: The grader's cap on a reply (``sandbox.Limits().reply_mb``).
CAP = 256 * 2**20
#: numel of the template tensors below: torch.save pickles it as BININT2 ``M\x02\x01``, which
#: the builders replace by a larger count.
MARK = 258
MIB = 2**20
_RUN = subprocess.run  # the real one (the tests of run_hidden_tests replace subprocess.run)


# -- building frames --------------------------------------------------------------------------
def members(payload: bytes) -> list[tuple[str, bytes]]:
    zf = zipfile.ZipFile(io.BytesIO(payload))
    return [(i.filename, zf.read(i)) for i in zf.infolist()]


def stored(name: str, data: bytes) -> tuple:
    return (name, zipfile.ZIP_STORED, zlib.crc32(data), len(data), data)


def write_zip(entries: list[tuple]) -> bytes:
    """A zip written by hand: ``(name, method, crc, size, raw)`` entries, or ``("@", name, i)``
    for a central-directory entry that points at entry ``i``'s local record."""
    out, central, offsets = io.BytesIO(), [], []
    for entry in entries:
        if entry[0] == "@":
            _, name, i = entry
            _, method, crc, size, raw = entries[i]
            offset = offsets[i]
        else:
            name, method, crc, size, raw = entry
            offset = out.tell()
            out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                                  len(raw), size, len(name.encode()), 0) + name.encode() + raw)
        offsets.append(offset)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                                   len(raw), size, len(name.encode()), 0, 0, 0, 0, 0, offset)
                       + name.encode())
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                          out.tell() - start, start, 0))
    return out.getvalue()


def grow(pickle_bytes: bytes, numel: int) -> bytes:
    """data.pkl of a template tensor, its numel (and shape) changed to ``numel``."""
    assert pickle_bytes.count(b"M\x02\x01") >= 2
    return pickle_bytes.replace(b"M\x02\x01", b"J" + struct.pack("<i", numel))


def deflate_bomb(n_bytes: int) -> bytes:
    """torch.save's archive of a reply holding ``n_bytes`` of float32 zeros, the storage
    record rewritten as ZIP_DEFLATED (1 MiB of zeros deflates to ~1 KB, so 2 GiB to 2 MB)."""
    assert n_bytes % MIB == 0
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = co.compress(bytes(MIB)) + co.flush(zlib.Z_FULL_FLUSH)  # the same for every MiB
    crc, zeros = 0, bytes(MIB)
    for _ in range(n_bytes // MIB):
        crc = zlib.crc32(zeros, crc)
    entries = []
    for name, data in members(protocol.dumps({"ok": True, "value": torch.zeros(MARK)})):
        if name.endswith("/data.pkl"):
            entries.append(stored(name, grow(data, n_bytes // 4)))
        elif name.endswith("/data/0"):
            raw = block * (n_bytes // MIB) + b"\x03\x00"
            entries.append((name, zipfile.ZIP_DEFLATED, crc, n_bytes, raw))
        else:
            entries.append(stored(name, data))
    return write_zip(entries)


def shared_records(copies: int, n_bytes: int) -> bytes:
    """A list of ``copies`` tensors whose storage records all point at one stored record."""
    entries, first = [], None
    for name, data in members(protocol.dumps([torch.zeros(MARK) for _ in range(copies)])):
        if name.endswith("/data.pkl"):
            entries.append(stored(name, grow(data, n_bytes // 4)))
        elif "/data/" in name:
            if first is None:
                first = len(entries)
                entries.append(stored(name, bytes(n_bytes)))
            else:
                entries.append(("@", name, first))
        else:
            entries.append(stored(name, data))
    return write_zip(entries)


def with_pickle(pickle_bytes: bytes) -> bytes:
    """A torch.save archive whose data.pkl is ``pickle_bytes``."""
    return write_zip([stored(name, pickle_bytes if name.endswith("/data.pkl") else data)
                      for name, data in members(protocol.dumps(None))])


def memo_bomb() -> bytes:
    a = [torch.ones(1)] * 1000
    b = [a] * 1000
    return protocol.dumps({"ok": True, "value": [b] * 1000})  # 1e9 leaves, a few KB


def deep(depth: int) -> bytes:
    # pickled by hand: the pickler itself recurses
    return with_pickle(b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")


def many_members(extra: int) -> bytes:
    ok = members(protocol.dumps({"ok": True, "value": torch.ones(3)}))
    return write_zip([stored(n, d) for n, d in ok]
                     + [stored(f"archive/junk/{i}", b"") for i in range(extra)])


HOSTILE = {
    # name: (frame builder, words the refusal names)
    "shared references (memo bomb)": (memo_bomb, "values"),
    "deflated 2 GiB storage record": (lambda: deflate_bomb(2048 * MIB), "compressed"),
    "200 records sharing 1 MiB": (lambda: shared_records(200, MIB), "overlapping"),
    "zero-stride 8 GiB tensor": (
        lambda: protocol.dumps({"ok": True, "value": torch.ones(1).expand(2**31)}), "cap"),
    "100k-deep nesting": (lambda: deep(100_000), "deeper"),
    "600k dict keys": (lambda: protocol.dumps({"ok": True, "value": dict.fromkeys(
        range(600_000))}), "values"),
    "1M-character string": (lambda: protocol.dumps({"ok": True, "value": "x" * 10**6}),
                            "string"),
    "10k extra archive members": (lambda: many_members(10_001), "members"),
    "8M empty lists (8 MiB pickle)": (
        lambda: with_pickle(b"\x80\x02(" + b"]" * (8 * MIB - 64) + b"l."), "opcodes"),
}

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from course.grading import protocol
frames = json.loads(sys.argv[1])
payloads = {name: Path(path).read_bytes() for name, path in frames.items()}
for name, payload in payloads.items():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    try:
        protocol.loads(payload, max_size=int(sys.argv[2]))
        outcome = "loaded"
    except protocol.ProtocolError as exc:
        outcome = "refused: " + str(exc)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"name": name, "outcome": outcome, "seconds": time.monotonic() - t0,
                      "grew_mib": grew / 1024, "bytes": len(payload)}), flush=True)
"""


def _address_space_cap() -> None:
    # if a protection is missing, the child fails with MemoryError instead of taking the host
    resource.setrlimit(resource.RLIMIT_AS, (12 * 2**30, 12 * 2**30))


# -- the hostile frames ------------------------------------------------------------------------
def test_the_compressed_record_is_a_real_bomb_for_plain_torch_load():
    """The crafted archive is a valid torch.save archive: torch.load inflates it (here a small
    one), so the 2 GiB one is refused by the protocol's own check, not by accident."""
    small = deflate_bomb(8 * MIB)
    value = torch.load(io.BytesIO(small), weights_only=True)["value"]
    assert value.shape == (2 * MIB,) and not value.any()
    assert len(small) < 20_000
    with pytest.raises(protocol.ProtocolError, match="compressed"):
        protocol.loads(small)
    shared = shared_records(20, MIB)
    assert sum(t.numel() for t in torch.load(io.BytesIO(shared), weights_only=True)) == 5 * MIB
    with pytest.raises(protocol.ProtocolError, match="overlapping"):
        protocol.loads(shared)


def test_hostile_frames_are_refused_quickly_with_little_memory(tmp_path):
    frames = {}
    for n, (name, (build, _)) in enumerate(HOSTILE.items()):
        path = tmp_path / f"frame{n}.pt"
        path.write_bytes(build())
        frames[name] = str(path)
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(frames), str(CAP)],
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=_address_space_cap)
    results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == set(HOSTILE), proc.stderr[-2000:]
    for name, (_, words) in HOSTILE.items():
        r = results[name]
        assert r["outcome"].startswith("refused: "), (name, r)
        assert words in r["outcome"] and "\n" not in r["outcome"], (name, r)
        assert r["seconds"] < 10, (name, r)
        assert r["grew_mib"] < 200, (name, r)  # the attacks reach 2-8 GiB (or 1e9 objects)
        assert r["bytes"] < 16 * MIB, (name, r)  # they are small frames


def _pipe_frame(payload: bytes, max_size: int = CAP):
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, protocol.HEADER.pack(len(payload))),
                                              _write_all(w, payload), os.close(w)))
    writer.start()
    try:
        return protocol.read_frame(r, time.monotonic() + 60, max_size=max_size)
    finally:
        writer.join()
        os.close(r)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@pytest.mark.parametrize("name", ["shared references (memo bomb)", "zero-stride 8 GiB tensor",
                                  "100k-deep nesting"])
def test_read_frame_refuses_hostile_frames(name):
    build, words = HOSTILE[name]
    with pytest.raises(protocol.ProtocolError, match=words):
        _pipe_frame(build())


def test_a_tensor_larger_than_its_storage_is_refused():
    """(torch.load itself refuses these; kept so that it stays refused.)"""
    entries = []
    for name, data in members(protocol.dumps({"ok": True, "value": torch.zeros(MARK)})):
        if name.endswith("/data.pkl"):
            i = data.rfind(b"M\x02\x01")  # the shape, not the storage's numel
            data = data[:i] + b"J" + struct.pack("<i", 10**9) + data[i + 3:]
        entries.append(stored(name, data))
    with pytest.raises(protocol.ProtocolError, match="not plain data"):
        protocol.loads(write_zip(entries))


# -- legitimate replies ----------------------------------------------------------------------
def test_legitimate_big_replies_still_load():
    mnist = torch.rand(60_000, 784)  # 188 MB
    back = protocol.loads(protocol.dumps({"ok": True, "value": mnist, "devices": ["cpu"]}), CAP)
    assert torch.equal(back["value"], mnist)
    del back, mnist
    state = {"encoder.0.weight": torch.rand(1000, 784), "encoder.0.bias": torch.rand(1000),
             "encoder.2.weight": torch.rand(32, 1000), "decoder.0.weight": torch.rand(1000, 32),
             "decoder.2.weight": torch.rand(784, 1000), "decoder.2.bias": torch.rand(784)}
    assert 1.6e6 < sum(t.numel() for t in state.values()) < 1.7e6
    back = _pipe_frame(protocol.dumps({"ok": True, "value": state, "devices": ["cpu"]}))
    assert back["value"].keys() == state.keys()
    losses = [float(i) / 7 for i in range(100_000)]
    back = _pipe_frame(protocol.dumps({"ok": True, "value": (losses, losses[:10]),
                                       "devices": []}))
    assert back["value"][0] == losses


def test_limits_are_what_the_replies_need():
    assert protocol.MAX_ITEMS >= 10 * 100_000 and protocol.MAX_PICKLE >= 8 * 900_000
    assert 60_000 * 784 * 4 < CAP <= protocol.MAX_FRAME


# -- the grader process's own memory cap -------------------------------------------------------
def _capture_run(monkeypatch, device: str) -> dict:
    seen: dict = {}

    def fake_run(cmd, **kwargs):
        seen.update(kwargs)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    job = runner.Job("alice", Path("alice.ipynb"), "01_kmeans")
    runner.run_hidden_tests(job, runner.Settings(device=device), Path("report.json"))
    return seen


def test_the_grader_process_has_an_address_space_cap_on_cpu(monkeypatch):
    kwargs = _capture_run(monkeypatch, "cpu")
    assert kwargs.get("preexec_fn") is not None
    probe = _RUN(
        [sys.executable, "-c", "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"],
        capture_output=True, text=True, preexec_fn=kwargs["preexec_fn"], check=True)
    assert int(probe.stdout) == runner.grader_memory_bytes()
    assert 4 * 2**30 <= runner.grader_memory_bytes()


def test_cuda_grader_processes_get_no_address_space_cap(monkeypatch):
    assert _capture_run(monkeypatch, "cuda").get("preexec_fn") is None
