"""A class grading run killed half way loses nothing already graded; running it again grades
only what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course.submissions import release_path

ASSIGNMENT = "01_kmeans"
STUDENTS = [f"s{i}" for i in range(6)]


def grade_class(submitted: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "course", "grade", "--class", ASSIGNMENT, "--submitted",
         str(submitted), "--out", str(out), "--jobs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.extended
def test_killed_run_keeps_finished_results_and_rerun_completes(tmp_path):
    submitted = tmp_path / "submitted"
    for student in STUDENTS:  # untouched releases: quick to grade, all score 0
        nb = submitted / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        nb.parent.mkdir(parents=True)
        nb.write_bytes(release_path(ASSIGNMENT).read_bytes())
    out = tmp_path / "grades"
    proc = grade_class(submitted, out)
    deadline = time.monotonic() + 300
    while not list(out.glob("*/results.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the grader and everything it started
    proc.wait()
    done = sorted(p.parent.name for p in out.glob("*/results.json"))
    assert 1 <= len(done) < len(STUDENTS)
    for name in done:  # every result on disk is complete
        assert json.loads((out / name / "results.json").read_text())["max_score"] > 0
    assert not list(out.rglob("*.tmp"))
    stamps = {name: (out / name / "results.json").stat().st_mtime_ns for name in done}

    rerun = grade_class(submitted, out)
    text, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, text
    results = {s: json.loads((out / s / "results.json").read_text()) for s in STUDENTS}
    assert all(r["score"] == 0 and r["max_score"] > 0 for r in results.values())
    untouched = {n for n in STUDENTS
                 if stamps.get(n) == (out / n / "results.json").stat().st_mtime_ns}
    assert untouched == set(done)  # finished results were reused, the rest graded
    assert len((out / "grades.csv").read_text().splitlines()) == len(STUDENTS) + 1


@pytest.fixture(autouse=True)
def _mnist_staged():
    from course.paths import data_dir

    if not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip("MNIST is not staged: run `make data`")
