"""Starting, talking to and killing worker processes, with the limits of the trust boundary.

A worker is started beside its reaper (:mod:`course.grading.reaper`: kills what a call leaves
running, and everything when the grader dies), or both are forked from a worker template that
imported torch once (:mod:`course.grading.zygote`: graders forked from a server, on Linux),
and it confines itself before any student code
runs (:mod:`course.grading.boot`): the mount lockdown inside fresh namespaces where ``unshare``
works, an unprivileged uid or dropped capabilities when the grader is root, the Landlock
allow-list and the seccomp filter of :mod:`course.grading.confine` (``sandbox-exec`` on macOS,
:mod:`course.grading.macos`). Its first frame says what it achieved; :func:`assess` turns that
into a level ("weak", "contained", "isolated") and the worker is refused below the level the
grader requires. Also: an address-space, CPU-time and file-size cap, captured output capped,
a reduced environment, cgroup caps on processes and resident memory where cgroups are
writable (:mod:`course.grading.cgroups`), a time limit per request on the time it is charged
(CPU time of the worker's tree, at most the wall time: :mod:`course.grading.cputime`) with a
loose wall-clock bound (on expiry the whole tree is killed), and between requests the worker
is stopped (SIGSTOP to its process group, and the cgroup freezer where there is one), so
student code only runs inside a timed request.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.grading import cputime, fonts, macos, protocol, zygote
from course.grading.cgroups import WorkerCgroup
from course.grading.confine import readable_by_others
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
    #: A request's time limit bounds the time it is charged (see course.grading.cputime); its
    #: wall-clock time is bounded only loosely, by wall_factor * limit + wall_slack_s.
    wall_factor: float = 4.0
    wall_slack_s: float = 60.0


#: Seconds a new worker may take to confine itself and import torch (a busy machine is slow;
#: past this the submission is "not graded", never failed).
HELLO_TIMEOUT_S = 300.0
#: How often a request past its limit in wall time re-reads the CPU time it was charged.
CPU_POLL_S = 0.5


class WorkerError(RuntimeError):
    """The worker did not answer: it crashed, was killed, or broke the protocol."""


class WorkerTimeout(WorkerError):
    """The worker did not answer before the deadline; it has been killed. ``waiting``: it hit
    the wall-clock bound while hardly computing (sleeping, blocked), not the time limit."""

    def __init__(self, message: str, waiting: bool = False) -> None:
        super().__init__(message)
        self.waiting = waiting


class WorkerCrashed(WorkerError):
    """The worker process ended (or closed its pipe) while a request was pending.
    ``from_outside``: it was SIGKILLed by nothing the grader did or counted (no time, memory
    or scratch limit): the machine's OOM killer, an administrator, or the code itself."""

    def __init__(self, message: str, from_outside: bool = False) -> None:
        super().__init__(message)
        self.from_outside = from_outside


LINUX = sys.platform.startswith("linux")
#: Isolation levels, weakest first. "contained": the worker sees only an allow-list of paths,
#: has no network and cannot signal outside its own processes. "isolated": contained, and
#: also in its own PID namespace with cgroup caps (nothing escapes its process tree).
LEVELS = ("weak", "contained", "isolated")
#: Layers a test (or a wary instructor) can switch off to see how grading holds without them:
#: COURSE_SANDBOX_DISABLE=unshare,cgroups simulates a machine without either.
LAYERS = ("unshare", "cgroups", "landlock", "seccomp", "uid", "sandbox-exec")


class GraderFault(RuntimeError):
    """The grading machinery failed before student code ran: nothing is known about the
    submission, so it is "not graded" (never a zero)."""


class IsolationTooWeak(GraderFault):
    """The worker could not be confined to the level the grader requires."""


class WorkerStartFailed(GraderFault):
    """A worker died or stayed silent before saying how it was confined."""


class MachineOverloaded(GraderFault):
    """A request reached its wall-clock bound while its code was computing but starved of CPU
    by other work on the machine: no verdict can be drawn from it."""


def disabled_layers() -> frozenset[str]:
    """Layers switched off with ``COURSE_SANDBOX_DISABLE`` (comma-separated names of LAYERS)."""
    names = {n.strip() for n in os.environ.get("COURSE_SANDBOX_DISABLE", "").split(",")}
    unknown = names - set(LAYERS) - {""}
    if unknown:
        raise ValueError(f"COURSE_SANDBOX_DISABLE: unknown layer(s) {sorted(unknown)}; "
                         f"known: {', '.join(LAYERS)}")
    return frozenset(names - {""})


def _isolation_prefix() -> tuple[str, ...]:
    """``unshare`` arguments giving a PID namespace and no network, if this platform allows."""
    return () if "unshare" in disabled_layers() else _probe_unshare()


@functools.cache
def _probe_unshare() -> tuple[str, ...]:
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


def _cgroups_allowed() -> bool:
    return "cgroups" not in disabled_layers()


def worker_uid(scratch_parent: Path) -> tuple[int | None, str]:
    """The uid a worker switches to, or None with the reason. Only a root grader can hand one
    out, and only when the Python environment, the package and the data are readable by
    others (a worker that cannot import torch grades nothing)."""
    if os.geteuid() != 0:
        return None, "the grader does not run as root (the worker keeps the grader's uid)"
    if "uid" in disabled_layers():
        return None, "switched off (COURSE_SANDBOX_DISABLE)"
    needed = [Path(sys.executable), Path(sys.prefix), Path(sys.base_prefix),
              *[Path(p) for p in site.getsitepackages()], PACKAGE_DIR, data_dir(),
              scratch_parent]
    blocked = [p for p in needed if p.exists() and not readable_by_others(p)]
    if blocked:
        return None, (f"{blocked[0]} is not readable by other users (install the Python "
                      "environment somewhere world-readable, e.g. /opt, to run student code "
                      "as its own user)")
    if "COURSE_WORKER_UID" in os.environ:
        return int(os.environ["COURSE_WORKER_UID"]), ""
    return 61000 + os.getpid() % 4000, ""  # one per grader process: graders don't share


def landlock_paths(device: str) -> dict[str, list[str]]:
    """What the worker may read (besides writing its scratch folder): its Python, the package,
    the data, system libraries and the kernel's views of itself; device files for CUDA."""
    read = [str(p) for p in needed_paths(PACKAGE_DIR, data_dir())]
    read += ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
             "/etc/ld.so.cache", "/etc/localtime", "/proc", "/sys", "/dev/urandom",
             "/dev/random", "/dev/zero"]
    devices = ["/dev/null"]
    if device.startswith("cuda"):
        devices += [str(p) for p in sorted(Path("/dev").glob("nvidia*"))] + ["/dev/dri"]
    return {"read": read, "devices": devices}


def assess(prefix: tuple[str, ...], cgroup: bool, applied: dict) -> dict:
    """The isolation a worker reached, from what the grader set up (``prefix``, ``cgroup``) and
    what the worker reported it applied: level, the layers, and what is missing and why."""
    layers, missing = [], []
    pidns, netns = "--pid" in prefix, "--net" in prefix
    if prefix and prefix[0].endswith("sandbox-exec"):  # macOS: one deny-by-default profile
        return {"level": "contained", "missing": [], "problems": list(applied.get("problems")
                                                                     or []),
                "layers": ["sandbox-exec profile: allow-list of paths, no network, signals "
                           "within the sandbox", "rlimits"]}
    uid = applied.get("uid")
    if applied.get("landlock"):
        layers.append(f"Landlock ABI {applied['landlock']} allow-list of paths")
    elif applied.get("lockdown"):
        layers.append("read-only filesystem with the course repository hidden")
    files = bool(applied.get("landlock"))
    if not files:
        missing.append("an allow-list of paths (Landlock, Linux >= 5.13): the worker can read "
                       "every file its user can, other copies of the course included")
    if uid is not None:
        layers.append(f"own uid {uid}")
    elif applied.get("capabilities_dropped"):
        layers.append("capabilities dropped")
    if netns:
        layers.append("no network (network namespace)")
    if applied.get("seccomp"):
        layers.append("no sockets (seccomp)")
    elif applied.get("landlock_tcp"):
        layers.append("TCP refused (Landlock)")
    network = netns or bool(applied.get("seccomp"))
    if not network:
        missing.append("no network: neither a network namespace nor seccomp was available")
    if pidns:
        layers.append("own PID namespace")
    if applied.get("landlock_signals"):
        layers.append("signals scoped to the worker (Landlock)")
    elif applied.get("seccomp_signals"):
        layers.append("signals only to its own process group (seccomp)")
    signals = (pidns or bool(applied.get("landlock_signals"))
               or bool(applied.get("seccomp_signals")) or uid is not None)
    if not signals:
        missing.append("signal confinement: no PID namespace, Landlock ABI < 6, no seccomp "
                       "and no uid of its own, so it can signal the grader's processes")
    if cgroup:
        layers.append("cgroup caps on processes and memory")
    layers.append("rlimits")
    level = "weak"
    if files and network and signals:
        level = "isolated" if pidns and cgroup else "contained"
    problems = list(applied.get("problems") or [])
    return {"level": level, "layers": layers, "missing": missing, "problems": problems}


def refusal(report: dict) -> str:
    """Why grading is refused on this machine, and what to do (one paragraph)."""
    lacks = "; ".join(report["missing"] + report.get("problems", [])) or "see the layers"
    return (f"refusing to run student code: the sandbox reached only '{report['level']}' "
            f"isolation on this machine ({', '.join(report['layers'])}). Missing: {lacks}. "
            "Grade on Linux >= 5.13 (Landlock) or as root with `unshare`, or pass "
            "--allow-weak-isolation if you trust every submission.")


def describe(report: dict) -> str:
    """One line: the level and its layers."""
    return f"{report['level']}: {', '.join(report['layers'])}"


def isolation_summary(device: str = "cpu") -> str:
    """One line saying which isolation a worker gets on this machine (starts one to find out)."""
    return describe(probe_isolation(device))


def probe_isolation(device: str = "cpu") -> dict:
    """Start a worker that runs no student code and return its :func:`assess` report."""
    worker = WorkerProcess(device=device, min_level="weak")
    try:
        worker.start()
        return worker.isolation
    finally:
        worker.close()


def _python(module: str) -> list[str]:
    """Run ``course.grading.<module>`` from the very package this grader runs (and allows the
    worker to read), whatever other ``course`` the environment may have installed."""
    code = (f"import sys; sys.path.insert(0, {str(PACKAGE_DIR.parent)!r}); "
            f"from course.grading.{module} import main; main(sys.argv[1:])")
    return [sys.executable, "-I", "-c", code]


def _rlimits(limits: Limits, cap_memory: bool) -> dict[str, list[int]]:
    """The worker's rlimits, applied by the reaper between fork and exec."""
    mib = 2**20
    out = {"RLIMIT_CPU": [limits.cpu_seconds, limits.cpu_seconds + 5],
           "RLIMIT_FSIZE": [limits.file_mb * mib, limits.file_mb * mib],
           "RLIMIT_CORE": [0, 0]}
    if cap_memory:
        out["RLIMIT_AS"] = [limits.memory_mb * mib, limits.memory_mb * mib]
    return out


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


def answer_callback(frame: dict, callbacks: dict[str, Callable[..., Any]] | None) -> dict:
    """The grader's answer to a worker's ``callback`` frame: the named reference function
    called on the frame's arguments (data, checked like any reply), as an ``ok`` frame, or a
    one-line refusal the worker raises in the student's code."""
    name = frame.get("name")
    if not callbacks or not isinstance(name, str) or name not in callbacks:
        raise protocol.ProtocolError(f"asked the grader for a callback it did not offer: "
                                     f"{str(name)[:40]!r}")
    args = protocol.decode_reply_value(frame.get("args", ()))
    kwargs = protocol.decode_reply_value(frame.get("kwargs", {}))
    if not isinstance(args, tuple) or not isinstance(kwargs, dict):
        raise protocol.ProtocolError("a callback frame without arguments")
    fn = callbacks[name]
    try:
        if getattr(fn, "differentiable", False):
            return _differentiable_answer(fn, args, kwargs)
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the student's arguments did not fit
        return {"ok": False, "message": f"{name}(...) (the grader's reference, standing in for "
                f"yours in this test) could not use these arguments: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"}
    return {"ok": True, "value": protocol.encode(value)}


def differentiable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a stand-in as a differentiable scalar function (a loss): its answer carries the
    gradient with respect to each tensor argument, so gradients flow through it in the worker."""
    fn.differentiable = True  # type: ignore[attr-defined]
    return fn


def _differentiable_answer(fn: Callable[..., Any], args: tuple, kwargs: dict) -> dict:
    import torch

    leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor)
              and a.is_floating_point() else a for a in args]
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    with torch.enable_grad():
        value = fn(*leaves, **kwargs)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            return {"ok": True, "value": protocol.encode(value)}
        wrt = [x for x in leaves if isinstance(x, torch.Tensor) and x.requires_grad]
        found = torch.autograd.grad(value.sum(), wrt, allow_unused=True) \
            if value.requires_grad and wrt else [None] * len(wrt)
    by_leaf = dict(zip(map(id, wrt), found, strict=True))
    grads = [by_leaf.get(id(x)) for x in leaves if isinstance(x, torch.Tensor)]
    dtype = tensors[0].dtype if tensors else value.dtype
    return {"ok": True, "value": value.detach().to(dtype),
            "grads": [g.to(t.dtype) if g is not None else None
                      for g, t in zip(grads, tensors, strict=True)]}


@dataclass
class WorkerProcess:
    """One worker: ``start()``, then ``request()`` as often as needed, then ``close()``."""

    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    scale: str = "ci"
    proc: subprocess.Popen | None = None
    scratch: Path | None = None
    cgroup: WorkerCgroup | None = None
    min_level: str = "contained"  # refuse to run student code below this (see LEVELS)
    isolation: dict = field(default_factory=dict)  # assess() of this worker, once started
    uid_note: str = ""  # why the worker keeps the grader's uid, when it does
    worker_pid: int = 0  # the worker's pid (and process group); self.proc is its reaper
    charged_s: float = 0.0  # what the last request was charged (see request())
    compute_s: float = 0.0  # its compute time: the user CPU share of that (see cputime)
    greeted: bool = False  # its hello was read: it serves requests
    preload: tuple[str, ...] = ()  # modules it imports before its hello (notebook.PRELOADS)

    def _spec(self, prefix: tuple[str, ...]) -> dict:
        """What the worker applies to itself before anything else (see course.grading.boot)."""
        off = disabled_layers()
        assert self.scratch is not None
        uid, self.uid_note = worker_uid(self.scratch.parent)
        spec: dict[str, Any] = {"scratch": str(self.scratch), "uid": uid,
                                "seccomp": "seccomp" not in off and LINUX, "lockdown": None,
                                "landlock": None if "landlock" in off
                                else landlock_paths(self.device),
                                "preload": list(self.preload)}
        if "--mount" in prefix:
            spec["lockdown"] = {
                "hide": str(repo_root()),
                "keep": [str(p) for p in needed_paths(PACKAGE_DIR, data_dir())],
                "scratch_mb": self.limits.file_mb,
            }
        if uid is not None:
            for path in (self.scratch, *self.scratch.rglob("*")):  # and what fonts.give put
                os.chown(path, uid, uid)
        return spec

    def start(self) -> None:
        """Start the worker and read how it was confined; raise :class:`IsolationTooWeak`
        (after stopping it) when that is below ``min_level``."""
        self.launch()
        self.await_hello()

    def launch(self, template: bool = True) -> None:
        """Start the worker's process and return at once: it confines itself and imports
        torch (seconds) while the grader goes on; :meth:`await_hello` then reads how it was
        confined. No student code runs before that: the worker waits for a request.
        ``template``: fork it from a worker template where one is available (see
        :mod:`course.grading.zygote`)."""
        self.scratch = Path(tempfile.mkdtemp(prefix="course-worker-"))
        fonts.give(self.scratch / ".mpl")  # matplotlib's font list: no scan of the fonts
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        for fd in (self._to_worker, from_worker_w):  # tensors cross these
            protocol.widen_pipe(fd)
        out_r, out_w = os.pipe()
        prefix = _isolation_prefix()
        if not LINUX and "sandbox-exec" not in disabled_layers():
            prefix = macos.prefix(landlock_paths(self.device)["read"], [str(self.scratch)])
        spec = json.dumps(self._spec(prefix))
        cap_memory = not self.device.startswith("cuda")
        self.cgroup = WorkerCgroup(self.limits.processes, self.limits.memory_mb * 2**20,
                                   enabled=_cgroups_allowed())
        lifeline_r, self._lifeline = os.pipe()
        self._status, status_w = os.pipe()

        def reaper_spec(lifeline: int, status: int) -> dict:
            return {"lifeline": lifeline, "status": status, "via_unshare": bool(prefix),
                    "scratch": str(self.scratch), "scratch_bytes": self.limits.file_mb * 2**20,
                    "cgroups": [str(d) for d in self.cgroup.dirs],
                    "rlimits": _rlimits(self.limits, cap_memory)}

        def boot_cmd(fd_in: int, fd_out: int) -> list[str]:
            return [*_python("boot"), str(fd_in), str(fd_out), spec]

        self._prefix = prefix
        passed = (out_w, lifeline_r, status_w, to_worker_r, from_worker_w)
        try:
            if template and zygote.usable(self.device, prefix):
                # forked from a template that imported torch (the same processes, seconds
                # sooner); where none answers, started as processes below
                boot = boot_cmd(zygote.FD_IN, zygote.FD_OUT)
                rspec = reaper_spec(zygote.FD_LIFELINE, zygote.FD_STATUS)
                request = {"reaper": rspec, "boot": json.loads(spec), "prefix": list(prefix),
                           "cwd": str(self.scratch),
                           "argv": {"boot": boot, "unshare": [*prefix, *boot],
                                    "reaper": [*_python("reaper"), json.dumps(rspec), "--",
                                               *prefix, *boot]}}
                with contextlib.suppress(zygote.Unavailable):
                    self.proc = zygote.spawn(self._env(), list(self.preload), request,
                                             list(passed))
            if self.proc is None:
                cmd = [*_python("reaper"), json.dumps(reaper_spec(lifeline_r, status_w)), "--",
                       *prefix, *boot_cmd(to_worker_r, from_worker_w)]
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=out_w,
                    cwd=self.scratch,
                    env=self._env(),
                    pass_fds=(to_worker_r, from_worker_w, lifeline_r, status_w),
                    start_new_session=True,
                )
        finally:
            for fd in passed:
                os.close(fd)
        self.output = _OutputTail(out_r, self.limits.output_kb * 1024)

    def await_hello(self) -> None:
        """The reaper says which process is the worker; the worker's first frame says what
        confinement it applied (sent before any student code ran, so it cannot be forged)."""
        try:
            self._learn_pid(HELLO_TIMEOUT_S)
            hello = protocol.read_frame(self._from_worker, time.monotonic() + HELLO_TIMEOUT_S,
                                        max_size=2**20)
        except (protocol.FrameTimeout, EOFError, protocol.ProtocolError) as exc:
            forked = isinstance(self.proc, zygote.Spawned)
            self.close()
            if forked:  # whatever broke the template's worker, a started one may not have
                self.worker_pid = 0
                self.launch(template=False)
                return self.await_hello()
            raise WorkerStartFailed(f"the worker did not start ({type(exc).__name__}); its "
                                    "output: " + " ".join(self.output.text()[-300:].split())
                                    ) from None
        applied = hello.get("value") if isinstance(hello, dict) else None
        if not isinstance(applied, dict) or hello.get("op") != "hello":
            self.close()
            raise WorkerStartFailed("the worker did not say how it was confined")
        self.isolation = assess(self._prefix, bool(self.cgroup and self.cgroup.active), applied)
        if self.uid_note and applied.get("uid") is None:
            self.isolation["notes"] = [f"own uid: {self.uid_note}"]
        if LEVELS.index(self.isolation["level"]) < LEVELS.index(self.min_level):
            report = self.isolation
            self.close()
            raise IsolationTooWeak(refusal(report))
        self._pause(True)
        self.greeted = True

    def _learn_pid(self, timeout: float) -> None:
        """Read the worker's pid, which the reaper sends as soon as it has started it."""
        if self.worker_pid <= 0:
            self.worker_pid = protocol.HEADER.unpack(protocol.read_exact(
                self._status, 8, time.monotonic() + timeout))[0]

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

    def wall_limit(self, timeout: float) -> float:
        """The loose wall-clock bound of a request whose charged time is limited to ``timeout``."""
        return self.limits.wall_factor * timeout + self.limits.wall_slack_s

    def request(self, message: dict, timeout: float,
                callbacks: dict[str, Callable[..., Any]] | None = None) -> Any:
        """Send one request and return the worker's reply (a dict of data).

        ``timeout`` limits the time the request is *charged*: ``min(wall, CPU time of the
        worker's process tree)`` (:mod:`course.grading.cputime`), so a machine busy with other
        work slows the request without costing the student. The wall clock only bounds it at
        :meth:`wall_limit`; reaching that while the code computes on a busy machine raises
        :class:`MachineOverloaded` (no verdict), while waiting on its own (``sleep``, a lock)
        is a :class:`WorkerTimeout` with ``waiting`` set. ``self.charged_s`` is set either way.

        ``callbacks`` answers the worker's ``callback`` frames (the names the message forwards,
        see :mod:`course.grading.worker`) with the grader's own functions, until the reply
        comes; a callback frame the request did not ask for breaks the protocol."""
        if self.proc is None:
            raise WorkerCrashed("worker not started")
        start = time.monotonic()
        self.charged_s = self.compute_s = 0.0
        times0 = cputime.tree_times(self.proc.pid)
        cpu0 = None if times0 is None else times0[1]
        self._ticks0 = cputime.cpu_ticks()
        outer = start + self.wall_limit(timeout)
        self._pause(False)
        try:
            protocol.write_frame(self._to_worker, protocol.encode(message))
            while True:
                self._await_reply(timeout, start, outer, cpu0)
                reply = protocol.read_frame(self._from_worker, outer,
                                            max_size=self.limits.reply_mb * 2**20)
                if not (isinstance(reply, dict) and reply.get("op") == "callback"):
                    break
                protocol.write_frame(self._to_worker, answer_callback(reply, callbacks))
            self._charge_times(start, times0)
            self._sweep()
            self._pause(True)
            return reply
        except protocol.FrameTimeout:  # a reply begun but not finished within the wall bound
            self._charge_times(start, times0)
            self.kill()
            raise WorkerTimeout(f"no answer within {timeout:g} s") from None
        except (EOFError, BrokenPipeError):
            self._charge_times(start, times0)
            code = self.wait_exit()
            if self._reaper_said(b"D"):
                raise WorkerCrashed("the worker process was stopped: it wrote more than the "
                                    f"{self.limits.file_mb} MiB allowed in its scratch "
                                    "folder") from None
            if code in (-signal.SIGKILL, 137):
                if self.cgroup and self.cgroup.hit_memory_limit():
                    raise WorkerCrashed("the worker process was killed: it used more than the "
                                        f"{self.limits.memory_mb} MiB memory limit") from None
                raise WorkerCrashed(describe_exit(code), from_outside=True) from None
            raise WorkerCrashed(describe_exit(code)) from None
        except protocol.ProtocolError as exc:
            self.kill()
            raise WorkerCrashed(f"broke the protocol: {exc}") from None

    def _charge_times(self, start: float, times0: tuple[float, float] | None) -> None:
        """Set ``charged_s`` and ``compute_s`` for a request begun at ``start``."""
        wall = time.monotonic() - start
        times = cputime.tree_times(self.proc.pid) if self.proc is not None else None
        if times is None or times0 is None:
            self.charged_s = self.compute_s = wall
        else:
            self.charged_s = max(0.0, min(wall, times[1] - times0[1]))
            self.compute_s = max(0.0, min(wall, times[0] - times0[0]))

    def _cpus(self) -> set[int] | None:
        """The CPUs the worker may run on (None: any, or unknown)."""
        try:
            return set(os.sched_getaffinity(self.worker_pid))
        except (AttributeError, OSError):
            return None

    def _await_reply(self, timeout: float, start: float, outer: float,
                     cpu0: float | None) -> None:
        """Return when the reply can be read; kill the worker and raise when the request was
        charged ``timeout`` or reached the wall-clock bound ``outer``. Charged time never
        exceeds wall time, so the CPU time is read only once the wall clock passed ``timeout``."""
        while True:
            now = time.monotonic()
            wall = now - start
            if wall < timeout:
                wait = timeout - wall
            else:
                cpu = cputime.tree_seconds(self.proc.pid) if self.proc is not None else None
                used_cpu = None if cpu is None or cpu0 is None else max(0.0, cpu - cpu0)
                self.charged_s = wall if used_cpu is None else min(wall, used_cpu)
                if self.charged_s >= timeout:
                    self.kill()
                    raise WorkerTimeout(f"no answer within {timeout:g} s")
                if now >= outer:
                    starved = cputime.starved(used_cpu, wall, self._ticks0, self._cpus())
                    self.kill()
                    if starved:
                        raise MachineOverloaded(
                            f"the machine was too busy: a request limited to {timeout:g} s got "
                            f"{used_cpu or 0:.1f} s of CPU in {wall:.0f} s, its cores busy "
                            "with other work")
                    self.charged_s = wall  # its own waiting: the submission pays for it
                    raise WorkerTimeout(f"no answer within {wall:.0f} s of waiting",
                                        waiting=True)
                wait = min(CPU_POLL_S, outer - now)
            if select.select([self._from_worker], [], [], max(wait, 0.001))[0]:
                return

    def _reaper_said(self, mark: bytes) -> bool:
        """Whether the reaper left ``mark`` on the status pipe (read without blocking)."""
        try:
            if select.select([self._status], [], [], 0)[0]:
                return mark in os.read(self._status, 64)
        except OSError:
            pass
        return False

    def _sweep(self) -> None:
        """Have the reaper kill every process the last request left below the worker (children,
        daemons that left its session): nothing a call starts outlives the call."""
        try:
            os.write(self._lifeline, b"k")
            protocol.read_exact(self._status, 1, time.monotonic() + 30)
        except (OSError, EOFError, protocol.FrameTimeout):
            pass

    def _pause(self, stopped: bool) -> None:
        """Stop the worker's processes between requests (and resume them for the next), so
        that student code runs only while a request is timed: a thread or child left running
        after a call cannot keep using CPU or writing while the grader checks the result."""
        if self.proc is None or self.proc.poll() is not None or self.worker_pid <= 0:
            return
        if self.cgroup is not None:
            self.cgroup.freeze(stopped)
        try:
            os.killpg(self.worker_pid, signal.SIGSTOP if stopped else signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        assert self.proc is not None
        try:
            return _wait(self.proc, timeout)
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
        if self.worker_pid <= 0 and self.proc.poll() is None:  # launched, not awaited yet
            try:
                self._learn_pid(5.0)
            except (OSError, EOFError, protocol.FrameTimeout, protocol.ProtocolError):
                pass
        if self.worker_pid > 0:  # killpg(0) would be the grader's own group
            try:
                os.killpg(self.worker_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.cgroup is not None:
            self.cgroup.kill_all()
        try:
            _wait(self.proc, 10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass

    def close(self) -> None:
        """Stop the worker (politely, then by force) and remove its scratch directory."""
        if self.proc is not None and self.proc.poll() is None and self.greeted:
            self._pause(False)
            try:
                protocol.write_frame(self._to_worker, {"op": "exit"})
                _wait(self.proc, 2)
            except (OSError, subprocess.TimeoutExpired, protocol.ProtocolError):
                pass
        self.kill()
        for fd in (getattr(self, "_to_worker", None), getattr(self, "_from_worker", None),
                   getattr(self, "_lifeline", None), getattr(self, "_status", None)):
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


def _wait(proc: Any, timeout: float) -> int:
    """``proc.wait(timeout)``, woken by the exit itself where Linux gives a pidfd: Popen's own
    wait polls with sleeps of up to 50 ms, which the end of every grading paid (0.12 s in
    all: the worker's exit and its reaper's, measured)."""
    if isinstance(proc, subprocess.Popen) and proc.returncode is None and hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:  # reaped already, or no pidfd in this kernel
            pass
        else:
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
            finally:
                os.close(fd)
    return proc.wait(timeout)


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
