"""nbgrader's own commands grade as `course grade` does (course/grading/nbgrader_bridge.py).

A course folder in a temporary directory (its source/ is this repository's), nbgrader called by
path with the venv inactive (nothing of it on PATH), as an instructor would."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch
from browser_helpers import browser
from nbgrader.api import Gradebook
from nbgrader.utils import determine_grade
from nbgrader_helpers import BIN, inactive_env, nbgrader

from course.errors import CourseError
from course.grading import nbgrader_bridge
from course.paths import repo_root
from course.submissions import build_variant, read_notebook, release_path, write_notebook

ROOT = repo_root()
A = "01_kmeans"


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


@pytest.mark.parametrize("assignment", sorted(p.name for p in (ROOT / "solutions").iterdir()
                                               if (p / f"{p.name}.ipynb").is_file()))
def test_stock_nbgrader_scores_every_visible_test_of_the_solutions_as_passed(assignment):
    """nbgrader's own scoring (``nbgrader validate``, a plain autograde) fails a test cell that
    shows an error or writes anything to stderr; the solutions' outputs (full scale) are what a
    correct notebook shows, so each of their test cells must get its points there. A text
    progress bar (tqdm writes to stderr) in a visible test once cost 03's reference 5 points."""
    nb = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    cells = grade_cells(nb)
    assert cells and all(c.outputs for c in cells), "the solutions were not executed"
    for cell in cells:
        got, points = determine_grade(cell)
        stderr = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
        assert got == points, (f"{cell.metadata.nbgrader.grade_id}: nbgrader gives {got} of "
                               f"{points}; stderr: {stderr[-300:]!r}")


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
#: The instructor's guide's commands this file runs, as the README writes them.
GUIDE = ("`.venv/bin/course release <id> --gradebook`", "`nbgrader autograde <id>`",
         "`nbgrader generate_feedback <id>`", "`nbgrader export`")


def in_clone(clone: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """A guide command in ``clone``, venv inactive. PYTHONPATH and COURSE_DATA stand in for
    the clone's own `make venv` and `make data` (its code, this repository's MNIST)."""
    env = {**inactive_env(), "PYTHONPATH": str(clone), "COURSE_DATA": str(ROOT / "data")}
    proc = subprocess.run(list(cmd), cwd=clone, env=env, capture_output=True, text=True,
                          timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory) -> Path:
    """A fresh clone of this repository, set up by the README's instructor guide: the
    assignment registered in its gradebook, two students' submissions collected."""
    guide = (ROOT / "README.md").read_text()
    missing = [cmd for cmd in GUIDE if cmd not in guide]
    assert not missing, f"the README's guide no longer says {missing}: update this test"
    root = tmp_path_factory.mktemp("fresh") / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(root)], check=True)
    (root / ".venv").symlink_to(ROOT / ".venv")
    in_clone(root, ".venv/bin/course", "release", A, "--gradebook")
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    assert [ln for ln in changed if ln and not ln.endswith(".venv")] == []  # same release
    submitted = root / "submitted"
    write_notebook(build_variant(A, ROOT / "demo" / "submissions" / A / "partial"),
                   submitted / "partial" / A / f"{A}.ipynb")
    write_notebook(read_notebook(release_path(A)), submitted / "untouched" / A / f"{A}.ipynb")
    return root


@pytest.fixture(scope="module")
def course_grades(course_dir) -> Path:
    """`course grade --class` of the course folder's students, in a folder of its own."""
    out = course_dir / "course-grades"
    in_clone(course_dir, ".venv/bin/course", "grade", "--class", A, "--out", str(out))
    return out


@pytest.mark.extended
def test_nbgrader_autograde_scores_every_cell_as_course_grade_does(course_dir, course_grades):
    """`course grade --class` (its own results folder) and `nbgrader autograde` (the
    gradebook) agree cell by cell, and nbgrader graded for itself (nothing reused)."""
    theirs = course_grades
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
    # `nbgrader export` (configured to write into git-ignored grades/) has the same totals
    nbgrader(course_dir, "export")
    with open(course_dir / "grades" / "nbgrader-export.csv", newline="") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh) if r["assignment"] == A}
    for student in ("partial", "untouched"):
        ref = json.loads((theirs / student / "results.json").read_text())
        assert float(rows[student]["score"]) == pytest.approx(ref["score"]), student
        assert float(rows[student]["max_score"]) == pytest.approx(ref["max_score"]), student


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
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    (tmp_path / "source" / A).mkdir(parents=True)
    shutil.copy(ROOT / "source" / "header.ipynb", tmp_path / "source" / "header.ipynb")
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


# -- the formgrader, in a real browser -----------------------------------------------------------
@pytest.fixture
def jupyter_server(course_dir):
    """`.venv/bin/jupyter server` in the course folder (nbgrader's formgrader is a server
    extension), venv inactive; yields its base URL and token."""
    import secrets
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    log = open(course_dir / "jupyter-server.log", "w")
    args = [str(BIN / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course_dir}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    env = {**inactive_env(), "PYTHONPATH": str(course_dir), "COURSE_DATA": str(ROOT / "data")}
    del env["JUPYTER_NO_CONFIG"]  # it would hide the venv's config that enables the formgrader
    proc = subprocess.Popen(args, cwd=course_dir, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, (course_dir / "jupyter-server.log").read_text()
                time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


@pytest.mark.extended
def test_formgrader_autograde_button_gives_the_course_grade_score(course_dir, course_grades,
                                                                   jupyter_server, tmp_path):
    """An instructor opens Manage Submissions, clicks Autograde (the flash icon) for a partial
    submission, and reads the score `course grade` gives it; Manual Grading then shows each
    grade cell's hidden tests, not a visible-test traceback."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = jupyter_server
    student = "clicked"  # the partial notebook again, never graded under this name
    shutil.copytree(course_dir / "submitted" / "partial", course_dir / "submitted" / student)
    want = json.loads((course_grades / "partial" / "results.json").read_text())
    assert 0 < want["score"] < want["max_score"]
    driver = browser()
    try:
        driver.get(f"{url}/tree?token={token}")  # logs in (a cookie), as the lab link does
        driver.get(f"{url}/formgrader/manage_submissions/{A}")

        def row(d):
            rows = [r for r in d.find_elements(By.CSS_SELECTOR, "tbody tr")
                    if student in r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text]
            return rows[0] if rows else None

        WebDriverWait(driver, 60).until(row)
        assert "needs autograding" in row(driver).text
        row(driver).find_element(By.CSS_SELECTOR, ".autograde a").click()
        def score(d) -> str:  # the row is blank ("Please wait...") while grading
            r = row(d)
            return r.find_element(By.CSS_SELECTOR, ".score").text if r else ""

        WebDriverWait(driver, 1800, poll_frequency=2,
                      ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda d: "/" in score(d))
        shown = score(driver)
        driver.save_screenshot(str(tmp_path / "manage_submissions.png"))
        assert shown == f"{want['score']:g} / {want['max_score']:g}", shown
        modal = driver.find_element(By.CSS_SELECTOR, ".modal-body").text
        assert "Successfully autograded" in modal

        # Manual Grading of that submission: each grade cell shows its hidden tests
        driver.get(f"{url}/formgrader/api/submitted_notebooks/{A}/{A}")
        listed = json.loads(driver.find_element(By.TAG_NAME, "body").text)
        sid = next(s["id"] for s in listed if s["student"] == student)
        driver.get(f"{url}/formgrader/submissions/{sid}/")
        WebDriverWait(driver, 60).until(lambda d: "Student's answer" in d.page_source)
        page = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(tmp_path / "manual_grading.png"))
        for t in want["tests"]:
            assert t["name"] in page, t["name"]
        assert "Traceback" not in page
        # nbgrader's own page loads MathJax from a CDN, which an offline machine cannot reach
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and "MathJax" not in e["message"] and "cdnjs" not in e["message"]]
        assert not errors, errors
    finally:
        driver.quit()


def test_nbgrader_validate_refuses_a_submission_but_checks_a_students_own_notebook(tmp_path):
    """`nbgrader validate` runs the notebook in a plain kernel: in the course folder, a
    notebook under submitted/ is refused before any of its code runs; the same notebook
    elsewhere (a student checking their own work) is run as nbgrader always did."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    canary = tmp_path / "ran"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"open({str(canary)!r}, 'w').write('student code ran')")])
    inside = root / "submitted" / "eve" / A / f"{A}.ipynb"
    outside = root / "mine" / f"{A}.ipynb"
    for path in (inside, outside):
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    proc = nbgrader(root, "validate", str(inside.relative_to(root)), check=False)
    assert proc.returncode != 0 and not canary.exists()
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "unsandboxed" in ln]
    assert said and "course grade" in said[0], proc.stdout + proc.stderr
    nbgrader(root, "validate", str(outside.relative_to(root)), check=False)
    assert canary.read_text() == "student code ran"  # the refusal above was the guard's


def test_nbgrader_db_commands_work_by_path_from_an_inactive_venv(tmp_path):
    """nbgrader runs `alembic` by name when it creates or upgrades a gradebook; the config
    puts this Python's bin/ on PATH, so no activation is needed."""
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    nbgrader(tmp_path, "db", "student", "add", "alice", "--last-name=Liddell")
    nbgrader(tmp_path, "db", "upgrade")
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        assert gb.find_student("alice").last_name == "Liddell"
