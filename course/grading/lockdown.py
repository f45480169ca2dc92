"""Filesystem lockdown of a worker, applied by the worker itself before any student code runs.

When the sandbox starts the worker in fresh mount and PID namespaces (Linux ``unshare``), the
worker, still trusted code at that point:

1. mounts a small empty tmpfs on ``/tmp`` (its scratch space: the only writable place, and
   its size is the cap on files it can write);
2. hides the course repository behind an empty tmpfs (hidden tests, source notebooks,
   solutions, grades), binding back read-only only what it needs to run: the ``course``
   package, the Python environment and the data folder;
3. remounts every mount read-only (the grader's files, other submissions' results, cgroups);

then :mod:`course.grading.boot` drops every capability (or the uid) and applies the
allow-list of :mod:`course.grading.confine`, so student code can undo none of it.

Together with the fresh ``/proc`` of the PID namespace (the grader's processes are not
visible) this keeps the student's code away from the hidden tests and from anything the
grader writes. Where a step is not possible the worker carries on and reports why; the grader
records it.
"""

from __future__ import annotations

import ctypes
import os
import site
import sys
from pathlib import Path

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
# statvfs f_flag bits -> mount flags that must be kept on a read-only remount
_KEEP = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME,
         4096: MS_RELATIME}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags),
                       _enc(data)),
           f"mount {target}")


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].encode().decode("unicode_escape")
        points.append(mp)
    return points


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def needed_paths(package_dir: Path, data_dir: Path) -> list[Path]:
    """What the worker must still see: its package, data and Python installation."""
    paths = [package_dir, data_dir, Path(sys.prefix), Path(sys.base_prefix)]
    paths += [Path(p) for p in site.getsitepackages()]
    paths.append(package_dir.parent / "pyproject.toml")
    # both spellings: Python imports by the path it was started with, which may be a symlink
    return [q for p in paths if p.exists() for q in {p.absolute(), p.resolve()}]


def lock_down(hide: Path, keep: list[Path], scratch_mb: int) -> list[str]:
    """Apply the lockdown; return what could not be done (empty when complete)."""
    problems: list[str] = []
    hide = hide.resolve()
    tmp = Path("/tmp").resolve()
    hidden_roots = [tmp, hide]
    keep = sorted({k for k in keep if any(_under(k, h) for h in hidden_roots)},
                  key=lambda k: len(k.parts))  # parents first
    fds = {k: os.open(k, os.O_PATH) for k in keep}
    try:
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=1777")
        hide.mkdir(parents=True, exist_ok=True)  # the repository may live under /tmp
        _mount("tmpfs", str(hide), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        for path, fd in fds.items():
            if path.exists():
                continue  # already visible through a parent bound back before it
            if Path(f"/proc/self/fd/{fd}").is_dir():
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            _mount(f"/proc/self/fd/{fd}", str(path), None, MS_BIND | MS_REC)
    except OSError as exc:
        problems.append(f"hiding files: {exc}")
    finally:
        for fd in fds.values():
            os.close(fd)
    for mp in _mount_points():
        if mp == "/tmp":
            continue
        try:
            flags = os.statvfs(mp).f_flag
            keep_flags = sum(v for bit, v in _KEEP.items() if flags & bit)
            _mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep_flags)
        except OSError as exc:
            if mp == "/":
                problems.append(f"read-only root: {exc}")
    os.chdir("/tmp")
    return problems
