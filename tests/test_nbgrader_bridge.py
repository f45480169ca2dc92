"""nbgrader's own commands grade as `course grade` does (course/grading/nbgrader_bridge.py).

A course folder in a temporary directory (its source/ is this repository's), nbgrader called by
path with the venv inactive (nothing of it on PATH), as an instructor would."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbgrader.api import Gradebook
from nbgrader.utils import determine_grade

from course.errors import CourseError
from course.grading import nbgrader_bridge
from course.paths import repo_root
from course.submissions import build_variant, read_notebook, release_path, write_notebook

ROOT = repo_root()
A = "01_kmeans"
BIN = Path(sys.executable).parent


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`.venv/bin/nbgrader ARGS` from the repository (its nbgrader_config.py), course root
    ``root``, with a PATH that holds no venv (as from a shell where it is not activated)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH="/usr/bin:/bin", JUPYTER_NO_CONFIG="1")
    proc = subprocess.run([str(BIN / "nbgrader"), *args, f"--CourseDirectory.root={root}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return proc


def grade_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


# -- the cell outputs nbgrader reads ------------------------------------------------------------
def fake_results(nb, scores: dict[str, float]) -> dict:
    tests, cells = [], {}
    for cell in grade_cells(nb):
        gid, points = cell.metadata.nbgrader.grade_id, float(cell.metadata.nbgrader.points)
        got = scores.get(gid, points)
        tests += [
            {"name": f"{gid}: first", "score": got, "max_score": points, "output":
             "" if got == points else "wrong in 3 entries\nsecond line never shown",
             "status": "passed" if got == points else "failed", "extra_data": {"grade_id": gid}},
        ]
        cells[gid] = {"score": got, "max_score": points}
    return {"tests": tests, "extra_data": {"cells": cells}}


def test_each_grade_cell_carries_its_hidden_tests_and_score_as_nbgrader_reads_it():
    nb = nbformat.reads(json.dumps(read_notebook(release_path(A))), as_version=4)
    for cell in nb.cells:  # as if the student's visible tests had run and failed
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="x", traceback=[])]
    gids = [c.metadata.nbgrader.grade_id for c in grade_cells(nb)]
    scores = {gids[0]: 0.0, gids[1]: 1.25}
    out = nbgrader_bridge.annotate(copy.deepcopy(nb), fake_results(nb, scores))
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if cell in grade_cells(out):
            gid = meta["grade_id"]
            got, _ = determine_grade(cell)
            assert got == scores.get(gid, float(meta["points"])), gid
            text = cell.outputs[0]["text"]
            assert f"{gid}: first" in text and "Traceback" not in text
            if gid in scores:
                assert "FAILED" in text and "wrong in 3 entries" in text
                assert "second line" not in text
        else:
            assert cell.outputs == [], "only grade cells may show anything"
    # a zero is a zero, not nbgrader's "no output, full marks"
    assert determine_grade(grade_cells(out)[0])[0] == 0.0


def test_release_and_hidden_tests_that_disagree_are_refused():
    nb = nbformat.reads(json.dumps(read_notebook(release_path(A))), as_version=4)
    res = fake_results(nb, {})
    first = grade_cells(nb)[0].metadata.nbgrader.grade_id
    wrong = copy.deepcopy(res)
    wrong["extra_data"]["cells"][first]["max_score"] += 1
    with pytest.raises(CourseError, match=f"{first}.*points in the notebook"):
        nbgrader_bridge.annotate(copy.deepcopy(nb), wrong)
    lacking = copy.deepcopy(res)
    del lacking["extra_data"]["cells"][first]
    with pytest.raises(CourseError, match=f"{first}.*no hidden tests"):
        nbgrader_bridge.annotate(copy.deepcopy(nb), lacking)
    extra = copy.deepcopy(res)
    extra["extra_data"]["cells"]["test_elsewhere"] = {"score": 1.0, "max_score": 1.0}
    with pytest.raises(CourseError, match="test_elsewhere"):
        nbgrader_bridge.annotate(copy.deepcopy(nb), extra)


def test_config_puts_the_course_grader_in_place_of_execute():
    """The configured pipeline: no nbgrader Execute (no kernel), SandboxAutograde first; the
    export and the exchange land in git-ignored folders."""
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    pipeline = config.Autograde.autograde_preprocessors
    assert pipeline[0] is nbgrader_bridge.SandboxAutograde
    assert not any(isinstance(p, type) and issubclass(p, Execute) for p in pipeline)
    for path in (config.CsvExportPlugin.to, config.Exchange.root + "/x"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def course_dir(tmp_path_factory) -> Path:
    """A course folder: generated (the gradebook registers the assignment), two students."""
    root = tmp_path_factory.mktemp("nbgrader-course")
    (root / "source").symlink_to(ROOT / "source")
    nbgrader(root, "generate_assignment", A)
    submitted = root / "submitted"
    write_notebook(build_variant(A, ROOT / "demo" / "submissions" / A / "partial"),
                   submitted / "partial" / A / f"{A}.ipynb")
    write_notebook(read_notebook(release_path(A)), submitted / "untouched" / A / f"{A}.ipynb")
    return root


def test_nbgrader_autograde_scores_every_cell_as_course_grade_does(course_dir):
    """`course grade --class` (its own results folder) and `nbgrader autograde` (the
    gradebook) agree cell by cell, and nbgrader graded for itself (nothing reused)."""
    theirs = course_dir / "course-grades"
    subprocess.run([sys.executable, "-m", "course", "grade", "--class", A, "--submitted",
                    str(course_dir / "submitted"), "--out", str(theirs)],
                   check=True, capture_output=True, text=True, timeout=1800)
    proc = nbgrader(course_dir, "autograde", A)
    assert "course: grading" in proc.stdout + proc.stderr
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for student in ("partial", "untouched"):
            ref = json.loads((theirs / student / "results.json").read_text())
            ours = json.loads((course_dir / "grades" / A / student / "results.json").read_text())
            assert not ours["extra_data"].get("reused")
            sub = gb.find_submission(A, student)
            assert sub.score == pytest.approx(ref["score"]), student
            for cell, score in ref["extra_data"]["cells"].items():
                grade = gb.find_grade(cell, A, A, student)
                assert grade.auto_score == pytest.approx(score["score"]), (student, cell)
                assert grade.max_score == pytest.approx(score["max_score"]), (student, cell)
    partial = json.loads((theirs / "partial" / "results.json").read_text())
    assert 0 < partial["score"] < partial["max_score"]  # the case the issue was about


def test_autograded_notebook_and_feedback_show_the_hidden_tests_not_a_traceback(course_dir):
    if not (course_dir / "autograded" / "partial").is_dir():
        nbgrader(course_dir, "autograde", A, "--student", "partial")
    nbgrader(course_dir, "generate_feedback", A, "--student", "partial")
    html = (course_dir / "feedback" / "partial" / A / f"{A}.html").read_text()
    results = json.loads((course_dir / "grades" / A / "partial" / "results.json").read_text())
    text = re.sub(r"(?s)<(style|script)\b.*?</\1>", "", html)
    text = re.sub(r"<[^>]+>", "", text).replace("&#39;", "'").replace("&quot;", '"')
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    for t in results["tests"]:
        assert t["name"] in text, t["name"]
        if t["status"] == "failed":
            assert str(t["output"]).splitlines()[0][:60] in text, t["name"]
    assert "Traceback" not in text and "output_error" not in html
    assert f"{results['score']:g}" in text
    hidden = (ROOT / "autograder" / f"test_{A}.py").read_text()
    student = (course_dir / "submitted" / "partial" / A / f"{A}.ipynb").read_text()
    body = [ln.strip() for ln in hidden.splitlines() if len(ln.strip()) > 30
            and not ln.strip().startswith(('"', "#", "@")) and ln.strip() not in student]
    assert len(body) > 50
    assert not [ln for ln in body if ln in text]


def test_a_submission_without_verdict_gets_no_score_not_a_zero(course_dir):
    """The bridge raises (here: a device this machine lacks) and nbgrader stores no score."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    student = "nodevice"
    shutil.copytree(course_dir / "submitted" / "partial", course_dir / "submitted" / student)
    proc = nbgrader(course_dir, "autograde", A, "--student", student,
                    "--SandboxAutograde.device=cuda", check=False)
    assert proc.returncode != 0
    assert "CUDA" in proc.stdout + proc.stderr
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        grades = [g for nb in gb.find_submission(A, student).notebooks for g in nb.grades
                  if g.name.startswith("test_")]
        assert grades and all(g.auto_score is None for g in grades)


def test_failed_generation_keeps_the_committed_release(tmp_path):
    """`nbgrader generate_assignment --force` on a broken source: nbgrader deletes the release
    folder it was replacing; the course's config puts it back unchanged."""
    (tmp_path / "source" / A).mkdir(parents=True)
    nb = read_notebook(ROOT / "source" / A / f"{A}.ipynb")
    grades = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    grades[1]["metadata"]["nbgrader"]["grade_id"] = grades[0]["metadata"]["nbgrader"]["grade_id"]
    write_notebook(nb, tmp_path / "source" / A / f"{A}.ipynb")  # two cells, one grade id
    committed = tmp_path / "release" / A / f"{A}.ipynb"
    committed.parent.mkdir(parents=True)
    shutil.copy(release_path(A), committed)
    before = committed.read_bytes()
    proc = nbgrader(tmp_path, "generate_assignment", A, "--force", check=False)
    assert proc.returncode != 0, "the broken source should fail to generate"
    assert "Removing" in proc.stdout + proc.stderr  # nbgrader did delete it
    assert committed.read_bytes() == before
