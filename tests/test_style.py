"""The code is ruff clean (the configuration is in pyproject.toml)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course.paths import repo_root


def test_ruff_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    proc = subprocess.run([ruff, "check", "course", "autograder", "tests"], cwd=repo_root(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_make_target_the_readme_names_exists():
    """A reader who types a `make X` from the README finds target X in the Makefile."""
    root = repo_root()
    targets = set(re.findall(r"^([a-z][a-z-]*):", (root / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]*)", (root / "README.md").read_text()))
    assert named, "the README names no make target: is this test still reading it?"
    assert named <= targets, f"the README names make targets the Makefile lacks: {named - targets}"
