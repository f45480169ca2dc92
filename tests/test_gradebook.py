"""Scores from `course grade --class ... --gradebook` land in nbgrader's gradebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from course.errors import CourseError
from course.grading.gradebook import record_scores
from course.paths import repo_root

ASSIGNMENT = "01_kmeans"


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("gradebook")
    db = tmp / "gradebook.db"
    env = {**os.environ, "JUPYTER_NO_CONFIG": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT,
                    "--force", f"--CourseDirectory.release_directory={tmp / 'release'}",
                    f"--db=sqlite:///{db}"], cwd=repo_root(), env=env, check=True,
                   capture_output=True)
    return db


def results(cells: dict[str, float]) -> dict:
    return {"extra_data": {"cells": {c: {"score": s, "max_score": 9.0} for c, s in cells.items()}}}


def test_scores_become_autograded_scores(gradebook):
    n = record_scores(gradebook, ASSIGNMENT, [
        ("alice", results({"test_kmeans": 6.0, "test_pca": 1.5})),
        ("bob", results({"test_kmeans": 0.0})),
    ])
    assert n == 3
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        grade = gb.find_grade("test_pca", ASSIGNMENT, ASSIGNMENT, "alice")
        assert grade.auto_score == 1.5 and grade.max_score == 3
        assert gb.find_grade("test_kmeans", ASSIGNMENT, ASSIGNMENT, "bob").auto_score == 0.0
        assert gb.find_submission(ASSIGNMENT, "alice").score == 7.5


def test_regrading_overwrites(gradebook):
    record_scores(gradebook, ASSIGNMENT, [("carol", results({"test_pca": 3.0}))])
    record_scores(gradebook, ASSIGNMENT, [("carol", results({"test_pca": 1.0}))])
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        assert gb.find_grade("test_pca", ASSIGNMENT, ASSIGNMENT, "carol").auto_score == 1.0


def test_unknown_cell_or_assignment_is_a_one_line_error(gradebook, tmp_path):
    with pytest.raises(CourseError, match="no grade cell 'test_nothing'"):
        record_scores(gradebook, ASSIGNMENT, [("dan", results({"test_nothing": 1.0}))])
    with pytest.raises(CourseError, match="no assignment '02_other'"):
        record_scores(gradebook, "02_other", [])
    with pytest.raises(CourseError, match="no gradebook"):
        record_scores(tmp_path / "missing.db", ASSIGNMENT, [])


def test_a_submission_not_graded_gets_no_score_not_even_zero(gradebook):
    """A not-graded entry (the grader crashed or was killed) leaves the gradebook untouched:
    no student, no submission, no zero; a graded one in the same call is stored."""
    from nbgrader.api import MissingEntry

    from course.grading.runner import Job, not_graded_entry

    entry = not_graded_entry(Job("erin", Path("erin.ipynb"), ASSIGNMENT), "killed by SIGKILL")
    n = record_scores(gradebook, ASSIGNMENT, [("erin", entry),
                                              ("fay", results({"test_pca": 2.0}))])
    assert n == 1
    with Gradebook(f"sqlite:///{gradebook}") as gb:
        with pytest.raises(MissingEntry):
            gb.find_submission(ASSIGNMENT, "erin")
        assert gb.find_grade("test_pca", ASSIGNMENT, ASSIGNMENT, "fay").auto_score == 2.0
