"""Submission-independent references of the hidden tests, kept on disk between gradings.

scikit-learn's k-means of MNIST-10k from the prescribed start is the same for every submission
of 01; computing it (and importing scikit-learn to do so) was a third of the grader's own work
in each grading. A :class:`course.grading.checks.ComputedLater` made with ``kept=True`` is
looked up here first and stored here once computed.

Trust: an entry is ``torch.save`` bytes (read back with ``weights_only=True``: data, never
code) behind an HMAC-SHA256 with this machine's grader key
(:func:`course.grading.integrity.grader_key`), so a file the grader did not write, or one
changed since, is ignored and the value computed again. Its name holds a fingerprint of
everything the value may depend on: the file that defines it (the hidden tests), every module
of the ``course`` package (the data loader and its checksums, the checks), the Python version
and the files of the numerical libraries; any change makes a new entry, and storing it removes
the entry it replaces. The folder (``<user cache>/kept-references``, 0700) is out of a
worker's reach as the grader key is: another uid, Landlock, or both.
Nothing here can fail a grading: where the folder or the key cannot be used, the value is
computed as if nothing were kept. Where the run allows weak isolation (``course grade
--allow-weak-isolation``) a worker may write the folder and read the key, so that grader
neither reads nor keeps anything (:data:`ENABLED`, the plugin's ``--no-kept-references``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from course.paths import PACKAGE_DIR, user_cache_dir

#: Bumped when the entry format changes (old entries are then never read).
FORMAT = b"course kept reference v1\n"
#: Libraries whose code computes the references (scikit-learn's, and what it runs on).
LIBRARIES = ("sklearn", "scipy", "numpy", "torch")
DIGEST = 32
#: Off in a grader whose run allows weak isolation (set by the plugin before any test runs).
ENABLED = True


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def folder() -> Path:
    return user_cache_dir() / "kept-references"


@functools.cache
def _environment() -> bytes:
    """The part of every fingerprint that does not depend on the defining file: the Python
    version, the libraries' files (their location, size and modification time: a reinstall
    changes them) and every module of the course package (its bytes)."""
    h = hashlib.sha256(FORMAT + sys.version.encode() + b"\n")
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin:
            st = os.stat(origin)
            h.update(f"{name} {origin} {st.st_size} {st.st_mtime_ns}\n".encode())
        else:
            h.update(f"{name} absent\n".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes())
    return h.digest()


def fingerprint(defined_in: str | Path) -> str:
    """What a value defined in ``defined_in`` is kept under: changes with that file, the
    course package, the libraries and Python."""
    h = hashlib.sha256(_environment())
    h.update(Path(defined_in).read_bytes())
    return h.hexdigest()[:32]


def _path(name: str, fp: str) -> Path:
    return folder() / f"{name}.{fp}.pt"


def _mac(key: bytes, name: str, fp: str, payload: bytes) -> bytes:
    return hmac.new(key, FORMAT + f"{name}\0{fp}\0".encode() + payload, hashlib.sha256).digest()


def _key() -> bytes | None:
    from course.grading import integrity

    try:
        return integrity.grader_key()
    except Exception:  # noqa: BLE001 - no key (a read-only home, a bad key file): nothing kept
        return None


def load(name: str, defined_in: str | Path) -> Any:
    """The value kept for ``name`` (a value defined in ``defined_in``), or :data:`MISSING`
    when there is none this grader wrote for the same fingerprint."""
    import torch

    if not ENABLED:
        return MISSING
    try:
        fp = fingerprint(defined_in)
        raw = _path(name, fp).read_bytes()
    except OSError:
        return MISSING
    key = _key()
    if key is None or len(raw) < DIGEST:
        return MISSING
    mac, payload = raw[:DIGEST], raw[DIGEST:]
    if not hmac.compare_digest(mac, _mac(key, name, fp, payload)):
        return MISSING
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - an entry that does not load is not there
        return MISSING


def store(name: str, defined_in: str | Path, value: Any) -> bool:
    """Keep ``value`` for ``name``; whether it was kept. Entries of ``name`` under another
    fingerprint (an earlier version of the tests or the libraries) are removed."""
    import torch

    key = _key() if ENABLED else None
    if key is None:
        return False
    try:
        fp = fingerprint(defined_in)
        buf = io.BytesIO()
        torch.save(value, buf)
        payload = buf.getvalue()
        base = folder()
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_mac(key, name, fp, payload) + payload)
            os.replace(tmp, _path(name, fp))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in base.glob(f"{name}.*.pt"):
            if old.name != _path(name, fp).name:
                old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - a value that cannot be kept is computed next time
        return False
    return True


def warm(tests_file: str | Path) -> list[str]:
    """Compute and keep every kept reference the hidden-test file ``tests_file`` defines, as
    its first grading would (for an image built once and started for every submission:
    Gradescope's setup.sh); the names of those now kept."""
    from course.grading import checks

    spec = importlib.util.spec_from_file_location(f"_kept_{Path(tests_file).stem}", tests_file)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    done = []
    for value in vars(module).values():
        if isinstance(value, checks.ComputedLater) and value.kept:
            try:
                value()
            except Exception:  # noqa: BLE001 - computed (and its error reported) when graded
                continue
            if load(value.key, value.defined_in) is not MISSING:
                done.append(value.key)
    return done
