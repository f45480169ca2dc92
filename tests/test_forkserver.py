"""Graders forked from a server that imported their modules (course.grading.forkserver): each
is the process ``python -P -m pytest ARGS`` would have been (command line, working folder,
environment, output, return code), it is killed past its time and when the server stops, and
a class run falls back to plain processes when the server is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from course.grading import forkserver, runner

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="graders fork on Linux only")

PROBE = '''
import json, os, sys, time
PRELOADED = "colorsys" in sys.modules  # before this file's own import of it
import colorsys  # noqa: E402,F401


def test_probe():
    seen = {"preloaded": PRELOADED, "pid": os.getpid(), "ppid": os.getppid(),
            "cwd": os.getcwd(), "value": os.environ.get("PROBE_VALUE"),
            "leaked": os.environ.get("SERVER_ONLY"),
            "cmdline": open("/proc/self/cmdline", "rb").read().decode(),
            "stdin": os.read(0, 100).decode(), "argv": sys.argv}
    with open(os.environ["PROBE_OUT"], "w") as fh:
        json.dump(seen, fh)
    if os.environ.get("PROBE_SLEEP"):
        time.sleep(120)
    assert os.environ.get("PROBE_FAIL") != "1", "asked to fail"
'''


@pytest.fixture
def probe(tmp_path: Path) -> dict:
    tests = tmp_path / "hidden" / "test_probe.py"
    tests.parent.mkdir()
    tests.write_text(PROBE)
    work = tmp_path / "work"
    work.mkdir()
    argv = [str(tests), "-q", "-p", "no:cacheprovider", "-o", "addopts=",
            "--rootdir", str(tests.parent)]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return {"tests": tests, "work": work, "argv": argv, "env": env, "tmp": tmp_path}


def _graders_of(tests: Path) -> list[int]:
    """Processes whose command line names ``tests`` (the forked graders show pytest's)."""
    found = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(tests).encode() in cmd and b"course.grading.forkserver" not in cmd:
            found.append(int(pid))
    return found


def test_top_level_imports_are_the_absolute_ones(tmp_path: Path) -> None:
    tests = tmp_path / "test_x.py"
    tests.write_text("from __future__ import annotations\nimport a.b, c\nfrom d.e import f\n"
                     "from . import g\nfrom .h import i\ndef j():\n    import k\n"
                     "if True:\n    import m\n"
                     "LATER = ImportedLater('n.o', 'p')\nOTHER = dict('q')\n")
    # and what a top-level ImportedLater imports in the background: the server imports it
    assert forkserver.top_level_imports(tests) == ["a.b", "c", "d.e", "n.o", "p"]


def test_a_forked_grader_is_the_process_it_stands_for(probe: dict) -> None:
    out = probe["tmp"] / "probe.json"
    env = {**probe["env"], "PROBE_OUT": str(out), "PROBE_VALUE": "asked"}
    server = forkserver.ForkServer(probe["tests"], {**env, "SERVER_ONLY": "1"}, probe["tmp"])
    try:
        log = probe["tmp"] / "grader.txt"
        code = server.run(probe["argv"], env, probe["work"], log, timeout=120)
        seen = json.loads(out.read_text())
        assert code == 0, log.read_text()
        assert seen["preloaded"]  # the server imported what the tests import
        assert seen["ppid"] == server.proc.pid
        assert seen["cwd"] == str(probe["work"])
        assert (seen["value"], seen["leaked"]) == ("asked", None)  # the request's environment
        assert seen["stdin"] == ""  # not the server's request channel
        shown = [a for a in seen["cmdline"].split("\0") if a]
        assert shown == [sys.executable, "-P", "-m", "pytest", *probe["argv"]]
        assert "1 passed" in log.read_text()  # its output went to the file it was given

        env["PROBE_FAIL"] = "1"
        assert server.run(probe["argv"], env, probe["work"], log, timeout=120) == 1
        assert "asked to fail" in log.read_text() or "1 failed" in log.read_text()
    finally:
        server.close()
    # what the test tells apart: a grader started as a process imports on its own
    plain = subprocess.run([sys.executable, "-P", "-m", "pytest", *probe["argv"]],
                           env={**env, "PROBE_FAIL": "0"}, cwd=probe["work"],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stdout[-2000:]
    assert not json.loads(out.read_text())["preloaded"]


def test_a_grader_past_its_time_is_killed(probe: dict) -> None:
    env = {**probe["env"], "PROBE_OUT": str(probe["tmp"] / "probe.json"), "PROBE_SLEEP": "1"}
    server = forkserver.ForkServer(probe["tests"], env, probe["tmp"])
    try:
        t0 = time.monotonic()
        code = server.run(probe["argv"], env, probe["work"], probe["tmp"] / "log", timeout=4)
        assert code is None  # as subprocess.run's TimeoutExpired: no status
        assert time.monotonic() - t0 < 60
        assert _graders_of(probe["tests"]) == []
        # the server goes on forking graders after one was killed
        env.pop("PROBE_SLEEP")
        assert server.run(probe["argv"], env, probe["work"], probe["tmp"] / "log", 120) == 0
    finally:
        server.close()


def test_stopping_the_server_ends_its_graders(probe: dict) -> None:
    env = {**probe["env"], "PROBE_OUT": str(probe["tmp"] / "probe.json"), "PROBE_SLEEP": "1"}
    server = forkserver.ForkServer(probe["tests"], env, probe["tmp"])
    codes: list[int | None] = []
    run = threading.Thread(target=lambda: codes.append(server.run(
        probe["argv"], env, probe["work"], probe["tmp"] / "log", timeout=300)))
    run.start()
    deadline = time.monotonic() + 120
    while not (probe["tmp"] / "probe.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _graders_of(probe["tests"]), "the grader did not start"
    server.proc.kill()  # the server dies (the class run's process too, or an OOM kill)
    run.join(60)
    assert codes == [-signal.SIGKILL]  # it died with the server: "killed", not a verdict
    deadline = time.monotonic() + 10
    while _graders_of(probe["tests"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _graders_of(probe["tests"]) == []  # it died with its server
    server.close()
    with pytest.raises(forkserver.ServerGone):
        server.run(probe["argv"], env, probe["work"], probe["tmp"] / "log", timeout=30)


def test_a_class_run_falls_back_to_processes_when_the_server_is_gone(tmp_path, monkeypatch):
    """run_hidden_tests starts the grader as a process when the pool's server stopped, and
    the pool stops using that server (no grading is lost to it)."""
    started: list[list[str]] = []

    def fake_run(cmd, **kwargs):
        started.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "plain grader ran", "")

    class GoneServer:
        def run(self, *args, **kwargs):
            raise forkserver.ServerGone("the grader server stopped (exit status -9)")

    pool = forkserver.GraderPool()
    discarded = []
    monkeypatch.setattr(pool, "server", lambda *args: GoneServer())
    monkeypatch.setattr(pool, "discard", discarded.append)
    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    job = runner.Job("s", tmp_path / "s.ipynb", "01_kmeans")
    code, log = runner.run_hidden_tests(job, runner.Settings(threads=1), tmp_path / "r.json",
                                        pool=pool)
    assert (code, log) == (0, "plain grader ran")
    assert len(started) == 1 and started[0][1:4] == ["-P", "-m", "course.grading.start"]
    assert len(discarded) == 1 and discarded[0][0].endswith("test_01_kmeans.py")


def test_a_class_run_forks_its_graders_and_one_submission_starts_its_own(tmp_path, monkeypatch):
    """grade_jobs hands every submission of a class one pool (closed at the end); a single
    submission, or prestart=False, gets none (its grader imports beside its worker)."""
    seen: list = []
    monkeypatch.setattr(runner, "grade_job", lambda job, out, settings, pool=None: seen.append(
        pool) or {"tests": []})
    closed: list = []
    monkeypatch.setattr(forkserver.GraderPool, "close", lambda self: closed.append(self))
    jobs = [runner.Job(f"s{i}", tmp_path / f"s{i}.ipynb", "01_kmeans") for i in range(3)]
    runner.grade_jobs(jobs, tmp_path, runner.Settings(), jobs_in_parallel=2, progress=False)
    assert len(seen) == 3 and isinstance(seen[0], forkserver.GraderPool)
    assert seen[0] is seen[1] is seen[2] and closed == [seen[0]]
    seen.clear()
    runner.grade_jobs(jobs[:1], tmp_path, runner.Settings(), progress=False)
    runner.grade_jobs(jobs, tmp_path, runner.Settings(prestart=False), progress=False)
    assert seen == [None] * 4


@pytest.mark.parametrize("flags, prestart", [((), True), (("--no-prestart",), False)])
def test_course_grade_no_prestart_starts_each_grader_itself(flags, prestart, tmp_path,
                                                             monkeypatch):
    from course.cli import build_parser
    from course.grading import cli as grade_cli

    seen = []
    monkeypatch.setattr(grade_cli, "check_isolation", lambda *args: None)
    monkeypatch.setattr(runner, "grade_jobs", lambda jobs, out, settings, **kw: seen.append(
        settings) or [])
    nbs = []
    for name in ("ada", "bo"):
        nbs.append(tmp_path / name / "01_kmeans.ipynb")
        nbs[-1].parent.mkdir()
        nbs[-1].write_text("{}")
    args = build_parser().parse_args(["grade", *map(str, nbs), "--assignment", "01_kmeans",
                                      "--out", str(tmp_path / "grades"), *flags])
    assert args.func(args) == 0
    assert [s.prestart for s in seen] == [prestart]
