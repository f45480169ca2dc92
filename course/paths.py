"""Where things live: the repository root, the data folder, the assignment folders."""

from __future__ import annotations

import os
import sys
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
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd().resolve()


def user_cache_dir() -> Path:
    """This user's cache folder for the course: ``~/Library/Caches/course`` on macOS,
    ``%LOCALAPPDATA%\\course`` on Windows, ``$XDG_CACHE_HOME/course`` (``~/.cache/course``)
    elsewhere."""
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "course"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "course"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "course"


def data_dir() -> Path:
    """The data folder: ``COURSE_DATA`` if set; ``<repo>/data`` in a course checkout (this
    package's own, or ``COURSE_ROOT``); else (a pip-installed package: Colab, a laptop) the
    per-user cache, so MNIST is downloaded once per user, not once per folder a notebook runs in."""
    env = os.environ.get("COURSE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if os.environ.get("COURSE_ROOT") or (PACKAGE_DIR.parent / "pyproject.toml").exists():
        return repo_root() / "data"
    return user_cache_dir() / "data"


def assignment_ids(root: Path | None = None) -> list[str]:
    """Assignment ids, one per ``source/<id>/<id>.ipynb`` (or ``release/<id>/<id>.ipynb`` in a
    grading bundle, which ships no source), sorted."""
    base = root or repo_root()
    ids: set[str] = set()
    for folder in ("source", "release"):
        d = base / folder
        if d.is_dir():
            ids.update(p.name for p in d.iterdir() if (p / f"{p.name}.ipynb").is_file())
    return sorted(ids)


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
