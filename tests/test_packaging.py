"""The wheel students install: only what the notebooks import, with ranges, no instructor tools.

Builds the wheel from this checkout (no network, no build isolation) and reads its metadata.
"""

from __future__ import annotations

import ast
import email
import json
import re
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement

from course.data import TOY_NAMES
from course.paths import repo_root

ROOT = repo_root()
#: What a notebook's `import x` needs installed (the course package itself and the standard
#: library aside): the distribution that provides it.
PROVIDER = {"torch": "torch", "matplotlib": "matplotlib", "numpy": "numpy", "tqdm": "tqdm",
            "sklearn": "scikit-learn", "scipy": "scikit-learn", "openTSNE": "opentsne"}
#: The student runtime: nothing else may be a plain (extra-free) dependency.
RUNTIME = {"torch", "numpy", "scikit-learn", "matplotlib", "tqdm", "opentsne"}
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
