"""The wheel students install: only what the notebooks import, with ranges, no instructor tools.

Builds the wheel from this checkout (no network, no build isolation) and reads its metadata.
"""

from __future__ import annotations

import ast
import email
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from course.data import TOY_NAMES
from course.paths import assignment_ids, data_dir, repo_root

ROOT = repo_root()
#: What a notebook's `import x` needs installed (the course package itself and the standard
#: library aside): the distribution that provides it.
PROVIDER = {"torch": "torch", "matplotlib": "matplotlib", "numpy": "numpy", "tqdm": "tqdm",
            "sklearn": "scikit-learn", "scipy": "scikit-learn", "openTSNE": "opentsne",
            "ipywidgets": "ipywidgets", "IPython": "ipython"}
#: The student runtime: nothing else may be a plain (extra-free) dependency.
RUNTIME = {"torch", "numpy", "scikit-learn", "matplotlib", "tqdm", "opentsne", "ipywidgets",
           "ipython"}
INSTRUCTOR_ONLY = {"nbgrader", "jupyterlab", "ipykernel", "nbformat", "nbclient", "pytest"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out), str(ROOT)], check=True, timeout=300)
    (path,) = out.glob("course-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel_files(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def requirements(wheel) -> dict[str | None, list[Requirement]]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.message_from_bytes(zf.read(meta))
    by_extra: dict[str | None, list[Requirement]] = {}
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        extra = None
        if req.marker is not None:
            found = re.search(r'extra == "([^"]+)"', str(req.marker))
            extra = found.group(1) if found else None
        by_extra.setdefault(extra, []).append(req)
    return by_extra


def names(reqs: list[Requirement]) -> set[str]:
    return {r.name.lower() for r in reqs}


def test_the_student_runtime_is_only_what_notebooks_need_with_ranges(requirements):
    base = requirements[None]
    assert names(base) == RUNTIME, names(base) ^ RUNTIME
    pinned = [str(r) for r in base if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"pinned student dependencies replace what Colab ships: {pinned}"
    assert all(r.specifier for r in base), "every runtime dependency has a lower bound"


def test_instructor_tools_and_pins_are_extras(requirements):
    instructor, dev = names(requirements["instructor"]), names(requirements["dev"])
    assert INSTRUCTOR_ONLY <= instructor
    assert RUNTIME <= instructor  # pinned for instructors
    assert instructor <= dev  # make installs dev: everything an instructor has
    assert names(requirements["grader"]) == {"pytest"}
    for extra in ("instructor", "dev"):
        loose = [str(r) for r in requirements[extra] if not any(
            s.operator == "==" for s in r.specifier)]
        assert not loose, f"{extra}: every version pinned, got {loose}"


def test_the_wheel_ships_the_toy_data(wheel_files):
    assert {f"course/datasets/{n}.npz" for n in TOY_NAMES} <= set(wheel_files)


def test_the_locked_versions_satisfy_the_student_ranges(requirements):
    locked = dict(line.strip().split("==", 1) for line in
                  (ROOT / "requirements.lock").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    locked = {k.lower(): v for k, v in locked.items()}
    for req in requirements[None]:
        assert req.name.lower() in locked, req.name
        assert req.specifier.contains(locked[req.name.lower()]), (str(req), locked[req.name.lower()])


def test_every_module_the_notebooks_import_is_in_the_runtime():
    for nb_path in sorted((ROOT / "source").glob("*/*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            try:
                tree = ast.parse(src)
            except SyntaxError:  # a cell with notebook magics
                continue
            for node in ast.walk(tree):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                for mod in mods:
                    top = mod.split(".")[0]
                    if top == "course" or top in sys.stdlib_module_names:
                        continue
                    assert PROVIDER.get(top) in RUNTIME, (
                        f"{nb_path.name} imports {top}, which the student runtime does not "
                        "install")


# -- a student's install, for real --------------------------------------------------------------
#: The assignment run from the fresh install: it loads only the toy data shipped in the package.
FRESH_ASSIGNMENT = "02_gradient_descent"


def _fresh_assignments() -> list[str]:
    """02 by default; ``COURSE_FRESH_ASSIGNMENTS=all`` (or a comma-separated list) runs more
    from the same fresh install, the MNIST ones from the staged data (about 5 minutes for all
    five at ci scale: too long for every run of the suite)."""
    chosen = os.environ.get("COURSE_FRESH_ASSIGNMENTS", FRESH_ASSIGNMENT)
    if chosen.strip() == "all":
        return assignment_ids(ROOT)
    return [a.strip() for a in chosen.split(",") if a.strip()]


def _preinstalled_torch(folder) -> None:
    """Link torch and what it needs (from this venv) into ``folder``: Colab's situation, a
    torch that is there before the course is installed (and that must stay)."""
    import importlib.metadata as md

    todo, seen = ["torch"], set()
    while todo:
        dist = md.distribution(todo.pop())
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        base = dist.locate_file("")
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)


def _filled_release(assignment: str) -> dict:
    """The release notebook with every solution cell replaced by the reference's: what a
    student who got everything right hands in (the setup cells included)."""
    from course.grading.notebook import grade_id, nbgrader_meta, read_notebook
    from course.submissions import reference_submission, release_path

    solved = {grade_id(c): c["source"] for c in reference_submission(assignment)["cells"]}
    nb = read_notebook(release_path(assignment))
    for cell in nb["cells"]:
        if nbgrader_meta(cell).get("solution"):
            cell["source"] = solved[grade_id(cell)]
    return nb


@pytest.mark.extended
def test_a_fresh_install_runs_a_filled_release_from_an_empty_folder(wheel, tmp_path):
    """`pip install` of the wheel, no extras, into a fresh venv that already has a torch (as
    Colab has): pip adds the rest from the package index, keeps that torch, installs no
    instructor tool; the release of 02, filled with the solution, runs as a plain script in an
    empty folder outside the repository (its install cell finds the package and does nothing;
    its toy data comes from the package)."""
    from course.grading.notebook import source_of, to_python

    venv, pre, empty, home = (tmp_path / n for n in ("venv", "preinstalled", "empty", "home"))
    for folder in (pre, empty, home):
        folder.mkdir()
    _preinstalled_torch(pre)
    base_python = getattr(sys, "_base_executable", sys.executable)  # not this venv's
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "colab.pth").write_text(f"{pre}\n")
    # a clean environment (HOME empty: no user cache, no user config) but the machine's own
    # pip settings, which say where the package index is
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_CERT"))}}
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    installed = {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in json.loads(listed)}
    assert RUNTIME <= set(installed)
    assert not INSTRUCTOR_ONLY & set(installed), sorted(INSTRUCTOR_ONLY & set(installed))
    import torch

    assert installed["torch"] == torch.__version__  # the torch that was there is kept
    where = subprocess.run([str(py), "-c", "import torch; print(torch.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(pre)), where

    for assignment in _fresh_assignments():
        folder = empty / assignment
        folder.mkdir()
        script = "\n\n".join(to_python(source_of(c)) for c in _filled_release(assignment)["cells"]
                             if c.get("cell_type") == "code")
        run = tmp_path / f"{assignment}.py"
        run.write_text(script)
        # MNIST comes from the staged copy (the notebook would download it into the per-user
        # cache; the tests have no network); 02's toy data from the package
        extra = {} if assignment == FRESH_ASSIGNMENT else {"COURSE_DATA": str(data_dir())}
        proc = subprocess.run([str(py), "-I", str(run)], cwd=folder, capture_output=True,
                              text=True, timeout=1800,
                              env={**env, "MPLBACKEND": "Agg", "COURSE_SCALE": "ci", **extra})
        assert proc.returncode == 0, f"{assignment}: {proc.stderr[-3000:]}"
        # nothing written where the notebook ran but its animations (course.interactive
        # saves each to ./figures, as the notebook says): no data staged, no cache
        written = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        assert all(re.fullmatch(rf"figures/{assignment[:3]}\w+\.gif", w) for w in written), written
        if assignment == FRESH_ASSIGNMENT:
            assert "test accuracy" in proc.stdout
            assert written == ["figures/02_moons_boundary.gif"], written
