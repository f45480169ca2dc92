"""Workers forked from a template (course.grading.zygote): each is the process the grader
would have started (command line, descriptors, environment, folder, session, limits,
confinement), the template holds nothing of the grader's, a hostile request cannot reach it
through the worker, and a grader without a template starts its worker as before."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import hostile_fixtures as hf
import pytest

from course.grading import forkserver, sandbox, zygote

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="templates fork on Linux only")

SETTINGS = {"full": "", "no-unshare": "unshare", "no-cgroups": "cgroups",
            "neither": "unshare,cgroups"}

#: What a worker sees of itself, with its scratch folder spelled SCRATCH.
LOOK = r'''
import json, os, stat, sys, tempfile, threading
import torch

def _kind(fd):
    try:
        mode = os.fstat(fd).st_mode
    except OSError:  # the listing's own descriptor
        return None
    return "pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else \
        "char" if stat.S_ISCHR(mode) else "file" if stat.S_ISREG(mode) else "other"

def look():
    here = os.getcwd()
    fix = lambda text: text.replace(here, "SCRATCH") if isinstance(text, str) else text
    fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
    with open("/proc/self/environ", "rb") as fh:
        shown = dict(v.split("=", 1) for v in fh.read().decode().split("\0") if "=" in v)
    with open("/proc/self/cmdline", "rb") as fh:
        cmdline = fh.read().decode().split("\0")[:-1]
    with open("/proc/self/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    return {
        "fds": {str(fd): _kind(fd) for fd in fds if _kind(fd)},
        "environ": {k: fix(v) for k, v in os.environ.items()},
        "shown_keys": sorted(shown),
        "cmdline_head": [fix(a) for a in cmdline[:4]],
        "channels": cmdline[4:6],
        "argv": [fix(a) for a in sys.argv][:1],
        "tempdir": fix(tempfile.gettempdir()),
        "session_leader": os.getsid(0) == os.getpid() or os.getpid() == 1,
        "threads_python": threading.active_count(),
        "torch_threads": torch.get_num_threads(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "seccomp": status["Seccomp"].strip(),
        "uid": os.getuid(),
        "cpu_limit": list(__import__("resource").getrlimit(__import__("resource").RLIMIT_CPU)),
    }
'''


@contextlib.contextmanager
def broker():
    """What a grader server gives its graders: a broker channel to worker templates (here
    served by a thread of the test process)."""
    saved = zygote.BROKER
    ours, zygote.BROKER = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    templates: dict[str, socket.socket] = {}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if select.select([ours], [], [], 0.1)[0]:
                forkserver._broker(ours, templates)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield templates
    finally:
        stop.set()
        thread.join()
        zygote.BROKER.close()
        zygote.BROKER = saved
        ours.close()
        for door in templates.values():
            door.close()


def _template_pids() -> list[int]:
    return list(hf.processes_with("course.grading.zygote import main"))


def _look(worker: sandbox.WorkerProcess) -> dict:
    reply = worker.request({"op": "run_cells", "cells": [{"id": "look", "source": LOOK}]}, 120)
    assert all(r["ok"] for r in reply["value"]), reply
    reply = worker.request({"op": "call", "target": "look", "args": (), "kwargs": {}}, 120)
    assert reply["ok"], reply
    return reply["value"]


@pytest.fixture(scope="module")
def templates():
    with broker() as running:
        yield running


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_forked_worker_is_the_process_it_stands_for(setting, templates, monkeypatch):
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", SETTINGS[setting])
    seen = {}
    for how in ("process", "template"):
        saved = zygote.BROKER
        if how == "process":
            zygote.BROKER = None
        try:
            worker = sandbox.WorkerProcess(limits=sandbox.Limits(threads=1))
            worker.start()
        finally:
            zygote.BROKER = saved
        try:
            assert isinstance(worker.proc, zygote.Spawned) == (how == "template")
            seen[how] = {**_look(worker), "isolation": worker.isolation}
        finally:
            worker.close()
    process, template = seen["process"], seen["template"]
    assert template["isolation"] == process["isolation"]
    assert sorted(template["fds"].values()) == sorted(process["fds"].values())
    for seen_ in (template, process):  # beyond 0-2: exactly the two its command line names
        assert sorted(set(seen_["fds"]) - {"0", "1", "2"}) == sorted(seen_["channels"])
    assert template["environ"] == process["environ"]
    assert template["shown_keys"] == [k for k in process["shown_keys"]
                                      if k not in zygote.PER_WORKER]
    for key in ("cmdline_head", "argv", "tempdir", "session_leader", "torch_threads",
                "no_new_privs", "seccomp", "uid", "cpu_limit", "threads_python"):
        assert template[key] == process[key], key


def test_the_template_holds_nothing_of_the_graders(templates, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_GRADER_ONLY_MARK", "grader-secret")
    secret = tmp_path / "hidden.txt"
    secret.write_text("x")
    with open(secret) as held:  # a file the grader has open
        worker = sandbox.WorkerProcess()
        worker.start()
        try:
            assert isinstance(worker.proc, zygote.Spawned)
            pids = _template_pids()
            assert pids
            for pid in pids:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                assert b"grader-secret" not in environ
                assert b"PYTEST" not in environ
                kinds = set()
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    assert str(secret) not in target and "autograder" not in target, target
                    if target.startswith("/tmp/#") and target.endswith(" (deleted)"):
                        target = "libffi"  # ctypes' closures: a file of trampolines it made
                    kinds.add(target.split(":")[0])
                # /dev/null, its door, its wake-up pipe (and connections): nothing else
                assert kinds <= {"/dev/null", "socket", "pipe", "libffi"}, kinds
                assert len(os.listdir(f"/proc/{pid}/task")) <= 2  # torch's own thread
        finally:
            worker.close()
    assert held.closed


def test_a_worker_holds_no_descriptor_of_the_template(templates):
    worker = sandbox.WorkerProcess()
    worker.start()
    try:
        assert isinstance(worker.proc, zygote.Spawned)
        got = _look(worker)
        assert "socket" not in got["fds"].values(), got["fds"]
        reaper = worker.proc.pid
        for fd in os.listdir(f"/proc/{reaper}/fd"):
            try:  # the reaper opens and closes files of /proc as it watches: one may be gone
                target = os.readlink(f"/proc/{reaper}/fd/{fd}")
            except FileNotFoundError:
                continue
            assert not target.startswith("socket:"), "the reaper holds a socket"
    finally:
        worker.close()


def test_a_forked_reaper_reports_like_a_process(templates):
    worker = sandbox.WorkerProcess()
    worker.start()
    proc = worker.proc
    assert isinstance(proc, zygote.Spawned)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    assert proc.poll() is None
    worker.kill()  # the worker killed (thawed first): the reaper ends like it
    assert proc.poll() == -signal.SIGKILL
    worker.close()


def test_without_a_template_the_worker_starts_as_a_process(templates, monkeypatch):
    killed = _template_pids()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20  # ended, not only ending (its command line goes first)
    while any(zygote._running(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = sandbox.WorkerProcess()
    worker.start()  # the broker starts another template
    try:
        assert isinstance(worker.proc, zygote.Spawned)
        assert worker.request({"op": "run_cells", "cells": [{"id": "x", "source": "y = 1"}]},
                              60)["ok"]
    finally:
        worker.close()

    def gone(*args, **kwargs):
        raise zygote.Unavailable("the template stopped")

    monkeypatch.setattr(zygote, "spawn", gone)
    worker = sandbox.WorkerProcess()
    worker.start()
    try:
        assert isinstance(worker.proc, subprocess.Popen)
    finally:
        worker.close()


@pytest.mark.parametrize("when", ["before the request", "any time"])
def test_a_template_that_ends_before_it_answers_is_asked_again(when, templates, monkeypatch):
    """A template that ends with a grader's request queued (killed as it arrived) closes the
    grader's connection unanswered, or before the grader could send its request (a broken
    pipe): either way the grader asks once more, and the server starts another."""
    real, dropped = forkserver._broker, []
    if when == "before the request":  # the grader sends it only once the first ask was dropped
        send = socket.send_fds

        def send_late(sock, *args, **kwargs):
            sent = send(sock, *args, **kwargs)
            deadline = time.monotonic() + 10
            while sock is zygote.BROKER and not dropped and time.monotonic() < deadline:
                time.sleep(0.01)
            return sent

        monkeypatch.setattr(socket, "send_fds", send_late)

    def drop_the_first(broker, running):
        if dropped:
            return real(broker, running)
        data, fds, _, _ = socket.recv_fds(broker, 1 << 20, 1)
        dropped.append(data)
        for fd in fds:  # what the ending template's queue does with it
            os.close(fd)

    monkeypatch.setattr(forkserver, "_broker", drop_the_first)
    worker = sandbox.WorkerProcess()
    worker.start()
    try:
        assert dropped, "the broker was not asked"
        assert isinstance(worker.proc, zygote.Spawned), "the grader did not ask again"
        assert worker.request({"op": "run_cells", "cells": [{"id": "x", "source": "y = 1"}]},
                              60)["ok"]
    finally:
        worker.close()


def test_a_template_is_used_only_where_it_can_be(monkeypatch):
    monkeypatch.setattr(zygote, "BROKER", object())
    assert zygote.usable("cpu", ())
    assert not zygote.usable("cuda", ())  # CUDA must not be initialised before a fork
    assert not zygote.usable("mps", ())
    assert not zygote.usable("cpu", ("unshare", "--user", "--map-root-user", "--pid"))
    monkeypatch.setattr(zygote, "BROKER", None)
    assert not zygote.usable("cpu", ())


def test_a_class_run_forks_its_workers_from_a_template(tmp_path):
    """The whole chain: graders forked from a server ask it for a template; the workers they
    start are its children's children (seen in the process tree while they run)."""
    code = f'''
import json, os, sys, threading, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from pathlib import Path
from course.grading import forkserver, runner
from course.submissions import reference_submission, write_notebook
tmp = Path({str(tmp_path)!r})
nb = write_notebook(reference_submission("01_kmeans"), tmp / "in" / "01_kmeans.ipynb")
with forkserver.GraderPool() as pool:
    s = runner.Settings(force=True, threads=1)
    rc, _ = runner.run_hidden_tests(runner.Job("s", nb, "01_kmeans"), s, tmp / "r.json",
                                    pool=pool)
    print(json.dumps({{"rc": rc}}))
'''
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in _template_pids():
                try:
                    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                except OSError:
                    continue
                for kid in kids:
                    with contextlib.suppress(OSError):
                        seen.append(Path(f"/proc/{kid}/cmdline").read_bytes().decode())
            done.wait(0.2)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600)
    finally:
        done.set()
        thread.join()
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["rc"] == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(r["passed"] for r in report["records"]), report
    assert any("course.grading.reaper import main" in cmd for cmd in seen), \
        "no reaper was forked from a template"


def test_a_template_worker_that_fails_to_start_is_replaced_by_a_process(templates,
                                                                         monkeypatch):
    spawn = zygote.spawn

    def broken(env, preload, request, fds):
        request["boot"]["landlock"] = {"read": 5}  # the forked worker fails before its hello
        return spawn(env, preload, request, fds)

    monkeypatch.setattr(zygote, "spawn", broken)
    worker = sandbox.WorkerProcess()
    worker.start()
    try:
        assert isinstance(worker.proc, subprocess.Popen)
        assert worker.isolation["level"] in ("contained", "isolated")
        assert worker.request({"op": "run_cells", "cells": [{"id": "x", "source": "y = 1"}]},
                              60)["ok"]
    finally:
        worker.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root grader hands out a uid")
def test_a_forked_worker_takes_its_own_uid(templates, monkeypatch, tmp_path):
    """Where the grader is root and the environment world-readable (Docker, a server), the
    worker switches to a uid of its own after the fork, as a started one does after exec."""
    uid = 61000 + os.getpid() % 4000
    monkeypatch.setattr(sandbox, "worker_uid", lambda scratch_parent: (uid, ""))
    private = tmp_path / "grader-only.txt"
    private.write_text("x")
    private.chmod(0o600)
    worker = sandbox.WorkerProcess()
    worker.start()
    try:
        assert isinstance(worker.proc, zygote.Spawned)
        probe = (f"import os\ndef probe():\n    try:\n        open({str(private)!r}, 'a')\n"
                 f"        wrote = True\n    except OSError:\n        wrote = False\n"
                 f"    return [os.getuid(), os.geteuid(), os.getgid(), wrote]\n")
        assert worker.request({"op": "run_cells", "cells": [{"id": "p", "source": probe}]},
                              60)["ok"]
        got = worker.request({"op": "call", "target": "probe", "args": (), "kwargs": {}}, 60)
        assert got["value"][:3] == [uid, uid, uid] and got["value"][3] is False, got
        assert worker.isolation["level"] in ("contained", "isolated")
    finally:
        worker.close()


def test_a_template_ends_with_its_server():
    before = set(_template_pids())
    with broker():
        worker = sandbox.WorkerProcess()
        worker.start()
        worker.close()
        mine = set(_template_pids()) - before
        assert mine, "a template was started"
    deadline = time.monotonic() + 20  # the server's end of its door is closed: it leaves
    while any(zygote._running(pid) for pid in mine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(zygote._running(pid) for pid in mine)
