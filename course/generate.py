"""Build release/ and solutions/ from source/, and check that they are in sync.

* ``release``: the student notebook, made by nbgrader's ``generate_assignment`` (header added,
  solutions replaced by stubs, cells locked, checksums computed).
* ``solutions``: the solved notebook (header + source with the solution markers removed),
  executed at full scale so its figures and numbers are committed with it. Its metadata records
  hashes of the source and header it was built from and of its own cells, so ``check`` can tell
  a stale or hand-edited solution without re-executing it.
* ``check``: what is out of sync, one line per problem, each naming the command that fixes it.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from course.cores import usable_cores
from course.errors import CourseError
from course.lean_imports import PRELUDE, nbgrader_command
from course.paths import repo_root

HEADER = Path("source") / "header.ipynb"
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")  # nbgrader's delimiters: a line containing one
CELL_TIMEOUT_S = 1800  # per cell, when executing solutions (full-scale training on a laptop CPU)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # figures become PNG outputs
GENERATED_BY = "course solutions"


# --- shared helpers ------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _root(root: Path | str | None) -> Path:
    return Path(root).resolve() if root is not None else repo_root()


def source_notebook(assignment: str, root: Path | str | None = None) -> Path:
    """``source/<id>/<id>.ipynb``; raises ``CourseError`` if it does not exist."""
    path = _root(root) / "source" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        raise CourseError(
            f"no source notebook source/{assignment}/{assignment}.ipynb "
            "(an assignment is a folder source/<id>/ holding <id>.ipynb)"
        )
    return path


def read_notebook(path: Path) -> NotebookNode:
    """``path`` as an nbformat 4 notebook; an unreadable file raises CourseError naming it."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several types for unreadable files
        raise CourseError(f"cannot read notebook {path}: {exc}") from exc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cells_digest(cells: list[Any]) -> str:
    """SHA-256 of the cells (sources, metadata, outputs, execution counts) in canonical JSON."""
    canonical = json.dumps(cells, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _grade_id(cell: NotebookNode) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "no grade_id")


def _ignore_patterns(root: Path) -> list[str]:
    """``CourseDirectory.ignore`` as nbgrader_config.py sets it (nbgrader's default otherwise)."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    return list(config.CourseDirectory.get("ignore", CourseDirectory.ignore.default_value))


def _files(folder: Path, ignore: list[str]) -> dict[str, Path]:
    """Files under ``folder`` that nbgrader would copy, keyed by POSIX path relative to it."""
    from nbgrader.utils import find_all_files

    if not folder.is_dir():
        return {}
    return {Path(f).relative_to(folder).as_posix(): Path(f) for f in find_all_files(str(folder), ignore)}


# --- release -------------------------------------------------------------------------------


def release(assignment: str, root: Path | str | None = None, use_gradebook: bool = False) -> Path:
    """Generate ``release/<id>/`` with ``nbgrader generate_assignment``; return the notebook.

    By default nbgrader records the assignment in a throw-away gradebook, so a release is a pure
    function of ``source/`` (CI, ``check`` and any checkout produce the same bytes and touch no
    state). ``use_gradebook=True`` lets nbgrader update the configured gradebook instead
    (``<root>/gradebook.db`` unless nbgrader_config.py says otherwise), as plain
    ``nbgrader generate_assignment`` does, for instructors who grade with nbgrader itself.
    """
    root = _root(root)
    source_notebook(assignment, root)
    _check_cell_ids(root, assignment)
    start = time.perf_counter()
    _say(f"release {assignment}: nbgrader generate_assignment ...")
    target = root / "release" / assignment
    # nbgrader deletes its output folder when it fails: build aside, then swap in, so a broken
    # source never leaves the committed release deleted.
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        _generate_assignment(root, assignment, Path(tmp), use_gradebook)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / assignment, target)
    _say(f"release {assignment}: done in {time.perf_counter() - start:.1f} s")
    return target / f"{assignment}.ipynb"


def _check_cell_ids(root: Path, assignment: str) -> None:
    if problem := _cell_id_problem(root, assignment):
        raise CourseError(problem)


def _cell_id_problem(root: Path, assignment: str) -> str | None:
    """nbformat 4.4 notebooks have no cell ids; merged with the header they make invalid JSON."""
    nb = read_notebook(source_notebook(assignment, root))
    if nb.nbformat_minor < 5 or any("id" not in cell for cell in nb.cells):
        return (
            f"source/{assignment}/{assignment}.ipynb has cells without ids (nbformat "
            f"4.{nb.nbformat_minor}): save it as nbformat 4.5 (JupyterLab 4 does) before generating"
        )
    return None


def _generate_assignment(root: Path, assignment: str, release_dir: Path, use_gradebook: bool) -> None:
    """Run nbgrader in a subprocess, writing ``<release_dir>/<id>/``; raise on failure."""
    if not (root / "nbgrader_config.py").is_file():  # nbgrader would go on with its defaults
        raise CourseError(f"no nbgrader_config.py in {root}: run from the course repository")
    env = _nbgrader_env()
    with tempfile.TemporaryDirectory(prefix="course-nbgrader-") as tmp:
        cmd = nbgrader_command("generate_assignment", assignment, "--force",
                               f"--CourseDirectory.release_directory={release_dir}")
        if not use_gradebook:
            db = Path(tmp) / "gradebook.db"
            shutil.copyfile(_empty_gradebook(), db)
            cmd.append(f"--db=sqlite:///{db}")
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    notebook = release_dir / assignment / f"{assignment}.ipynb"
    if proc.returncode != 0 or not notebook.is_file():
        raise CourseError(
            f"nbgrader generate_assignment {assignment} failed: "
            f"{_nbgrader_reason(proc.stdout + proc.stderr)}"
        )


def _nbgrader_env() -> dict[str, str]:
    return {
        **os.environ,
        # nbgrader runs the `alembic` executable by name: the venv's bin/ must be on PATH
        # even when the venv is not activated (e.g. `make release` calls .venv/bin/course).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # Only the course's nbgrader_config.py counts, not ~/.jupyter/: same bytes everywhere.
        "JUPYTER_NO_CONFIG": "1",
    }


@functools.cache
def _empty_gradebook() -> Path:
    """An empty gradebook made once per process (in a folder removed at exit), copied for each
    throw-away run: nbgrader opens an existing gradebook in no time, but creates a new one by
    running `alembic heads`, which imports nbgrader once more (about 6 s per release)."""
    folder = Path(tempfile.mkdtemp(prefix="course-gradebook-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    empty = folder / "gradebook.db"
    # what nbgrader itself does with a new file (course_id "" as generate_assignment's)
    make = (f"{PRELUDE}; from nbgrader.api import Gradebook; "
            "Gradebook(f'sqlite:///{sys.argv[1]}', course_id='').close()")
    proc = subprocess.run([sys.executable, "-c", make, str(empty)], env=_nbgrader_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0 or not empty.is_file():
        raise CourseError(f"nbgrader could not create an empty gradebook: "
                          f"{_nbgrader_reason(proc.stdout + proc.stderr)}")
    return empty


_GENERIC = ("There was an error processing assignment", "Please see the", "Removing failed assignment")


def _nbgrader_reason(log: str) -> str:
    """The most telling line of an nbgrader log: the exception, else the last specific error."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    exceptions = [  # traceback last lines, without the module path: "ValidationError: ..."
        re.sub(r"^(\w+\.)+", "", ln) for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b:?", ln)
    ]
    exceptions = list(dict.fromkeys(exceptions))
    if len(exceptions) > 1:  # a chained error: the first one is usually the real cause
        return f"{exceptions[-1]} (caused by {exceptions[0]})"
    if exceptions:
        return exceptions[0]
    errors = [
        re.sub(r"^\[\w+ \| (ERROR|CRITICAL)\]\s*", "", ln)
        for ln in lines
        if re.match(r"^\[\w+ \| (ERROR|CRITICAL)\]", ln) and not any(g in ln for g in _GENERIC)
    ]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "no output (exit status non-zero)"


# --- solutions -----------------------------------------------------------------------------


def strip_solution_markers(text: str) -> str:
    """Remove the ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines, keep what is between."""
    kept = [line for line in text.split("\n") if not any(m in line for m in SOLUTION_MARKERS)]
    return "\n".join(kept)


def solved_notebook(assignment: str, root: Path | str | None = None) -> NotebookNode:
    """The unexecuted solution: header cells, then the source cells without solution markers.

    nbgrader metadata is kept. ``metadata.course`` records the SHA-256 of the source and header
    files it was built from. Used by ``solutions`` (which executes it) and ``check``.
    """
    root = _root(root)
    source_path = source_notebook(assignment, root)
    header_path = root / HEADER
    nb = read_notebook(source_path)
    header = read_notebook(header_path)
    for cell in nb.cells:
        cell.source = strip_solution_markers(cell.source)
    nb.cells = header.cells + nb.cells
    nb.metadata["course"] = {
        "source_sha256": _sha256(source_path),
        "header_sha256": _sha256(header_path),
        "generated_by": GENERATED_BY,
    }
    return nb


def solutions(
    assignment: str, root: Path | str | None = None, execute: bool = True, scale: str = "full",
    text_only: bool = False,
) -> Path:
    """Write ``solutions/<id>/<id>.ipynb``, executed at ``scale`` unless ``execute`` is False.

    The other files of ``source/<id>/`` are copied next to it (the notebook runs there). The
    notebook is not written if a cell fails. The run's wall time is recorded in
    ``metadata.course.execution_s`` (what each notebook's runtime statement is checked against).
    ``text_only`` takes the source's Markdown into the executed solutions without running them
    again (a wording fix need not cost a full-scale run); it is refused unless every code cell,
    in order, is what the source generates now.
    """
    from course.profiles import PROFILES

    if scale not in PROFILES:
        raise CourseError(f"unknown scale {scale!r}; choose one of {sorted(PROFILES)}")
    root = _root(root)
    _check_cell_ids(root, assignment)
    nb = solved_notebook(assignment, root)
    out_dir = root / "solutions" / assignment
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_assignment_files(root, assignment, out_dir)
    if text_only:
        return _refresh_text(assignment, nb, out_dir / f"{assignment}.ipynb")
    seconds = None
    if execute:
        start = time.perf_counter()
        _execute(nb, out_dir, root, scale, assignment)
        seconds = round(time.perf_counter() - start, 1)
        _say(f"solutions {assignment}: executed in {seconds:.1f} s")
    nb.metadata["course"]["scale"] = scale if execute else None
    nb.metadata["course"]["execution_s"] = seconds
    nb.cells = nbformat.reads(nbformat.writes(nb), as_version=4).cells  # as it will read back
    nb.metadata["course"]["content_sha256"] = cells_digest(nb.cells)
    path = out_dir / f"{assignment}.ipynb"
    nbformat.write(nb, path)
    return path


def _refresh_text(assignment: str, nb: NotebookNode, path: Path) -> Path:
    """The executed ``path`` with ``nb``'s Markdown (see ``solutions(text_only=True)``)."""
    fix = f"run `course solutions {assignment}` (without --text-only)"
    if not path.is_file():
        raise CourseError(f"{path}: no executed solutions to update: {fix}")
    old = read_notebook(path)
    stored = old.metadata.get("course", {})
    if stored.get("generated_by") != GENERATED_BY or stored.get("content_sha256") != cells_digest(old.cells):
        raise CourseError(f"{path} was not written by `course solutions` or was edited by hand: {fix}")
    want = [(c.cell_type, c.source) for c in nb.cells if c.cell_type == "code"]
    have = [(c.cell_type, c.source) for c in old.cells if c.cell_type == "code"]
    if want != have:
        first = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
                     min(len(want), len(have)))
        raise CourseError(f"solutions {assignment}: code cell {first} changed since the run, so its "
                          f"outputs would be stale: {fix}")
    executed = iter(c for c in old.cells if c.cell_type == "code")
    nb.cells = [next(executed) if c.cell_type == "code" else c for c in nb.cells]
    for key in ("scale", "execution_s"):
        nb.metadata["course"][key] = stored.get(key)
    nb.metadata = nbformat.from_dict({**old.metadata, "course": nb.metadata["course"]})  # + language_info
    nb.cells = nbformat.reads(nbformat.writes(nb), as_version=4).cells
    nb.metadata["course"]["content_sha256"] = cells_digest(nb.cells)
    nbformat.write(nb, path)
    _say(f"solutions {assignment}: text updated, outputs kept from the run")
    return path


def cell_text(notebook: Path | str, cell_id: str) -> str:
    """The printed text (stdout and plain-text results) of the code cell ``cell_id``.

    For reading a number out of an executed notebook, e.g. the accuracy table of
    ``solutions/04_contrastive``. ``CourseError`` if no code cell has that id.
    """
    nb = read_notebook(Path(notebook))
    cell = next((c for c in nb.cells if c.cell_type == "code" and _grade_id(c) == cell_id), None)
    if cell is None:
        ids = [_grade_id(c) for c in nb.cells if c.cell_type == "code"]
        raise CourseError(f"{notebook}: no code cell {cell_id!r} (code cells: {', '.join(ids)})")
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out.get("text", ""))
        elif ("text/plain" in out.get("data", {})
              and not {"image/png", WIDGET_VIEW} & out["data"].keys()):  # a figure, a bar
            parts.append(out["data"]["text/plain"] + "\n")
    return "".join(parts)


def _copy_assignment_files(root: Path, assignment: str, out_dir: Path) -> None:
    """Copy the non-notebook files of ``source/<id>/`` (data, helpers) into ``out_dir``."""
    for rel, src in _extra_source_files(root, assignment).items():
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


def _extra_source_files(root: Path, assignment: str) -> dict[str, Path]:
    files = _files(root / "source" / assignment, _ignore_patterns(root))
    return {rel: p for rel, p in files.items() if not rel.endswith(".ipynb")}


def _kernel_manager():
    """A kernel manager whose python3 kernel is always this interpreter (not a user kernelspec)."""
    from ipykernel.kernelspec import get_kernel_dict
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(resource_dir="", **get_kernel_dict())

    return KernelManager(kernel_name="python3", kernel_spec_manager=ThisInterpreter())


def _execute(nb: NotebookNode, cwd: Path, root: Path, scale: str, assignment: str) -> None:
    """Execute ``nb`` in place with a fresh kernel in ``cwd``; raise CourseError on failure."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from tqdm import tqdm

    env = {**os.environ, "COURSE_SCALE": scale, "MPLBACKEND": INLINE_BACKEND, "COURSE_ROOT": str(root)}
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    with tqdm(total=n_code, desc=f"solutions {assignment} ({scale})", unit="cell", file=sys.stderr) as bar:
        current: dict[str, Any] = {}

        def on_start(cell: NotebookNode, cell_index: int) -> None:
            current.update(index=cell_index, grade_id=_grade_id(cell))
            bar.set_postfix_str(_grade_id(cell))

        client = NotebookClient(
            nb, km=_kernel_manager(), timeout=CELL_TIMEOUT_S, allow_errors=False,
            record_timing=False, coalesce_streams=True,
            resources={"metadata": {"path": str(cwd)}},
            on_cell_start=on_start, on_cell_executed=lambda **_: bar.update(1),
        )
        try:
            client.execute(env=env)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            where = f"cell {current.get('index')} ({current.get('grade_id')})"
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # no terminal colours
            reason = text.splitlines()[-1] if text else type(exc).__name__
            raise CourseError(
                f"solutions {assignment}: {where} failed: {reason}; the notebook was not written"
            ) from exc
    settle_progress_bars(nb)


#: A widget's output (a slider view, a progress bar); its model's last state is in nb.metadata.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def settle_progress_bars(nb: NotebookNode) -> int:
    """Rewrite the plain text of each tqdm widget bar in ``nb`` to the bar's final state.

    A notebook bar (``tqdm.auto`` in Jupyter) saves the text it had when it was first shown
    ("0/1180 [00:00<?]"); its later values live only in the widget state nbclient stores in the
    notebook's metadata. Pages and viewers that cannot run widgets (the course site, GitHub,
    the formgrader) show that text, so it is rebuilt from the state: "desc: 100%|##########|
    1180/1180 [...]". Returns how many outputs were rewritten.
    """
    import html

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    rewritten = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            view = out.get("data", {}).get(WIDGET_VIEW) or {}
            box = state.get(view.get("model_id", ""), {})
            if box.get("model_name") != "HBoxModel":
                continue
            parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {})
                     for c in box.get("state", {}).get("children", [])]
            if [p.get("model_name") for p in parts] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
                continue  # not a tqdm bar
            left, bar, right = (p.get("state", {}) for p in parts)
            total, value = bar.get("max") or 0, bar.get("value") or 0
            filled = int(10 * value / total) if total else 0
            text = (f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|"
                    f"{right.get('value', '')}")
            out["data"]["text/plain"] = html.unescape(text).replace("\u2007", " ")
            rewritten += 1
    return rewritten


# --- check ---------------------------------------------------------------------------------


def check(assignments: list[str], root: Path | str | None = None) -> list[str]:
    """Problems that make release/ or solutions/ differ from what source/ generates.

    The release is regenerated into a temporary folder and compared byte for byte; solutions
    are checked through their recorded hashes and the code they should contain (no execution).
    """
    root = _root(root)
    for assignment in assignments:
        source_notebook(assignment, root)  # a missing one is an error before any work

    def one(assignment: str) -> list[str]:
        return (_check_source(root, assignment) + _check_release(root, assignment)
                + _check_solutions(root, assignment))

    # nearly all of the time is nbgrader starting (~5 s of one core per assignment): one
    # assignment per core at once, the problems listed in the order of ``assignments``
    if len(assignments) > 1:
        # two threads importing nbgrader's modules at once can meet one half-initialised (its
        # imports are circular): import them here first; and make the empty gradebook once
        import nbgrader.coursedir  # noqa: F401
        import nbgrader.utils  # noqa: F401
        _empty_gradebook()
    with ThreadPoolExecutor(max_workers=max(1, min(len(assignments), usable_cores()))) as pool:
        return [problem for found in pool.map(one, assignments) for problem in found]


def _check_source(root: Path, assignment: str) -> list[str]:
    rel = f"source/{assignment}/{assignment}.ipynb"
    nb = read_notebook(source_notebook(assignment, root))
    dirty = [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    problems = []
    if dirty:
        problems.append(
            f"{rel} has outputs or execution counts in cell(s) {', '.join(map(str, dirty))}: "
            "clear them (Edit -> Clear Outputs of All Cells) and save; source stays clean"
        )
    if id_problem := _cell_id_problem(root, assignment):
        problems.append(id_problem)
    return problems


def _check_release(root: Path, assignment: str) -> list[str]:
    fix = f"run `course release {assignment}`"
    if not (root / "release" / assignment).is_dir():
        return [f"release/{assignment}/ is missing: {fix}"]
    _say(f"check {assignment}: regenerating the release with nbgrader to compare ...")
    with tempfile.TemporaryDirectory(prefix="course-check-") as tmp:
        fresh_dir = Path(tmp) / "release"
        _generate_assignment(root, assignment, fresh_dir, use_gradebook=False)
        ignore = _ignore_patterns(root)
        expected = _files(fresh_dir / assignment, ignore)
        actual = _files(root / "release" / assignment, ignore)
        problems = []
        for rel in sorted(expected.keys() | actual.keys()):
            where = f"release/{assignment}/{rel}"
            if rel not in actual:
                problems.append(f"{where} is missing: {fix}")
            elif rel not in expected:
                problems.append(f"{where} is not generated from source/{assignment}/: remove it or {fix}")
            elif expected[rel].read_bytes() != actual[rel].read_bytes():
                hint = _first_cell_difference(expected[rel], actual[rel])
                problems.append(
                    f"{where} is stale (source changed) or edited by hand{hint}: {fix}"
                )
    return problems


def _first_cell_difference(expected: Path, actual: Path) -> str:
    """`` (first difference: cell 7, grade_id ...)`` for notebooks, else an empty string."""
    if expected.suffix != ".ipynb":
        return ""
    try:
        want, have = nbformat.read(expected, as_version=4), nbformat.read(actual, as_version=4)
    except Exception:
        return " (not a readable notebook)"
    for i, (a, b) in enumerate(zip(want.cells, have.cells, strict=False)):
        if a != b:
            return f" (first difference: cell {i}, grade_id {_grade_id(a)})"
    if len(want.cells) != len(have.cells):
        return f" ({len(have.cells)} cells instead of {len(want.cells)})"
    return " (notebook metadata or formatting differs)"


def _check_solutions(root: Path, assignment: str) -> list[str]:
    rel = f"solutions/{assignment}/{assignment}.ipynb"
    fix = f"run `course solutions {assignment}`"
    path = root / rel
    if not path.is_file():
        return [f"{rel} is missing: {fix}"]
    nb = read_notebook(path)
    stored = nb.metadata.get("course", {})
    if stored.get("generated_by") != GENERATED_BY:
        return [f"{rel} was not written by `course solutions` (no course metadata): {fix}"]
    expected = solved_notebook(assignment, root)
    recorded = expected.metadata["course"]
    problems = []
    if stored.get("source_sha256") != recorded["source_sha256"]:
        problems.append(f"{rel} is stale (source changed): {fix}")
    if stored.get("header_sha256") != recorded["header_sha256"]:
        problems.append(f"{rel} is stale (source/header.ipynb changed): {fix}")
    if stored.get("content_sha256") != cells_digest(nb.cells):
        problems.append(f"{rel} was edited by hand (its cells do not match their recorded hash): {fix}")
    if not problems:
        problems += _code_differences(expected, nb, rel, fix)
    problems += _execution_problems(nb, stored, rel, fix)
    problems += _check_solution_files(root, assignment, fix)
    return problems


def _code_differences(expected: NotebookNode, nb: NotebookNode, rel: str, fix: str) -> list[str]:
    want = [(c.cell_type, c.source) for c in expected.cells]
    have = [(c.cell_type, c.source) for c in nb.cells]
    if want == have:
        return []
    first = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), min(len(want), len(have)))
    return [f"{rel} cell {first} is not what the source generates: {fix}"]


def _execution_problems(nb: NotebookNode, stored: dict[str, Any], rel: str, fix: str) -> list[str]:
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    unexecuted = [_grade_id(c) for _, c in code if c.get("execution_count") is None]
    failed = [_grade_id(c) for _, c in code if any(o.output_type == "error" for o in c.outputs)]
    problems = []
    if unexecuted:
        problems.append(f"{rel} has {len(unexecuted)} unexecuted code cell(s) ({', '.join(unexecuted[:5])}): {fix}")
    if failed:
        problems.append(f"{rel} has error outputs in {', '.join(failed)}: fix the source, then {fix}")
    if not unexecuted and stored.get("scale") != "full":
        problems.append(f"{rel} was executed at scale {stored.get('scale')!r}, not 'full': {fix}")
    return problems


def _check_solution_files(root: Path, assignment: str, fix: str) -> list[str]:
    problems = []
    for rel, src in _extra_source_files(root, assignment).items():
        dest = root / "solutions" / assignment / rel
        if not dest.is_file() or dest.read_bytes() != src.read_bytes():
            problems.append(f"solutions/{assignment}/{rel} is missing or differs from source/{assignment}/{rel}: {fix}")
    return problems
