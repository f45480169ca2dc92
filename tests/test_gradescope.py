"""`course gradescope` builds a Gradescope autograder zip that grades like `course grade`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course import gradescope
from course.paths import data_dir
from course.submissions import reference_submission, write_notebook

ASSIGNMENT = "01_kmeans"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return gradescope.build(ASSIGNMENT, out_dir=tmp_path_factory.mktemp("gs"))


def test_zip_holds_the_grader_and_no_solutions(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        release = zf.read(f"course-bundle/release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb").decode()
    assert {"setup.sh", "run_autograder"} <= names
    assert f"course-bundle/autograder/test_{ASSIGNMENT}.py" in names
    assert f"course-bundle/release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb" in names
    assert "course-bundle/course/grading/worker.py" in names
    assert not [n for n in names if "/source/" in n or "/solutions/" in n or "/tests/" in n]
    assert "# your code here" in release and "BEGIN SOLUTION" not in release


def test_zip_is_reproducible(bundle, tmp_path):
    again = gradescope.build(ASSIGNMENT, out_dir=tmp_path)
    assert again.read_bytes() == bundle.read_bytes()


def run_autograder(root: Path) -> dict:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_DATA": str(data_dir())}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, check=True,
                   capture_output=True, timeout=600)
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture
def autograder_root(bundle, tmp_path) -> Path:
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
    (root / "venv").symlink_to(Path(sys.prefix))  # stands in for setup.sh's venv
    (root / "submission").mkdir()
    return root


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_run_autograder_grades_an_upload(autograder_root):
    write_notebook(reference_submission(ASSIGNMENT),
                   autograder_root / "submission" / "my homework.ipynb")
    res = run_autograder(autograder_root)
    assert res["score"] == res["max_score"] > 0
    assert {"name", "score", "max_score", "output"} <= set(res["tests"][0])


def test_run_autograder_explains_a_missing_notebook(autograder_root):
    (autograder_root / "submission" / "notes.txt").write_text("forgot the notebook")
    res = run_autograder(autograder_root)
    assert res["score"] == 0 and "upload 01_kmeans.ipynb" in res["output"]
