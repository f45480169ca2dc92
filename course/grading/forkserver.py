"""Graders started ahead: one process per class run imports what an assignment's hidden tests
need (pytest, torch, scikit-learn: 5 CPU-seconds for 01), then forks a grader per submission.

Linux only (fork after importing torch is what Linux's own multiprocessing does; macOS's
frameworks are not fork-safe). The server never sees a submission: it holds the grader's code
and imports, nothing else; each forked grader is the same pytest run, with the same command
line, environment, working folder and memory cap, that :func:`course.grading.runner.
run_hidden_tests` would start as a new process. It still starts its own worker (the only
process that runs student code), in the same sandbox: forked from a worker template that the
server starts on a grader's first request (:mod:`course.grading.zygote`; the server brokers
the connection and never sees a worker), or started as a process where there is none.

``python -P -m course.grading.forkserver TESTS ROOM`` reads one JSON request per line on
stdin (``{"id", "argv", "env", "cwd", "out"}``) and answers on stdout with
``{"id", "pid"}`` when the grader started and ``{"id", "status"}`` (a Popen-style return
code) when it ended. At end of file it kills the graders still running and exits. ROOM is
padding: the server's command line is the room a grader rewrites to show its own (pytest's
arguments: ``ps`` and anything that looks for graders by command line see what they saw).
"""

from __future__ import annotations

import ast
import ctypes
import importlib
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

#: Bytes of command line a forked grader can show (a grader's is about 600).
ROOM = 4096
#: Seconds a request may wait for the server's answer that its grader started (the server
#: answers at once, unless it is still importing: torch and scikit-learn on a slow disk).
START_TIMEOUT_S = 300.0
PR_SET_PDEATHSIG = 1


def available() -> bool:
    """Whether graders can be forked here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def top_level_imports(tests: Path) -> list[str]:
    """The absolute modules a hidden-test file imports at its top level, in order, and those
    it has a top-level ``ImportedLater(...)`` import in the background (the server imports
    them before it forks: its graders find them loaded)."""
    names: list[str] = []
    for node in ast.parse(tests.read_text()).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module \
                and node.module != "__future__":
            names.append(node.module)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call) \
                and getattr(node.value.func, "id", None) == "ImportedLater":
            names += [a.value for a in node.value.args
                      if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return names


class ServerGone(Exception):
    """The server stopped before it started the grader: the caller starts one itself."""


class ForkServer:
    """The client side: start the server, then :meth:`run` graders (from any thread)."""

    def __init__(self, tests: Path, env: dict[str, str], cwd: Path,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "course.grading.forkserver", str(tests), " " * ROOM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=cwd, preexec_fn=preexec_fn)
        self._ids = itertools.count(1)
        self._write = threading.Lock()
        self._state = threading.Condition()
        self._pids: dict[int, int] = {}
        self._status: dict[int, int] = {}
        self._gone = False
        threading.Thread(target=self._read, daemon=True, name="forkserver-replies").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            with self._state:
                if "pid" in reply:
                    self._pids[reply["id"]] = int(reply["pid"])
                if "status" in reply:
                    self._status[reply["id"]] = int(reply["status"])
                self._state.notify_all()
        with self._state:
            self._gone = True
            self._state.notify_all()

    def run(self, argv: list[str], env: dict[str, str], cwd: Path, out: Path,
            timeout: float) -> int | None:
        """Run ``pytest argv`` in a forked grader, its output to ``out``; its return code,
        or None when it ran past ``timeout`` seconds (it was killed, as subprocess.run does).
        Raises :class:`ServerGone` when the server could not start it."""
        rid = next(self._ids)
        request = json.dumps({"id": rid, "argv": argv, "env": env, "cwd": str(cwd),
                              "out": str(out)}) + "\n"
        try:
            with self._write:
                assert self.proc.stdin is not None
                self.proc.stdin.write(request.encode())
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise ServerGone(f"the grader server stopped ({exc})") from None
        with self._state:
            if not self._state.wait_for(lambda: rid in self._pids or self._gone,
                                        START_TIMEOUT_S):
                raise ServerGone("the grader server did not answer")
            if rid not in self._pids:
                raise ServerGone(f"the grader server stopped (exit status {self.proc.poll()})")
            pid = self._pids.pop(rid)
            if self._state.wait_for(lambda: rid in self._status or self._gone, timeout):
                if rid in self._status:
                    return self._status.pop(rid)
        # past its time, or the server is gone (the grader dies with it): kill it, as
        # subprocess.run kills a process past its timeout
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        with self._state:
            self._state.wait_for(lambda: rid in self._status or self._gone, 10.0)
            code = self._status.pop(rid, None)
            if code is None and self._gone:
                return -signal.SIGKILL  # it died with its server (PR_SET_PDEATHSIG)
        return None if code is None or code == -signal.SIGKILL else code

    def close(self) -> None:
        """Stop the server (graders still running are killed)."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class GraderPool:
    """The fork servers of one class run: one per hidden-test file and grader environment,
    started by the first submission that needs it; :meth:`close` stops them."""

    def __init__(self) -> None:
        self._servers: dict[tuple, ForkServer | None] = {}
        self._lock = threading.Lock()

    def server(self, tests: Path, env: dict[str, str], cwd: Path,
               preexec_fn: Callable[[], None] | None, key: tuple) -> ForkServer | None:
        """The server for ``key`` (started now if new); None where it cannot be used."""
        with self._lock:
            if key not in self._servers:
                try:
                    self._servers[key] = ForkServer(tests, env, cwd, preexec_fn)
                except OSError:
                    self._servers[key] = None
            return self._servers[key]

    def discard(self, key: tuple) -> None:
        """Stop using a server that stopped (the graders of ``key`` start as processes)."""
        with self._lock:
            server = self._servers.get(key)
            self._servers[key] = None
        if server is not None:
            server.close()

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            if server is not None:
                server.close()

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the server -------------------------------------------------------------------------------
def retitle(args: list[str]) -> None:
    """Show ``args`` as this process's command line (/proc/PID/cmdline), in the memory that
    held the server's own arguments (what setproctitle does); nothing when it does not fit."""
    try:
        fields = Path("/proc/self/stat").read_bytes().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: proc(5) 48, 49
    except (OSError, ValueError, IndexError):
        return
    data = b"\0".join(os.fsencode(a) for a in args) + b"\0"
    if 0 < start < end and len(data) <= end - start:
        ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)


def _grader(request: dict, channels: tuple[int, ...]) -> None:
    """In the forked child: become the grader process of ``request`` and never return."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in channels:
            os.close(fd)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the server gone: so is this
        if os.getppid() == 1:
            os._exit(code)
        out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = [str(a) for a in request["argv"]]
        retitle([sys.executable, "-P", "-m", "pytest", *argv])
        sys.argv = ["pytest", *argv]
        import pytest

        code = int(pytest.main(argv))
    except BaseException:  # noqa: BLE001 - whatever happens, this process ends here
        traceback.print_exc()
    finally:
        from course.grading.boot import leave_now

        leave_now(code)


def _broker(broker: socket.socket, templates: dict[str, socket.socket]) -> None:
    """Hand a grader's connection to the worker template of the environment it names,
    started now if there is none (or the last one stopped). Without one, the connection is
    closed: the grader starts its worker as a process."""
    from course.grading import sandbox, zygote

    try:
        data, fds, _, _ = socket.recv_fds(broker, 1 << 20, 1)
    except OSError:
        return
    try:
        ask = json.loads(data)
        key = json.dumps(ask, sort_keys=True)
        for _ in range(2):
            if key not in templates:
                door, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                with theirs:
                    subprocess.Popen(
                        [*sandbox._python("zygote"), str(theirs.fileno()),
                         json.dumps(ask["preload"]), " " * zygote.ROOM],
                        env=ask["env"], pass_fds=(theirs.fileno(),), cwd="/",
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        start_new_session=True)
                templates[key] = door
            try:
                socket.send_fds(templates[key], [b"c"], fds[:1])
                break
            except OSError:  # it stopped: start another
                templates.pop(key).close()
    except (OSError, ValueError, KeyError, TypeError):
        pass
    finally:
        for fd in fds:
            os.close(fd)


def ended_children() -> Iterator[tuple[int, int]]:
    """Reap the children that have ended, without waiting: (pid, Popen-style return code)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


def serve(tests: Path) -> None:
    """Import what the graders of ``tests`` need, then fork one per request."""
    sys.dont_write_bytecode = True
    for name in ("pytest", "course.grading.plugin", *top_level_imports(tests)):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the grader's own collection reports it
            pass
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # nothing reaches the reply channel but replies
    os.close(null)
    wake_r, wake_w = os.pipe()
    for fd in (requests, replies, wake_r, wake_w):
        os.set_inheritable(fd, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    running: dict[int, int] = {}  # pid -> request id

    def reply(message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(replies, data):]

    def reap() -> None:
        for pid, code in ended_children():
            if pid in running:
                reply({"id": running.pop(pid), "status": code})

    # the broker: graders ask it for a worker template (course.grading.zygote)
    from course.grading import zygote

    broker, zygote.BROKER = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    templates: dict[str, socket.socket] = {}  # worker environment -> the template's door
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    selector.register(broker, selectors.EVENT_READ)
    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                reap()
                continue
            if key.fd == broker.fileno():
                _broker(broker, templates)
                continue
            chunk = os.read(requests, 65536)
            if not chunk:  # the class run is over (or its process died)
                for pid in running:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _grader(request, (requests, replies, wake_r, wake_w, selector.fileno(),
                                      broker.fileno(), *(t.fileno() for t in templates.values())))
                running[pid] = request["id"]
                reply({"id": request["id"], "pid": pid})
        reap()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
