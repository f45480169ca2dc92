"""Keeps a worker's processes from outliving their request or their grader (stdlib only).

The grader starts ``python -I -m course.grading.reaper SPEC -- WORKER_CMD...``; the reaper
starts the worker (its own session, in its cgroups, under its rlimits, dying with the reaper)
and stays beside it as a child subreaper, so every process the worker starts and abandons
(double fork, ``setsid``) becomes the reaper's child, wherever cgroups are missing. It never
runs student code and is not confined with it: the worker cannot signal it (Landlock scope,
PID namespace or another uid).

- the grader writes ``k`` on the lifeline pipe after each request: the reaper kills every
  process below the worker (children left running after a call) and answers ``k``;
- the lifeline reaching end of file means the grader is gone (it exited, crashed or was
  killed): the reaper thaws the worker's cgroups, kills everything it started, removes the
  cgroups and the scratch folder, and exits;
- when the worker exits, the reaper kills what is left and exits with the worker's status;
- when the worker holds more disk in its scratch folder than allowed (where no tmpfs caps
  it), the reaper writes ``D`` on the status pipe and kills it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
#: How often the reaper looks at the worker's scratch folder (and, without a pidfd, whether
#: the worker exited).
TICK_S = 0.1
PID = struct.Struct("!Q")


def _prctl(option: int, value: int) -> None:
    """prctl where there is one (Linux); elsewhere nothing."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(option, value, 0, 0, 0)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[0] != "Z":  # a zombie is dead: only its parent can reap
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _children_files(pid: int) -> list[int] | None:
    """The children of ``pid`` from /proc/<pid>/task/*/children; None where the kernel has no
    such files (CONFIG_PROC_CHILDREN)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{tid}"):
                return None  # the thread is there, its children file is not
        except OSError:
            continue
    return out


def descendants(root: int, quick: bool = False) -> list[int]:
    """Every live process below ``root`` (from /proc; empty where there is no /proc).
    ``quick`` walks down from ``root`` by the kernel's children files (a few reads instead
    of every process's stat: the CPU time of each request); the sweep that kills what a call
    left behind uses the full scan."""
    if not os.path.isdir("/proc"):
        return []
    if quick:
        found, todo = [], [root]
        while todo:
            kids = _children_files(todo.pop())
            if kids is None:
                return descendants(root)
            found += kids
            todo += kids
        return found
    kids, found, todo = _children_map(), [], [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _thaw(cgroups: list[str]) -> None:
    for d in cgroups:
        for name, value in (("cgroup.freeze", "0"), ("freezer.state", "THAWED")):
            try:
                Path(d, name).write_text(value)
            except OSError:
                pass


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)  # a stopped process dies at once on SIGKILL anyway;
            os.kill(pid, signal.SIGKILL)  # SIGCONT first costs nothing and helps tracers
        except (ProcessLookupError, PermissionError):
            pass


def kill_below(root: int, spare: set[int], cgroups: list[str]) -> int:
    """Kill every process under ``root`` except ``spare`` (repeat until none is left, so a
    fork loop cannot outrun it); return how many were killed."""
    killed = 0
    for _ in range(100):
        victims = [p for p in descendants(root) if p not in spare]
        if not victims:
            break
        _thaw(cgroups)
        _kill(victims)
        killed += len(victims)
        time.sleep(0.01)
    return killed


def _cgroup_procs(cgroups: list[str]) -> list[int]:
    pids = []
    for d in cgroups:
        try:
            pids += [int(p) for p in Path(d, "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pass
    return pids


def _remove_cgroups(cgroups: list[str]) -> None:
    for _ in range(100):
        _thaw(cgroups)
        _kill(_cgroup_procs(cgroups))
        left = []
        for d in cgroups:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
        if not left:
            return
        cgroups = left
        time.sleep(0.05)


def scratch_usage(scratch: str, pids: list[int]) -> int:
    """Bytes of disk the worker holds on its scratch filesystem: the files under ``scratch``,
    and files its processes keep open after deleting them (invisible to a walk)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        dev = os.stat(scratch).st_dev
    except OSError:
        return 0
    for top, _, files in os.walk(scratch):
        for name in files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_dev == dev and st.st_nlink == 0 and key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total


def enter_limits(spec: dict) -> None:
    """In the worker's process, before it runs anything: its own session, its cgroups, death
    with the reaper, its rlimits."""
    os.setsid()
    for d in spec.get("cgroups", []):
        try:
            Path(d, "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    limits = spec.get("rlimits", {})
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), tuple(value))


def _start_worker(spec: dict, cmd: list[str], keep_closed: list[int]) -> int:
    """Fork and exec the worker: own session, in its cgroups, under its rlimits."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: nothing here may raise past os._exit
        for fd in keep_closed:
            os.close(fd)
        enter_limits(spec)
        os.execv(cmd[0], cmd)
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"reaper: cannot start the worker: {exc}\n".encode())
    os._exit(127)


def exit_like(status: int) -> None:
    """End the reaper with the worker's status, a signal as that same signal (the grader tells
    a SIGKILL from outside, the cgroup's OOM kill or a segfault apart by it)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)  # SIGKILL and SIGSTOP cannot be set (nor ignored)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        time.sleep(1)
    os._exit(os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 1)


def serve(spec: dict, start: Callable[[], int]) -> None:
    """Start the worker (``start`` forks it and returns its pid), then watch over it."""
    lifeline, status = int(spec["lifeline"]), int(spec["status"])
    cgroups = list(spec.get("cgroups", []))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # only the lifeline ends the reaper
    me = os.getpid()
    worker = start()
    # the worker chain the reaper spares between requests: the worker (or `unshare` and the
    # worker it forks, PID 1 of the namespace)
    spare = {worker}
    os.write(status, PID.pack(worker))
    worker_status: int | None = None
    # the worker's exit wakes the loop at once where Linux gives a pidfd (the grader waits for
    # it at the end of every grading: up to a tenth of a second otherwise)
    try:
        exited = [os.pidfd_open(worker)]
    except (AttributeError, OSError):
        exited = []
    while True:
        ready = select.select([lifeline, *exited], [], [], TICK_S)[0]
        if lifeline in ready:
            try:
                data = os.read(lifeline, 64)
            except OSError:
                data = b""
            if not data:  # the grader is gone
                _thaw(cgroups)
                kill_below(me, set(), cgroups)
                _remove_cgroups(cgroups)
                if spec.get("scratch"):
                    shutil.rmtree(spec["scratch"], ignore_errors=True)
                os._exit(0)
            if spec.get("via_unshare") and len(spare) == 1:
                # found when first needed: a worker forked from a template answers its first
                # request sooner than a look every tenth of a second would find it
                spare |= set(_children_map().get(worker, [])[:1])
            for _ in range(data.count(b"k")):
                kill_below(me, spare, cgroups)  # orphans come to the reaper itself
                try:
                    os.write(status, b"k")
                except OSError:
                    pass
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == worker:
                worker_status = st
        if worker_status is not None:
            kill_below(me, set(), cgroups)
            exit_like(worker_status)
        quota = spec.get("scratch_bytes")
        if quota and scratch_usage(spec["scratch"], [worker, *descendants(me)]) > quota:
            # without a mount namespace there is no tmpfs to cap the scratch space: stop the
            # worker as soon as it holds more (checked ten times a second)
            try:
                os.write(status, b"D")
            except OSError:
                pass
            kill_below(me, set(), cgroups)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--")
    spec, cmd = json.loads(argv[0]), argv[split + 1:]
    serve(spec, lambda: _start_worker(spec, cmd, [int(spec["lifeline"]), int(spec["status"])]))


if __name__ == "__main__":
    main()
