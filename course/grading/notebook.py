"""Which code a submission's worker runs, decided from the release notebook.

The grader reads a submission as JSON (it never executes it) and builds the list of cells to
run, matching cells by their nbgrader ``grade_id``:

- solution cells: the student's version;
- other locked code cells (setup): the release's version, so edits to locked cells count for
  nothing and deleted setup cells are restored;
- visible test cells and cells tagged ``experiment`` in the release: not run (the hidden tests
  do not need them; they only cost time);
- cells the student added: run, after the release cell they follow in the submission.

Known cells run in the release's order, so a reordered notebook is graded like the original.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.errors import CourseError

EXPERIMENT_TAG = "experiment"


class SubmissionError(CourseError):
    """The submission cannot be graded at all (not a notebook)."""


#: Lines IPython rewrites although the cell may parse as Python: pasted console prompts
#: (``In [3]: x = 1`` is an annotated assignment to Python, ``x = 1`` to a notebook's kernel).
_PROMPTS = re.compile(r"^\s*(>>>|\.{3,}:|((\[nav\]|\[ins\])? )?In \[\d+\]: )", re.MULTILINE)


def to_python(source: str) -> str:
    """Translate IPython syntax (``%magic``, ``!cmd``, ``obj?``, pasted prompts) into plain
    Python as a notebook's kernel would. A cell that is plain Python already (``!=`` and
    ``{x!r}`` included) comes back as it is, without importing IPython (0.04 to 0.05 s of the
    worker's first request and of the grader's first look at a cell's names)."""
    if not _PROMPTS.search(source):
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):
            pass
        else:
            return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return source
    return TransformerManager().transform_cell(source)


@dataclass
class Plan:
    """The cells to run, in order, and notes for the student about what was changed."""

    cells: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def names_used(self, function: str) -> set[str] | None:
        """Every name and attribute the notebook's ``def function`` mentions (``torch.cdist``
        gives ``torch`` and ``cdist``), read from its source in the grader (never run);
        None when no cell defines it or its cell does not parse. For checks of the form
        "does not call X", where X's result cannot be told apart from the intended code's."""
        for cell in reversed(self.cells):  # the last definition is the one that counts
            try:
                tree = ast.parse(to_python(cell["source"]))
            except (SyntaxError, ValueError):
                continue
            defs = [n for n in ast.walk(tree)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
            if defs:
                names: set[str] = set()
                for node in ast.walk(defs[-1]):
                    if isinstance(node, ast.Name):
                        names.add(node.id)
                    elif isinstance(node, ast.Attribute):
                        names.add(node.attr)
                    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                        names.add(node.value)  # getattr(torch, "cdist")
                return names
        return None


def source_of(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    meta = cell.get("metadata")
    nb = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nb if isinstance(nb, dict) else {}


def grade_id(cell: dict[str, Any]) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def is_experiment(cell: dict[str, Any]) -> bool:
    meta = cell.get("metadata")
    tags = meta.get("tags", []) if isinstance(meta, dict) else []
    return isinstance(tags, list) and EXPERIMENT_TAG in tags


#: Modules a worker imports before its hello when the release's code names the word: the
#: first optimizer a notebook creates imports torch._dynamo (2 s here), the setup cells
#: import matplotlib.pyplot. Imported while the grader collects its hidden tests, on the other
#: core, they leave the grading's critical path and are never charged to the student.
PRELOADS = {"torch._dynamo": r"\boptim\b", "matplotlib.pyplot": r"\bmatplotlib\b"}


def preloads(release: Path) -> tuple[str, ...]:
    """The modules of ``PRELOADS`` whose word the release's code cells contain (the release
    is the instructor's: a submission has no say in what is preloaded)."""
    try:
        nb = read_notebook(release)
    except SubmissionError:
        return ()
    code = "\n".join(source_of(c) for c in nb["cells"] if c.get("cell_type") == "code")
    return tuple(module for module, word in PRELOADS.items() if re.search(word, code))


def read_notebook(path: Path) -> dict[str, Any]:
    """Parse a notebook file as JSON and check the little structure grading relies on."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read the notebook ({exc.strerror})") from None
    try:
        nb = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SubmissionError(f"{path}: not a valid notebook file (invalid JSON: {exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path}: not a Jupyter notebook (no list of cells)")
    if nb.get("nbformat") != 4:
        raise SubmissionError(f"{path}: notebook format {nb.get('nbformat')!r} is not 4")
    return nb


def plan_cells(release: dict[str, Any], submission: dict[str, Any]) -> Plan:
    """Decide which cells the worker runs for ``submission``."""
    plan = Plan()
    rel_cells = [c for c in release["cells"] if c.get("cell_type") == "code"]
    known = {grade_id(c): c for c in rel_cells if grade_id(c)}

    student_by_id: dict[str, dict] = {}
    extras_after: dict[str | None, list[str]] = {}
    previous: str | None = None
    for cell in submission["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        gid = grade_id(cell)
        if gid in known:
            student_by_id.setdefault(gid, cell)
            previous = gid
        else:
            extras_after.setdefault(previous, []).append(source_of(cell))

    def add_extras(after: str | None) -> None:
        for n, src in enumerate(extras_after.get(after, [])):
            plan.cells.append({"id": f"added after {after or 'the start'} #{n + 1}", "source": src})

    add_extras(None)
    for gid, rel in known.items():
        meta = nbgrader_meta(rel)
        if meta.get("solution"):
            if gid in student_by_id:
                plan.cells.append({"id": gid, "source": source_of(student_by_id[gid])})
            else:
                plan.missing.append(gid)
                plan.notes.append(f"the solution cell `{gid}` is missing from the notebook")
        elif not meta.get("grade") and not is_experiment(rel):
            plan.cells.append({"id": gid, "source": source_of(rel)})
            if gid in student_by_id and source_of(student_by_id[gid]) != source_of(rel):
                plan.notes.append(f"the locked cell `{gid}` was edited; the original was used")
        add_extras(gid)
    return plan
