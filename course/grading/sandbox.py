"""Starting, talking to and killing worker processes, with the limits of the trust boundary.

Each worker runs in its own scratch directory and session, with an address-space (memory)
cap, a CPU-time cap, a cap on file size and on captured output, its environment reduced to
what the notebook needs, and, where the platform allows (Linux with ``unshare``): its own PID
namespace (a fork bomb dies with the worker) and no network, and, where cgroups are writable,
caps on its number of processes and on its resident memory (:mod:`course.grading.cgroups`).
Every request has a wall-clock deadline; on expiry the whole process tree is killed. Between
requests the worker's processes are stopped (SIGSTOP to its process group, and the cgroup
freezer where there is one), so student code only ever runs inside a timed request.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.grading import protocol
from course.grading.cgroups import WorkerCgroup
from course.grading.lockdown import needed_paths
from course.paths import PACKAGE_DIR, data_dir, repo_root


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker. Times in seconds, sizes in MiB."""

    memory_mb: int = 6144  # address space; not applied for CUDA (it maps huge ranges)
    cpu_seconds: int = 1200
    file_mb: int = 64
    output_kb: int = 64  # captured stdout/stderr kept (head and tail)
    reply_mb: int = 256
    threads: int = 0  # torch/OpenMP threads; 0: leave to the platform
    processes: int = 256  # processes and threads (a cgroup cap, where cgroups are writable)


class WorkerError(RuntimeError):
    """The worker did not answer: it crashed, was killed, or broke the protocol."""


class WorkerTimeout(WorkerError):
    """The worker did not answer before the deadline; it has been killed."""


class WorkerCrashed(WorkerError):
    """The worker process ended (or closed its pipe) while a request was pending."""


@functools.cache
def _isolation_prefix() -> tuple[str, ...]:
    """``unshare`` arguments giving a PID namespace and no network, if this platform allows."""
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    base = ("--pid", "--fork", "--kill-child", "--net")
    mount = ("--mount", "--propagation", "private", "--mount-proc")
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    candidates = [(exe, *user, *base, *mount), (exe, *user, *base)]
    for prefix in candidates:
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return prefix
    return ()


def isolation_summary() -> str:
    """One line saying which isolation this platform gives workers (for logs and docs)."""
    parts = ["own session", "rlimits"]
    if _isolation_prefix():
        parts += ["PID namespace", "no network"]
    if "--mount" in _isolation_prefix():
        parts.append("read-only filesystem with the course repository hidden")
    if WorkerCgroup.available():
        parts.append("cgroup caps on processes and memory")
    return ", ".join(parts)


def _set_limits(limits: Limits, cap_memory: bool, cgroup: WorkerCgroup) -> None:
    """Runs in the child between fork and exec."""
    try:
        cgroup.enter()
    except OSError:  # pragma: no cover - the group vanished; rlimits still apply
        pass
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    mib = 2**20
    if cap_memory:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib, limits.memory_mb * mib))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mib, limits.file_mb * mib))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _OutputTail:
    """Drains a pipe in a thread, keeping the first and last ``keep`` bytes."""

    def __init__(self, fd: int, keep: int) -> None:
        self.fd, self.keep = fd, keep
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            room = self.keep - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail += chunk
            if len(self.tail) > self.keep:
                self.dropped += len(self.tail) - self.keep
                del self.tail[: len(self.tail) - self.keep]
        os.close(self.fd)

    def text(self) -> str:
        middle = f"\n... [{self.dropped} bytes of output dropped] ...\n" if self.dropped else ""
        return (bytes(self.head).decode(errors="replace") + middle
                + bytes(self.tail).decode(errors="replace"))


@dataclass
class WorkerProcess:
    """One worker: ``start()``, then ``request()`` as often as needed, then ``close()``."""

    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    scale: str = "ci"
    proc: subprocess.Popen | None = None
    scratch: Path | None = None
    cgroup: WorkerCgroup | None = None

    def start(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="course-worker-"))
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        out_r, out_w = os.pipe()
        prefix = _isolation_prefix()
        cmd = [*prefix, sys.executable, "-I", "-m", "course.grading.worker",
               str(to_worker_r), str(from_worker_w)]
        if "--mount" in prefix:
            cmd += ["--lockdown", json.dumps({
                "hide": str(repo_root()),
                "keep": [str(p) for p in needed_paths(PACKAGE_DIR, data_dir())],
                "scratch_mb": self.limits.file_mb,
            })]
        cap_memory = not self.device.startswith("cuda")
        self.cgroup = WorkerCgroup(self.limits.processes, self.limits.memory_mb * 2**20)
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=out_w,
                cwd=self.scratch,
                env=self._env(),
                pass_fds=(to_worker_r, from_worker_w),
                start_new_session=True,
                preexec_fn=functools.partial(_set_limits, self.limits, cap_memory, self.cgroup),
            )
        finally:
            for fd in (to_worker_r, from_worker_w, out_w):
                os.close(fd)
        self.output = _OutputTail(out_r, self.limits.output_kb * 1024)

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.scratch),
            "TMPDIR": str(self.scratch),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.scratch / ".mpl"),
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "COURSE_SCALE": self.scale,
            "COURSE_DATA": str(data_dir()),
            "COURSE_DEVICE": self.device,
            "TQDM_DISABLE": "1",
        }
        if self.limits.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.limits.threads)
        for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def request(self, message: dict, timeout: float) -> Any:
        """Send one request and return the worker's reply (a dict of data)."""
        if self.proc is None:
            raise WorkerCrashed("worker not started")
        deadline = time.monotonic() + timeout
        self._pause(False)
        try:
            protocol.write_frame(self._to_worker, protocol.encode(message))
            reply = protocol.read_frame(self._from_worker, deadline,
                                        max_size=self.limits.reply_mb * 2**20)
            self._pause(True)
            return reply
        except protocol.FrameTimeout:
            self.kill()
            raise WorkerTimeout(f"no answer within {timeout:g} s") from None
        except (EOFError, BrokenPipeError):
            code = self.wait_exit()
            if code in (-signal.SIGKILL, 137) and self.cgroup and self.cgroup.hit_memory_limit():
                raise WorkerCrashed("the worker process was killed: it used more than the "
                                    f"{self.limits.memory_mb} MiB memory limit") from None
            raise WorkerCrashed(describe_exit(code)) from None
        except protocol.ProtocolError as exc:
            self.kill()
            raise WorkerCrashed(f"broke the protocol: {exc}") from None

    def _pause(self, stopped: bool) -> None:
        """Stop the worker's processes between requests (and resume them for the next), so
        that student code runs only while a request is timed: a thread or child left running
        after a call cannot keep using CPU or writing while the grader checks the result."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.cgroup is not None:
            self.cgroup.freeze(stopped)
        try:
            os.killpg(self.proc.pid, signal.SIGSTOP if stopped else signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.cgroup is not None:
            self.cgroup.freeze(False)  # frozen tasks of a v1 freezer would not die
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.cgroup is not None:
            self.cgroup.kill_all()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def close(self) -> None:
        """Stop the worker (politely, then by force) and remove its scratch directory."""
        if self.proc is not None and self.proc.poll() is None:
            self._pause(False)
            try:
                protocol.write_frame(self._to_worker, {"op": "exit"})
                self.proc.wait(2)
            except (OSError, subprocess.TimeoutExpired, protocol.ProtocolError):
                pass
        self.kill()
        for fd in (getattr(self, "_to_worker", None), getattr(self, "_from_worker", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.cgroup is not None:
            self.cgroup.destroy()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.proc = None


def describe_exit(code: int | None) -> str:
    """A student-readable reason for a worker's exit status."""
    if code is None:
        return "the worker process stopped answering"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hints = {
            "SIGSEGV": "a segmentation fault",
            "SIGKILL": "killed (time or memory limit?)",
            "SIGXCPU": "the CPU-time limit was reached",
            "SIGXFSZ": "the file-size limit was reached",
            "SIGABRT": "aborted",
        }
        return f"the worker process died: {hints.get(name, name)}"
    if code == 137:
        return "the worker process was killed (time or memory limit?)"
    return f"the worker process exited with status {code} (sys.exit or os._exit in your code?)"
