"""The code is ruff clean (the configuration is in pyproject.toml)."""

from __future__ import annotations

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
