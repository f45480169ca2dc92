"""Workers forked from a template (Linux): one process per worker environment imports torch
once, then forks each grading's reaper and worker, which skip the interpreter's start and
torch's import (2 to 3 CPU-seconds a grading on 2 cores: more than any grader's own work).

Used only by graders forked from a :mod:`course.grading.forkserver` server (a class run, the
corpus), only for CPU workers (CUDA must not be touched before a fork) and only where the
namespaces, if any, can be entered without a user namespace (root). Everywhere else the
worker starts as a process (:meth:`course.grading.sandbox.WorkerProcess.launch`).

What the template is, and is not: it is started (``exec``, not forked: nothing of the grader's
memory) with the worker's own environment, less the three variables that name the worker's
scratch folder, and imports torch, the preloads and the worker's code. It never reads a
hidden test, a solution or a submission; it holds no descriptor but its door and the
connections graders open through it. The process it forks for a request is exactly what
``python -I -c <reaper> SPEC -- [unshare ...] python -I -c <boot> 5 6 SPEC`` would have been:
the reaper (own session, subreaper, its lifeline to the grader), which forks the worker (own
session, cgroups, rlimits, dying with the reaper; PID, network and mount namespaces entered as
``unshare`` does), which confines itself before any student code (:mod:`course.grading.boot`:
a forked child has one thread, so Landlock and seccomp cover all of it) and then serves. Both
rewrite their command lines to those commands and hold only the descriptors those would.

The door: a grader forked from the server sends ``{"env", "preload"}`` and one end of a fresh
socket pair over the server's broker channel (:data:`BROKER`, inherited from the server);
the server hands that end to the template of that environment (starting it the first time);
the grader then sends its request and five descriptors over its own end and reads
``{"pid"}`` (the reaper started) and later ``{"status"}`` (how it ended). Nothing a worker
holds reaches the door: its descriptors are closed in the fork, before anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

#: The grader server's broker channel, in a grader forked from it (None elsewhere).
BROKER: socket.socket | None = None
#: Bytes of command line a forked reaper or worker can show (a reaper's is about 5,000).
ROOM = 32768
#: Where a forked reaper finds its descriptors: what the command line it shows names.
FD_LIFELINE, FD_STATUS, FD_IN, FD_OUT = 3, 4, 5, 6
#: The worker's variables that name its own folder: set in the fork, not in the template.
PER_WORKER = ("HOME", "TMPDIR", "MPLCONFIGDIR")
#: Seconds a grader waits for the template's answer (the first one imports torch first).
START_TIMEOUT_S = 120.0
CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, MS_PRIVATE = 1, 1 << 18


class Unavailable(Exception):
    """No template could start this worker: the caller starts it as a process."""


def usable(device: str, prefix: tuple[str, ...]) -> bool:
    """Whether a worker for ``device`` behind ``prefix`` (``unshare`` arguments) can be forked
    from a template here."""
    return (BROKER is not None and sys.platform.startswith("linux") and device == "cpu"
            and "--user" not in prefix and (not prefix or os.geteuid() == 0))


class Spawned:
    """What ``subprocess.Popen`` gives for the reaper, for a reaper the template forked."""

    def __init__(self, conn: socket.socket, pid: int, args: list[str]) -> None:
        self.conn, self.pid, self.args = conn, pid, args
        self.returncode: int | None = None
        self._orphan = False  # the template is gone: watch the pid itself

    def _read(self, timeout: float) -> None:
        if self._orphan:
            if not _running(self.pid):
                self._done(-signal.SIGKILL)
            return
        if not select.select([self.conn], [], [], max(timeout, 0.0))[0]:
            return
        try:
            data = self.conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._orphan = True
            return self._read(0)
        with contextlib.suppress(ValueError):
            reply = json.loads(data)
            if "status" in reply:
                self._done(int(reply["status"]))

    def _done(self, code: int) -> None:
        self.returncode = code
        self.conn.close()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 1.0 if end is None else end - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._read(min(left, 0.05) if self._orphan else min(left, 1.0))
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def spawn(env: dict[str, str], preload: list[str], request: dict[str, Any],
          fds: list[int]) -> Spawned:
    """Have the template of ``env`` fork a reaper for ``request`` with ``fds`` (its output,
    lifeline, status, and the worker's two channels); raise :class:`Unavailable` if none
    does. The caller keeps (and closes) its descriptors. A template that ends before it
    answers (killed, or ending as the request reached it) is asked for once more: the
    server starts another."""
    if BROKER is None:
        raise Unavailable("no grader server")
    for attempt in (1, 2):
        try:
            return _ask(BROKER, env, preload, request, fds)
        except _Ended:
            if attempt == 2:
                raise Unavailable("the worker template stopped twice") from None
    raise AssertionError("unreachable")


class _Ended(Unavailable):
    """The connection closed without an answer: the template ended."""


def _ask(broker: socket.socket, env: dict[str, str], preload: list[str],
         request: dict[str, Any], fds: list[int]) -> Spawned:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        key = {k: v for k, v in env.items() if k not in PER_WORKER}
        socket.send_fds(broker, [json.dumps({"env": key, "preload": preload}).encode()],
                        [theirs.fileno()])
        theirs.close()
        socket.send_fds(mine, [json.dumps({**request, "env": env}).encode()], fds)
        if not select.select([mine], [], [], START_TIMEOUT_S)[0]:
            raise Unavailable("the worker template did not answer")
        data = mine.recv(65536)
        if not data:
            raise _Ended("the worker template stopped")
        reply = json.loads(data)
    except (BrokenPipeError, ConnectionResetError):  # it closed before or after the request
        mine.close()
        raise _Ended("the worker template stopped") from None
    except (OSError, ValueError) as exc:
        mine.close()
        raise Unavailable(f"the worker template failed ({exc})") from None
    except Unavailable:
        mine.close()
        raise
    finally:
        theirs.close()
    if "pid" not in reply:
        mine.close()
        raise Unavailable(reply.get("error", "the worker template stopped"))
    return Spawned(mine, int(reply["pid"]), request["argv"]["reaper"])


# -- the template ------------------------------------------------------------------------------
def _arrange(fds: list[int], targets: list[int]) -> None:
    """Keep exactly ``fds``, renumbered to ``targets`` (and /dev/null as stdin), close the
    rest: what a worker could use to reach the template or another grading is gone."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000 + i) for i, fd in enumerate(fds)]
    os.closerange(0, 1000)
    os.closerange(1000 + len(high), os.sysconf("SC_OPEN_MAX"))
    null = os.open(os.devnull, os.O_RDONLY)
    if null != 0:
        os.dup2(null, 0)
        os.close(null)
    for fd, target in zip(high, targets, strict=True):
        os.dup2(fd, target)
        os.close(fd)


def _unshare(prefix: list[str]) -> tuple[bool, bool]:
    """What ``unshare PREFIX`` does before its fork (root only): new namespaces, mounts made
    private. Return whether the child needs a fork into the PID namespace and a fresh /proc."""
    import ctypes

    from course.grading.lockdown import MS_REC, _mount

    flags = ((CLONE_NEWPID if "--pid" in prefix else 0) | (CLONE_NEWNET if "--net" in prefix
             else 0) | (CLONE_NEWNS if "--mount" in prefix else 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if "--mount" in prefix:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)  # --propagation private
    return "--pid" in prefix, "--mount-proc" in prefix


def _start_worker(request: dict) -> int:
    """The reaper's start of the worker: fork, limits, namespaces, then boot in-process."""
    from course.grading import boot, reaper
    from course.grading.forkserver import retitle

    pid = os.fork()
    if pid:
        return pid
    try:
        os.close(FD_LIFELINE)
        os.close(FD_STATUS)
        reaper.enter_limits(request["reaper"])
        prefix = request["prefix"]
        if prefix:
            pid_ns, mount_proc = _unshare(prefix)
            retitle(request["argv"]["unshare"])
            if pid_ns and os.fork():  # `unshare --fork --kill-child`: wait, end like the child
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                while True:
                    try:
                        _, status = os.wait()
                        break
                    except InterruptedError:
                        continue
                reaper.exit_like(status)
            import ctypes

            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if mount_proc:
                from course.grading import lockdown as ld

                ld._mount("none", "/proc", None, ld.MS_REC | MS_PRIVATE)
                ld._mount("proc", "/proc", "proc", ld.MS_NOSUID | ld.MS_NODEV | ld.MS_NOEXEC)
        retitle(request["argv"]["boot"])
        sys.argv = ["-c", *request["argv"]["boot"][4:]]
        boot.run(FD_IN, FD_OUT, request["boot"])
    except BaseException as exc:  # noqa: BLE001 - nothing here may return into the reaper
        with contextlib.suppress(OSError):
            os.write(2, f"worker template: cannot start the worker: {exc}\n".encode())
    os._exit(127)


def _reaper(request: dict, fds: list[int]) -> None:
    """In the forked child: become the reaper of ``request`` and never return."""
    from course.grading import reaper
    from course.grading.forkserver import retitle

    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        _arrange(fds, [1, FD_LIFELINE, FD_STATUS, FD_IN, FD_OUT])
        os.dup2(1, 2)
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # the template's TMPDIR is not this worker's
        retitle(request["argv"]["reaper"])
        sys.argv = ["-c", *request["argv"]["reaper"][4:]]
        reaper.serve(request["reaper"], lambda: _start_worker(request))
    except BaseException:  # noqa: BLE001 - whatever happens, this process ends here
        with contextlib.suppress(Exception):
            traceback.print_exc()
    os._exit(70)


def serve(door: int, preload: list[str]) -> None:
    """The template's loop: import, then accept connections on ``door`` and fork reapers."""
    import importlib
    import shutil

    home = tempfile.mkdtemp(prefix="course-zygote-")
    os.environ.update(HOME=home, TMPDIR=home, MPLCONFIGDIR=home)
    try:
        import torch  # noqa: F401

        for name in preload:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        from course.grading import boot, forkserver, lockdown, reaper, worker  # noqa: F401
    finally:
        shutil.rmtree(home, ignore_errors=True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    doors = socket.socket(fileno=door)
    waiting: list[socket.socket] = []  # connections whose request has not come yet
    running: dict[int, socket.socket] = {}  # reaper pid -> its grader's connection
    while True:
        ready = select.select([doors, wake_r, *waiting], [], [])[0]
        for item in ready:
            if item is wake_r:
                os.read(wake_r, 4096)
                _reap(running)
            elif item is doors:
                try:
                    _, got, _, _ = socket.recv_fds(doors, 16, 1)
                except OSError:
                    got = []
                if not got:  # the grader server is gone
                    os._exit(0)
                waiting += [socket.socket(fileno=fd) for fd in got]
            else:
                waiting.remove(item)
                _answer(item, running)
        _reap(running)


def _answer(conn: socket.socket, running: dict[int, socket.socket]) -> None:
    """Read one request from ``conn`` and fork its reaper."""
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 8)
    except OSError:
        conn.close()
        return
    try:
        request = json.loads(data)
        if len(fds) != 5:
            raise ValueError(f"{len(fds)} descriptors, 5 expected")
    except ValueError as exc:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.send(json.dumps({"error": f"bad request: {exc}"}).encode())
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        _reaper(request, fds)
    for fd in fds:
        os.close(fd)
    running[pid] = conn
    with contextlib.suppress(OSError):
        conn.send(json.dumps({"pid": pid}).encode())


def _reap(running: dict[int, socket.socket]) -> None:
    from course.grading.forkserver import ended_children

    for pid, code in ended_children():
        conn = running.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"status": code}).encode())
            conn.close()


def main(argv: list[str]) -> None:
    serve(int(argv[0]), json.loads(argv[1]))
