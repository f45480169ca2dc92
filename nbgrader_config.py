"""nbgrader configuration for the course (read by every `nbgrader ...` run in this folder).

Works for `course release` (which calls `nbgrader generate_assignment` with this folder as the
working directory) and for an instructor typing plain `nbgrader <command>` in the repository
root. Paths below are relative to the course root, which nbgrader takes to be the current
directory.
"""

import os
import sys
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    ClearSolutions,
    ComputeChecksums,
    GetGrades,
    IncludeHeaderFooter,
    InstantiateTests,
    LimitOutput,
    LockCells,
    SaveAutoGrades,
    SaveCells,
)

from course.grading.nbgrader_bridge import (
    ColabSetup,
    SandboxAutograde,
    keep_release_on_failure,
    refuse_validating_submissions,
)

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

# nbgrader runs the `alembic` executable by name (`nbgrader db ...`, a new gradebook): put this
# Python's bin/ first on PATH so `.venv/bin/nbgrader ...` works from an inactive venv.
_bin = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _bin:
    os.environ["PATH"] = os.pathsep.join([_bin, os.environ.get("PATH", "")])

# --- where things live -------------------------------------------------------------------
c.CourseDirectory.course_id = "unsupervised-learning"
# Hand-edited notebooks: source/<id>/<id>.ipynb (source/header.ipynb is not an assignment).
c.CourseDirectory.source_directory = "source"
# Student versions, generated and committed.
c.CourseDirectory.release_directory = "release"
# nbgrader's default is "solution"; ours is plural like the other step folders.
c.CourseDirectory.solution_directory = "solutions"
# submitted/, autograded/ and feedback/ keep nbgrader's defaults (and are git-ignored).
# Never copy editor and interpreter litter from source/<id>/ into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "__pycache__", "*.pyc", "feedback", ".DS_Store"]

# --- release -----------------------------------------------------------------------------
# The NAME / COLLABORATORS header is kept once, here, and prepended to every notebook.
c.IncludeHeaderFooter.header = "source/header.ipynb"
# What students see in place of a solution region: a stub that fails loudly when run.
c.ClearSolutions.code_stub = {"python": "# your code here\nraise NotImplementedError"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Then the "Open in Colab" link and the cell that installs `course` where it is missing, from
# [project.urls] Repository in pyproject.toml (course/colab.py), before everything else.
c.GenerateAssignment.preprocessors = [
    IncludeHeaderFooter, ColabSetup, InstantiateTests, LockCells, ClearSolutions, ClearOutput,
    CheckCellMetadata, ComputeChecksums, SaveCells, ClearHiddenTests, ClearMarkScheme,
    ComputeChecksums, CheckCellMetadata,
]

# --- exchange and export ------------------------------------------------------------------
# nbgrader's exchange (release_assignment / collect on a shared server): a folder of this
# course folder (git-ignored) unless the instructor points it at a shared one.
c.Exchange.root = "exchange"
try:  # the formgrader reports a missing exchange as "Unwritable directory" on every page
    os.makedirs(c.Exchange.root, exist_ok=True)
except OSError:
    pass
# `nbgrader export` writes here (git-ignored), not to grades.csv at the root.
c.CsvExportPlugin.to = "grades/nbgrader-export.csv"

# --- autograde: the course grader, never the notebook in a kernel ---------------------------
# `nbgrader autograde` and the formgrader's Autograde button run these after sanitizing the
# submission. SandboxAutograde replaces nbgrader's Execute: it grades the submission exactly as
# `course grade --class` does (hidden tests, sandboxed worker, results in grades/<id>/<student>/)
# and writes each grade cell's hidden-test lines and score into the autograded notebook;
# SaveAutoGrades stores those scores. No student code runs in nbgrader's own process or kernel.
c.Autograde.autograde_preprocessors = [
    SandboxAutograde, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
    AssignLatePenalties, CheckCellMetadata,
]
# Device, CPU-time budget and the weak-isolation opt-in, as `course grade` takes them.
c.SandboxAutograde.device = "cpu"
c.SandboxAutograde.budget = 900.0
c.SandboxAutograde.allow_weak_isolation = False

# A failed `nbgrader generate_assignment --force` deletes release/<id>/ (committed): put it back.
keep_release_on_failure()
# `nbgrader validate` runs a notebook in a plain kernel: fine for students checking their own
# work, never for a submission in this course folder (refused, with what to run instead).
refuse_validating_submissions(Path.cwd())

# --- execution (validate, and anything else that runs the notebook) ------------------------
# nbgrader's default is 30 s per cell, far too short for k-means or training on MNIST on a
# laptop CPU. A hung cell is interrupted (and reported) rather than killing the whole run.
c.Execute.timeout = 600
c.Execute.interrupt_on_timeout = True
# The same for anything that uses nbconvert's executor with this configuration.
c.ExecutePreprocessor.timeout = 600
c.ExecutePreprocessor.interrupt_on_timeout = True

# --- feedback ----------------------------------------------------------------------------
# nbgrader's feedback HTML shows hidden test code unless ClearHiddenTests runs first.
# (Our hidden tests live in autograder/, not in the notebooks; this is a second guard.)
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
