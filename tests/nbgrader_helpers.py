"""Running nbgrader as an instructor does: by path, the venv not activated, in a course folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from course.paths import repo_root

ROOT = repo_root()
BIN = Path(sys.executable).parent


def inactive_env() -> dict[str, str]:
    """The environment of a shell where the venv is not activated (none of it on PATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH="/usr/bin:/bin", JUPYTER_NO_CONFIG="1")
    return env


def new_course(root: Path) -> Path:
    """A course folder: this repository's nbgrader_config.py, its source/ linked."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source").symlink_to(ROOT / "source")
    return root


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`.venv/bin/nbgrader ARGS` in the course folder ``root``, venv inactive."""
    env = inactive_env()
    if (root / ".git").is_dir():  # a clone: its own code, this repository's MNIST
        env.update(PYTHONPATH=str(root), COURSE_DATA=str(ROOT / "data"))
    proc = subprocess.run([str(BIN / "nbgrader"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return proc
