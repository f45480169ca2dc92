"""Every solution notebook executes without errors at ``ci`` scale (``pytest --nbval-lax``).

Each notebook runs in its own pytest subprocess, from its own folder (as `course solutions`
runs it), with a kernel of this interpreter. ``--nbval-lax`` fails on errors only; outputs are
not compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from course.paths import data_dir

REPO = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 600
NOTEBOOK_TIMEOUT_S = 1800


def _solution_notebooks() -> list[Path]:
    """``solutions/<id>/<id>.ipynb`` for every generated assignment."""
    folder = REPO / "solutions"
    if not folder.is_dir():
        return []
    return sorted(p / f"{p.name}.ipynb" for p in folder.iterdir() if (p / f"{p.name}.ipynb").is_file())


def _params() -> list:
    found = _solution_notebooks()
    if not found:
        return [pytest.param(None, id="none", marks=pytest.mark.skip(
            reason="no solutions/<id>/<id>.ipynb yet: run `course solutions`"))]
    return [pytest.param(p, id=p.stem) for p in found]


def mnist_staged(root: Path | None = None) -> bool:
    """Whether the MNIST test images are staged (decompressed) in the data folder."""
    return ((root or data_dir()) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def _needs_mnist(notebook: Path) -> bool:
    return "mnist" in notebook.read_text(encoding="utf-8").lower()


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", _params())
def test_solution_notebook_runs_at_ci_scale(notebook: Path) -> None:
    if _needs_mnist(notebook) and not mnist_staged():
        pytest.skip(
            f"MNIST is not staged in {data_dir() / 'MNIST' / 'raw'}: run "
            "`course data fetch mnist` (or `--from DIR` with a folder of the four .gz files)"
        )
    try:
        proc = run_nbval(notebook)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{notebook.name} did not finish in {NOTEBOOK_TIMEOUT_S} s: {exc.stdout!s:.2000}")
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"{notebook} failed under nbval:\n{tail}"


def run_nbval(notebook: Path) -> subprocess.CompletedProcess[str]:
    """``pytest --nbval-lax`` on one notebook, from its folder, at ``ci`` scale."""
    env = {**os.environ, "COURSE_SCALE": "ci", "MPLBACKEND": "Agg", "COURSE_ROOT": str(REPO),
           # animations of a ci run must not land beside (or replace) the solutions' own
           "COURSE_FIGURES_DIR": tempfile.mkdtemp(prefix=f"course-figures-{notebook.stem}-")}
    cmd = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        f"--nbval-cell-timeout={CELL_TIMEOUT_S}", "-p", "no:cacheprovider", "-q",
        "--rootdir", str(notebook.parent), notebook.name,
    ]
    return subprocess.run(cmd, cwd=notebook.parent, env=env, capture_output=True, text=True,
                          timeout=NOTEBOOK_TIMEOUT_S)


@pytest.mark.notebook
def test_the_runner_fails_on_a_failing_cell(tmp_path: Path) -> None:
    """The check above can fail: a notebook whose cell raises is reported, at ci scale."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell("import os\nassert os.environ['COURSE_SCALE'] == 'ci'"),
             new_code_cell("raise ValueError('boom')")]
    notebook = tmp_path / "broken.ipynb"
    nbformat.write(new_notebook(cells=cells), notebook)
    proc = run_nbval(notebook)
    assert proc.returncode != 0
    assert "1 failed, 1 passed" in proc.stdout
