"""The worker's confinement on this machine, layer by layer, in every setting it can simulate:
an allow-list of paths, no network, no signals outside, nothing outliving its request or its
grader, and a refusal below "contained". Each test attacks from inside a real worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from course.grading import confine, sandbox
from course.grading.cgroups import WorkerCgroup
from course.paths import PACKAGE_DIR, repo_root

LANDLOCK = confine.landlock_abi() >= 1
SETTINGS = {"full": "", "no-unshare": "unshare", "no-cgroups": "cgroups",
            "neither": "unshare,cgroups"}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux layers")

PROBES = r'''
import os, pathlib, socket, signal
RESULTS = {}

def _try(name, fn):
    try:
        fn()
        RESULTS[name] = "allowed"
    except BaseException as exc:  # noqa: BLE001
        RESULTS[name] = "denied: " + type(exc).__name__

def _write(path):
    with open(path, "a") as fh:
        fh.write("")

_try("read_hidden_tests", lambda: open(HIDDEN).read(10))
_try("read_other_copy", lambda: open(OTHER_COPY).read(10))
_try("list_tmp", lambda: os.listdir(TMP_PARENT))
_try("write_package", lambda: _write(PACKAGE_FILE))
_try("write_site_packages", lambda: _write(SITE_FILE))
_try("read_package", lambda: open(PACKAGE_FILE).read(10))
_try("write_scratch", lambda: _write("scratch-file.txt"))
_try("tcp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
_try("udp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
_try("unix_socket", lambda: socket.socket(socket.AF_UNIX))
_try("signal_grader", lambda: os.kill(GRADER_PID, 0))
_try("read_grader_environ", lambda: open(f"/proc/{GRADER_PID}/environ", "rb").read(10))
_try("run_shell", lambda: (_ for _ in ()).throw(OSError()) if os.system("true") else None)

def results():
    return RESULTS
'''

DAEMON = r'''
import os

def spawn_daemon():
    """A grandchild in its own session, as a daemon would start."""
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid == 0:
            import time
            while True:
                time.sleep(0.1)
        with open("daemon.pid", "w") as fh:
            fh.write(str(pid))
        os._exit(0)
    os.wait()
    import time
    for _ in range(100):
        if os.path.exists("daemon.pid") and open("daemon.pid").read():
            return int(open("daemon.pid").read())
        time.sleep(0.05)
'''


@pytest.fixture(scope="module")
def decoys(tmp_path_factory) -> dict[str, Path]:
    """A second copy of a hidden test file somewhere else on disk (a backup clone)."""
    backup = tmp_path_factory.mktemp("backup-clone")
    copy = backup / "autograder" / "test_01_kmeans.py"
    copy.parent.mkdir()
    copy.write_text((repo_root() / "autograder" / "test_01_kmeans.py").read_text())
    return {"other_copy": copy}


def _worker(setting: str, monkeypatch, min_level: str = "contained") -> sandbox.WorkerProcess:
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", SETTINGS.get(setting, setting))
    worker = sandbox.WorkerProcess(min_level=min_level)
    worker.start()
    return worker


def _run(worker: sandbox.WorkerProcess, source: str) -> None:
    reply = worker.request({"op": "run_cells", "cells": [{"id": "probe", "source": source}]}, 120)
    assert all(r["ok"] for r in reply["value"]), reply


def _call(worker: sandbox.WorkerProcess, name: str):
    reply = worker.request({"op": "call", "target": name, "args": (), "kwargs": {}}, 120)
    assert reply["ok"], reply
    return reply["value"]


def _site_file() -> Path:
    import torch

    return Path(torch.__file__)


@pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock")
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_worker_sees_only_its_allow_list(setting, decoys, monkeypatch):
    worker = _worker(setting, monkeypatch)
    try:
        consts = {"HIDDEN": str(repo_root() / "autograder" / "test_01_kmeans.py"),
                  "OTHER_COPY": str(decoys["other_copy"]),
                  "TMP_PARENT": str(decoys["other_copy"].parents[2]),
                  "PACKAGE_FILE": str(PACKAGE_DIR / "paths.py"),
                  "SITE_FILE": str(_site_file()), "GRADER_PID": os.getpid()}
        _run(worker, "".join(f"{k} = {v!r}\n" for k, v in consts.items()) + PROBES)
        got = _call(worker, "results")
        assert worker.isolation["level"] in ("contained", "isolated"), worker.isolation
    finally:
        worker.close()
    allowed = {k for k, v in got.items() if v == "allowed"}
    assert allowed == {"read_package", "write_scratch"}, got


@pytest.mark.parametrize("setting", ["full", "neither"])
def test_nothing_a_request_starts_outlives_it(setting, monkeypatch):
    worker = _worker(setting, monkeypatch)
    try:
        from course.grading.reaper import descendants

        _run(worker, DAEMON)
        chain = len(descendants(worker.proc.pid))  # the worker (and `unshare` above it)
        inner = _call(worker, "spawn_daemon")
        assert inner, "the daemon started"
        # the daemon (in its own session) was killed by the reaper when the call returned
        left = descendants(worker.proc.pid)
        assert len(left) == chain, f"still running after the call: {left} (daemon {inner})"
        assert _call(worker, "spawn_daemon")  # the worker itself still answers
    finally:
        worker.close()


GRADER = textwrap.dedent('''
    import json, os, signal, sys
    from course.grading import sandbox
    w = sandbox.WorkerProcess(min_level="weak")
    w.start()
    reply = w.request({"op": "run_cells", "cells": [{"id": "x", "source":
        "import os\\nif os.fork() == 0:\\n    os.setsid()\\n    import time\\n"
        "    while True: time.sleep(0.1)\\n"}]}, 120)
    print(json.dumps({"worker": w.worker_pid, "reaper": w.proc.pid, "scratch": str(w.scratch),
                      "cgroups": [str(d) for d in w.cgroup.dirs]}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the grader dies with its worker paused
''')


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("setting", ["full", "neither"])
def test_a_paused_worker_dies_with_its_grader(setting, monkeypatch):
    env = {**os.environ, "COURSE_SANDBOX_DISABLE": SETTINGS[setting]}
    proc = subprocess.run([sys.executable, "-c", GRADER], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if setting == "full" and WorkerCgroup.available():
        assert info["cgroups"], "the worker had cgroups (and was frozen in them)"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = [p for p in (info["worker"], info["reaper"]) if _alive(p)]
        groups = [d for d in info["cgroups"] if Path(d).exists()]
        if not left and not groups:
            break
        time.sleep(0.2)
    assert not left, f"still running after the grader died: {left}"
    assert not groups, f"cgroups left behind: {groups}"
    assert not Path(info["scratch"]).exists(), "its scratch folder was left behind"


def test_below_contained_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", "unshare,landlock")
    with pytest.raises(sandbox.IsolationTooWeak, match="allow-list of paths"):
        sandbox.WorkerProcess().start()
    report = sandbox.probe_isolation()  # what --allow-weak-isolation grades with
    assert report["level"] == "weak" and report["missing"]


def test_course_grade_refuses_weak_isolation_in_one_line(tmp_path):
    from course.submissions import release_path

    env = {**os.environ, "COURSE_SANDBOX_DISABLE": "unshare,landlock"}
    proc = subprocess.run([sys.executable, "-m", "course", "grade",
                           str(release_path("01_kmeans")), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to run student code" in lines[0], proc.stderr
    assert "--allow-weak-isolation" in lines[0]
    assert not list((tmp_path / "out").rglob("results.json")) if (tmp_path / "out").exists() \
        else True


def _report(**applied) -> dict:
    base = {"landlock": 7, "landlock_signals": True, "seccomp": True}
    return sandbox.assess((), False, {**base, **applied})


def test_contained_needs_files_network_and_signals():
    assert _report()["level"] == "contained"
    assert _report(landlock=0)["level"] == "weak"
    assert _report(seccomp=False)["level"] == "weak"
    assert _report(landlock_signals=False)["level"] == "weak"
    assert _report(landlock_signals=False, uid=61000)["level"] == "contained"
    full = sandbox.assess(("unshare", "--pid", "--net", "--mount"), True,
                          {"landlock": 7, "lockdown": True})
    assert full["level"] == "isolated"


def test_unknown_layer_names_are_refused(monkeypatch):
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", "unshare,landlok")
    with pytest.raises(ValueError, match="landlok"):
        sandbox.disabled_layers()


def test_seccomp_program_denies_sockets_and_foreign_arches():
    prog = confine.seccomp_filter_program("x86_64")
    assert len(prog) > 10 and all(len(i) == 8 for i in prog)
    with pytest.raises(OSError):
        confine.seccomp_filter_program("sparc")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change uid")
def test_an_unprivileged_uid_cannot_write_the_graders_files(tmp_path):
    target = tmp_path / "grader-file"
    target.write_text("trusted")
    os.chmod(tmp_path, 0o755)
    pid = os.fork()
    if pid == 0:
        try:
            confine.become(61999)
            ok = os.getuid() == 61999
            try:
                target.write_text("tampered")
                ok = False
            except PermissionError:
                pass
        except BaseException:  # noqa: BLE001
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert target.read_text() == "trusted"


def test_macos_profile_is_deny_by_default_with_an_allow_list(monkeypatch, tmp_path):
    """The Seatbelt profile (not run here: no Mac) denies by default, lets the worker read only
    its allow-list and write only its scratch folder, and denies the network."""
    from course.grading import macos

    scratch = tmp_path / 'odd "name"'
    scratch.mkdir()
    text = macos.profile([str(PACKAGE_DIR)], [str(scratch)])
    lines = text.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert lines[-1] == "(deny network*)"
    write = next(line for line in lines if line.startswith("(allow file-write*"))
    assert str(repo_root()) + '"' not in write and 'odd \\"name\\"' in write
    read = next(line for line in lines if line.startswith("(allow file-read* "))
    assert f'(subpath "{PACKAGE_DIR}")' in read
    assert f'"{repo_root()}"' not in read  # the repository itself is not readable
    assert text.count("(") == text.count(")")
    assert macos.prefix([], []) == ()  # only on macOS
    monkeypatch.setattr(macos.sys, "platform", "darwin")
    monkeypatch.setattr(macos.shutil, "which", lambda name: "/usr/bin/sandbox-exec")
    prefix = macos.prefix([str(PACKAGE_DIR)], [str(scratch)])
    assert prefix[:2] == ("/usr/bin/sandbox-exec", "-p")
    assert sandbox.assess(prefix, False, {})["level"] == "contained"


SIGNALS = r'''
import os, signal

def signals(grader):
    out = {}
    for name, pid in (("self", os.getpid()), ("own_group", 0), ("grader", grader),
                      ("init", 1)):
        try:
            os.kill(pid, 0)
            out[name] = "allowed"
        except OSError as exc:
            out[name] = "denied: " + type(exc).__name__
    try:
        signal.raise_signal(signal.SIGUSR1)  # glibc raise(): tgkill on itself
    except BaseException as exc:  # noqa: BLE001
        out["raise"] = "failed: " + type(exc).__name__
    return out

signal.signal(signal.SIGUSR1, lambda *a: None)
'''


@pytest.mark.parametrize("setting", ["unshare,landlock"])
def test_seccomp_confines_signals_where_landlock_cannot(setting, monkeypatch):
    """Kernels before 6.12 (Landlock ABI < 6: Ubuntu 24.04's 6.8, Debian 12's 6.1) cannot scope
    signals with Landlock; the seccomp filter then lets the worker signal only itself and its
    own process group."""
    worker = _worker(setting, monkeypatch, min_level="weak")
    try:
        assert "signals only to its own process group (seccomp)" in worker.isolation["layers"]
        _run(worker, SIGNALS)
        reply = worker.request({"op": "call", "target": "signals", "args": (os.getpid(),),
                                "kwargs": {}}, 60)
        got = reply["value"]
    finally:
        worker.close()
    assert got == {"self": "allowed", "own_group": "allowed",
                   "grader": "denied: PermissionError", "init": "denied: PermissionError"}, got


FILL = r'''
import os, time

def fill(hide):
    """Write 10 MiB files (each under the file-size cap) until stopped; with ``hide`` each
    is deleted while kept open, so no walk of the folder can see it."""
    keep = []
    for n in range(40):
        fh = open(f"fill-{n}.bin", "wb")
        if hide:
            os.remove(f"fill-{n}.bin")
            keep.append(fh)
        for _ in range(10):
            fh.write(b"x" * 2**20)
            fh.flush()
        if not hide:
            fh.close()
        time.sleep(0.05)
    return "wrote 400 MiB"
'''


@pytest.mark.parametrize("hide", [False, True], ids=["files", "deleted-but-open"])
def test_scratch_space_is_capped_without_a_tmpfs(hide, monkeypatch):
    """Without unshare there is no tmpfs to cap the scratch folder: the reaper stops a worker
    that holds more than the cap, counting files deleted while kept open."""
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", "unshare,cgroups")
    worker = sandbox.WorkerProcess(limits=sandbox.Limits(file_mb=16))
    worker.start()
    try:
        _run(worker, FILL)
        with pytest.raises(sandbox.WorkerCrashed, match="more than the 16 MiB allowed"):
            worker.request({"op": "call", "target": "fill", "args": (hide,), "kwargs": {}}, 120)
    finally:
        worker.close()


def test_readable_by_others_checks_the_path_as_spelled_too():
    """Python imports through the path it was started with: a world-readable venv reached
    through a private folder's symlink is not readable by the worker's uid."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp())  # pytest's own tmp folders are private (0700)
    try:
        _spelled_and_resolved(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _spelled_and_resolved(tmp_path: Path) -> None:
    public = tmp_path / "public"
    (public / "venv").mkdir(parents=True)
    private = tmp_path / "private"
    private.mkdir()
    (private / "venv").symlink_to(public / "venv")
    os.chmod(tmp_path, 0o755)
    os.chmod(public, 0o755)
    os.chmod(public / "venv", 0o755)
    os.chmod(private, 0o700)
    assert confine.readable_by_others(public / "venv")
    assert not confine.readable_by_others(private / "venv")
