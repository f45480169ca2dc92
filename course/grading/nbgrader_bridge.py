"""nbgrader's autograde step done by the course grader: the hidden tests in the sandbox, never the notebook in a kernel.

``nbgrader_config.py`` puts :class:`SandboxAutograde` in place of nbgrader's ``Execute`` in
``Autograde.autograde_preprocessors``, so ``nbgrader autograde`` and the formgrader's Autograde
button grade exactly as ``course grade --class`` does (same sandbox, same hidden tests, same
results folder, so one reuses the other's signed results). Each grade cell of the autograded
notebook gets, as its output, one line per hidden test of that cell (name, points, one-line
message) and its score as an ``execute_result``, which nbgrader's ``SaveAutoGrades`` reads as
the cell's partial credit. A submission that gets no verdict raises: nbgrader records no score
(never a zero). :func:`keep_release_on_failure` stops ``nbgrader generate_assignment --force``
from deleting the committed release when generation fails; :func:`refuse_validating_submissions`
stops ``nbgrader validate`` from running a submission in a plain kernel. :class:`ColabSetup`
puts the "Open in Colab" link and the install cell (course.colab) at the top of every release,
whichever route generates it (``course release``, ``nbgrader generate_assignment``, the
formgrader).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode, v4
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, Unicode

from course.cores import usable_cores
from course.errors import CourseError


class SandboxAutograde(NbGraderPreprocessor):
    """Grade the submission with ``course``'s hidden tests and write the verdicts into the
    grade cells (in place of nbgrader's Execute)."""

    device = Unicode("cpu", help="device for student code: cpu, cuda, mps or auto").tag(config=True)
    budget = Float(900.0, help="seconds of computing one submission may use (CPU time)").tag(
        config=True)
    allow_weak_isolation = Bool(
        False, help="grade where the sandbox is below 'contained' (trusted submissions only)"
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]):
        info = resources["nbgrader"]
        assignment, student, name = info["assignment"], info["student"], info["notebook"]
        if name != assignment:
            raise CourseError(f"{name}.ipynb is not graded by the course: each assignment is one "
                              f"notebook named after it ({assignment}.ipynb)")
        root = Path(self.config.CourseDirectory.get("root") or os.getcwd())
        submitted = (root / self.config.CourseDirectory.get("submitted_directory", "submitted")
                     / student / assignment / f"{assignment}.ipynb")
        with tempfile.TemporaryDirectory(prefix="course-nbgrader-") as tmp:
            if not submitted.is_file():  # another layout: grade what nbgrader passed us
                submitted = Path(tmp) / f"{assignment}.ipynb"
                nbformat.write(nb, submitted)
            results = grade(assignment, student, submitted, root, self.device, self.budget,
                            self.allow_weak_isolation, self.log)
        return annotate(nb, results), resources


def grade(assignment: str, student: str, notebook: Path, root: Path, device: str, budget: float,
          allow_weak: bool, log: Any) -> dict[str, Any]:
    """What ``course grade --class ASSIGNMENT`` does for one student (results in
    ``grades/<assignment>/<student>/``); raises when there is no verdict."""
    from course.grading import integrity, runner
    from course.grading.cli import settings_for
    from course.paths import check_assignment

    check_assignment(assignment)
    settings = settings_for(device, budget, usable_cores(), allow_weak)
    integrity.start_run([assignment])
    try:
        log.info("course: grading %s of %s with the hidden tests (sandboxed)", assignment, student)
        results = runner.grade_job(runner.Job(student, notebook, assignment),
                                   root / "grades" / assignment, settings)
    finally:
        integrity.end_run()
    log.info("course: %s scored %g / %g%s", student, results["score"], results["max_score"],
             " (results reused)" if results["extra_data"].get("reused") else "")
    return results


def cell_lines(tests: list[dict[str, Any]]) -> str:
    """A line per hidden test (result, points, name) and, under a failed one, the first line
    of its message, indented (pages show these lines unwrapped: no message at the far right)."""
    lines = []
    for t in tests:
        mark = "passed" if t["status"] == "passed" else "FAILED"
        lines.append(f"{mark}  {float(t['score']):g} / {float(t['max_score']):g}  {t['name']}")
        message = str(t.get("output") or "").strip()
        if t["status"] != "passed" and message:
            lines.append(f"        {message.splitlines()[0]}")
    return "\n".join(lines) + "\n"


def annotate(nb: NotebookNode, results: dict[str, Any]) -> NotebookNode:
    """Give every autograded grade cell the hidden tests' lines and its score; every other
    code cell no output (nothing of the student's code ran outside the sandbox)."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for t in results["tests"]:
        by_cell.setdefault(t["extra_data"]["grade_id"], []).append(t)
    cells = results["extra_data"]["cells"]
    seen = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        gid = meta.get("grade_id")
        if gid not in cells:
            raise CourseError(f"grade cell {gid!r} has no hidden tests in autograder/: the release "
                              "and the hidden tests disagree; regenerate the release")
        score, most = float(cells[gid]["score"]), float(cells[gid]["max_score"])
        if abs(most - float(meta.get("points", 0))) > 1e-9:
            raise CourseError(f"grade cell {gid!r} is worth {meta.get('points')} points in the "
                              f"notebook but {most:g} in the hidden tests; regenerate the release")
        seen.add(gid)
        cell.outputs = [
            v4.new_output("stream", name="stdout", text=cell_lines(by_cell.get(gid, []))),
            v4.new_output("execute_result", data={"text/plain": repr(min(score, most))},
                          execution_count=None),
        ]
    if missing := sorted(set(cells) - seen):
        raise CourseError(f"the hidden tests grade cells this notebook lacks: {', '.join(missing)}")
    return nb


class ColabSetup(NbGraderPreprocessor):
    """generate_assignment step: the release's first cells, from the configured repository."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        from course import colab

        return colab.add_setup_cells(nb, resources["nbgrader"]["assignment"], Path.cwd()), resources


def keep_release_on_failure() -> None:
    """Make ``nbgrader generate_assignment`` (plain, or the formgrader's Generate button) put
    back the release folders it deleted when the generation fails."""
    from nbgrader.converters import GenerateAssignment

    original = GenerateAssignment.convert_notebooks
    if getattr(original, "_course_keeps_release", False):
        return

    @functools.wraps(original)
    def convert_notebooks(self) -> None:
        release = Path(self.coursedir.format_path(self.coursedir.release_directory, ".", "."))
        with tempfile.TemporaryDirectory(prefix="course-release-backup-") as tmp:
            kept = Path(tmp) / "release"
            if release.is_dir():
                shutil.copytree(release, kept, symlinks=True)
            try:
                original(self)
            except BaseException:
                if kept.is_dir():
                    for folder in kept.iterdir():
                        if not (release / folder.name).exists():
                            shutil.copytree(folder, release / folder.name, symlinks=True)
                            self.log.warning("course: kept the committed %s (generation failed)",
                                             release / folder.name)
                raise

    convert_notebooks._course_keeps_release = True  # type: ignore[attr-defined]
    GenerateAssignment.convert_notebooks = convert_notebooks


#: nbgrader's folders of student work in a course folder.
STUDENT_WORK = ("submitted", "autograded")


def refuse_validating_submissions(course_root: Path) -> None:
    """Make ``nbgrader validate`` refuse a notebook under ``course_root``'s submitted/ or
    autograded/: it would run a student's code in a plain kernel as the instructor."""
    from nbgrader.validator import Validator

    original = Validator.validate
    if getattr(original, "_course_refuses_submissions", False):
        return
    roots = [(course_root / name).resolve() for name in STUDENT_WORK]

    @functools.wraps(original)
    def validate(self, filename: str):
        path = Path(filename).resolve()
        if any(path.is_relative_to(r) for r in roots):
            raise SystemExit(
                f"nbgrader validate would run {filename} (a student's submission) unsandboxed, "
                "as you: grade it with `course grade` or `nbgrader autograde` instead")
        return original(self, filename)

    validate._course_refuses_submissions = True  # type: ignore[attr-defined]
    Validator.validate = validate
