"""Where things live: the repository root, the data folder, the assignment folders."""

from __future__ import annotations

import os
from pathlib import Path

from course.errors import CourseError

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The course repository (the folder holding ``source/`` and ``course/``).

    ``COURSE_ROOT`` overrides; otherwise the checkout this package was imported from, or the
    current directory when the package was installed elsewhere (e.g. on Colab).
    """
    env = os.environ.get("COURSE_ROOT")
    if env:
        return Path(env).resolve()
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists() and (candidate / "source").is_dir():
        return candidate
    return Path.cwd().resolve()


def data_dir() -> Path:
    """The data folder: ``COURSE_DATA`` if set, else ``<repo>/data``."""
    env = os.environ.get("COURSE_DATA")
    return Path(env).expanduser().resolve() if env else repo_root() / "data"


def assignment_ids(root: Path | None = None) -> list[str]:
    """Assignment ids, one per ``source/<id>/<id>.ipynb``, sorted."""
    src = (root or repo_root()) / "source"
    return sorted(p.name for p in src.iterdir() if (p / f"{p.name}.ipynb").is_file()) if src.is_dir() else []


class UnknownAssignment(CourseError):
    """Raised for an assignment id with no source notebook."""


def check_assignment(assignment: str, root: Path | None = None) -> str:
    """Return ``assignment`` if it has a source notebook, else raise ``UnknownAssignment``."""
    known = assignment_ids(root)
    if assignment not in known:
        raise UnknownAssignment(
            f"unknown assignment {assignment!r}; known: {', '.join(known) or 'none'}"
        )
    return assignment
