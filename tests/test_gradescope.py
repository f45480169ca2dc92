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


def run_autograder(root: Path, **extra_env: str) -> dict:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_DATA": str(data_dir()),
           **extra_env}
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


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_run_autograder_without_unshare_or_cgroups_is_contained(autograder_root):
    """Gradescope's containers have neither: the worker must still be contained there."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    res = run_autograder(autograder_root, COURSE_SANDBOX_DISABLE="unshare,cgroups")
    isolation = res["extra_data"]["isolation"]
    assert isolation["level"] == "contained", isolation
    assert res["score"] == res["max_score"] > 0
    assert oct((autograder_root / "results").stat().st_mode & 0o777) == "0o700"


def test_setup_installs_cpu_torch_and_hides_the_grader_from_student_code(bundle):
    with zipfile.ZipFile(bundle) as zf:
        setup = zf.read("setup.sh").decode()
        run = zf.read("run_autograder").decode()
    subprocess.run(["bash", "-n"], input=setup, text=True, check=True)
    subprocess.run(["bash", "-n"], input=run, text=True, check=True)
    assert "download.pytorch.org/whl/cpu" in setup  # not the CUDA wheels
    assert "-e ./" not in setup  # the package lives in the venv, not in the hidden bundle
    assert f"useradd --system --no-create-home --shell /usr/sbin/nologin " \
           f"{gradescope.STUDENT_USER}" in setup
    assert "chmod -R go-rwx /autograder/source" in setup
    assert "COURSE_WORKER_UID" in run


def test_run_autograder_explains_a_missing_notebook(autograder_root):
    (autograder_root / "submission" / "notes.txt").write_text("forgot the notebook")
    res = run_autograder(autograder_root)
    assert res["score"] == 0 and "upload 01_kmeans.ipynb" in res["output"]


def test_run_autograder_without_a_sandbox_fails_the_run_instead_of_a_zero(autograder_root):
    """A container without Landlock and unshare: no verdict is written (Gradescope shows a
    failed autograder run the instructor can rerun), never a zero."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    env = {**os.environ, "AUTOGRADER_ROOT": str(autograder_root), "COURSE_DATA": str(data_dir()),
           "COURSE_SANDBOX_DISABLE": "unshare,landlock"}
    proc = subprocess.run(["bash", str(autograder_root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "refusing to run student code" in proc.stderr
    assert not (autograder_root / "results" / "results.json").exists()


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_a_grader_killed_on_gradescope_writes_no_zero(autograder_root):
    """The grader process SIGKILLed half way (the OOM killer, say): the run fails with the
    reason and writes no results.json, so Gradescope shows a failed run, never a zero."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    tests_dir = str(Path(__file__).resolve().parent)
    env = {**os.environ, "AUTOGRADER_ROOT": str(autograder_root), "COURSE_DATA": str(data_dir()),
           "PYTEST_PLUGINS": "fault_plugin", "COURSE_FAULT_KILL_AFTER": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH"))
                                         if p)}
    proc = subprocess.run(["bash", str(autograder_root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout
    assert "not graded" in proc.stderr and "killed by SIGKILL after 3 of" in proc.stderr, \
        proc.stderr[-2000:]
    assert not (autograder_root / "results" / "results.json").exists()
