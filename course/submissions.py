"""Building submissions from the release notebook (demo submissions, test variants).

A *variant* is a folder of ``<grade_id>.py`` files; each file's text replaces the source of
the solution cell with that grade id in the reference solution (``solutions/<id>/``), so a
variant holds only what differs from the reference: a mistake, or an alternative correct
solution. Folders of cell sources stay valid as the notebooks change.
Used by the demo (``demo/submissions/<id>/<name>/``) and the tests (``tests/variants/``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from course.errors import CourseError
from course.grading.notebook import grade_id, nbgrader_meta, read_notebook
from course.paths import repo_root


def release_path(assignment: str, root: Path | None = None) -> Path:
    return (root or repo_root()) / "release" / assignment / f"{assignment}.ipynb"


def solution_path(assignment: str, root: Path | None = None) -> Path:
    return (root or repo_root()) / "solutions" / assignment / f"{assignment}.ipynb"


def apply_variant(notebook: dict[str, Any], variant_dir: Path) -> dict[str, Any]:
    """Return a copy of ``notebook`` with solution cells replaced from ``variant_dir``."""
    files = sorted(Path(variant_dir).glob("*.py"))
    if not files:
        raise CourseError(f"{variant_dir}: no <grade_id>.py files")
    nb = copy.deepcopy(notebook)
    cells = {grade_id(c): c for c in nb["cells"] if grade_id(c)}
    for f in files:
        cell = cells.get(f.stem)
        if cell is None or not nbgrader_meta(cell).get("solution"):
            raise CourseError(f"{f}: the notebook has no solution cell with grade id {f.stem!r}")
        cell["source"] = f.read_text()
    return nb


def reference_submission(assignment: str, root: Path | None = None) -> dict[str, Any]:
    """The solved notebook without outputs: what a student who got everything right submits."""
    nb = read_notebook(solution_path(assignment, root))
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("course", None)
    return nb


def build_variant(assignment: str, variant_dir: Path, root: Path | None = None) -> dict[str, Any]:
    """The reference submission of ``assignment`` with the variant's cells swapped in."""
    return apply_variant(reference_submission(assignment, root), variant_dir)


def write_notebook(nb: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path
