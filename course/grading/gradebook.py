"""Writing hidden-test scores into nbgrader's gradebook, so nbgrader's formgrader, ``nbgrader
export`` and feedback see them as autograded scores of the notebook's grade cells.

The assignment must be known to the gradebook (``course release --gradebook`` or plain
``nbgrader generate_assignment``), which registers its grade cells and their points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from course.errors import CourseError


def record_scores(db_path: Path, assignment: str, graded: list[tuple[str, dict[str, Any]]]) -> int:
    """Store each submission's per-cell scores as nbgrader auto scores; return how many."""
    from nbgrader.api import Gradebook, MissingEntry

    if not Path(db_path).is_file():
        raise CourseError(f"{db_path}: no gradebook; run `course release {assignment} --gradebook` "
                          "first so nbgrader knows the assignment")
    written = 0
    with Gradebook(f"sqlite:///{Path(db_path).resolve()}") as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise CourseError(f"the gradebook has no assignment {assignment!r}; run "
                              f"`course release {assignment} --gradebook`") from None
        for student, results in graded:
            if results.get("not_graded"):
                continue  # no verdict: nothing is stored, never a zero
            gb.update_or_create_student(student)
            gb.update_or_create_submission(assignment, student)
            for cell, score in results.get("extra_data", {}).get("cells", {}).items():
                try:
                    grade = gb.find_grade(cell, assignment, assignment, student)
                except MissingEntry:
                    raise CourseError(f"the gradebook's {assignment} has no grade cell {cell!r}: "
                                      "regenerate it with `course release --gradebook`") from None
                grade.auto_score = float(score["score"])
                written += 1
            gb.db.commit()
    return written
