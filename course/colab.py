"""The release notebook's first cells: an "Open in Colab" link and a cell that installs `course`
only where it is missing, both built from the one repository URL in pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from course.errors import CourseError
from course.paths import repo_root

#: Where the URL is configured: pyproject.toml, [project.urls], this key.
URL_KEY = "Repository"
#: The branch whose release/ notebooks the Colab links open.
BRANCH_KEY = "Releases-branch"
LINK_ID, INSTALL_ID = "colab_link", "install_course"


def repository(root: Path | None = None) -> tuple[str, str]:
    """(URL, branch) from ``[project.urls]`` of the course's pyproject.toml (``root``'s, else
    that of the checkout this package runs from)."""
    path = (root or repo_root()) / "pyproject.toml"
    if not path.is_file():
        path = repo_root() / "pyproject.toml"
    try:
        urls = tomllib.loads(path.read_text())["project"].get("urls", {})
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise CourseError(f"cannot read [project.urls] from {path}: {exc}") from None
    url = str(urls.get(URL_KEY, "")).strip().removesuffix("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise CourseError(f"{path}: [project.urls] {URL_KEY} = {url!r} is not a GitHub "
                          "repository URL (https://github.com/OWNER/NAME): set it to where "
                          "you publish this course, then run `course release`")
    return url, str(urls.get(BRANCH_KEY, "main")).strip() or "main"


def colab_url(assignment: str, root: Path | None = None) -> str:
    """Colab's address of ``release/<id>/<id>.ipynb`` on the configured repository."""
    url, branch = repository(root)
    owner_name = url.removeprefix("https://github.com/")
    return (f"https://colab.research.google.com/github/{owner_name}/blob/{branch}/release/"
            f"{assignment}/{assignment}.ipynb")


def install_requirement(root: Path | None = None) -> str:
    """What pip installs: the package from the repository (the student runtime, no extras)."""
    url, branch = repository(root)
    return f"course @ git+{url}@{branch}"


def _locked(cell: NotebookNode, grade_id: str) -> NotebookNode:
    cell.id = grade_id.replace("_", "-")
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": True,
                                 "schema_version": 3, "solution": False}
    return cell


def setup_cells(assignment: str, root: Path | None = None) -> list[NotebookNode]:
    """The link (Markdown) and the install cell (plain Python, no IPython magic, so the grader
    and nbval run it as is: where `course` imports it does nothing)."""
    link = nbformat.v4.new_markdown_cell(
        f"[Open in Colab]({colab_url(assignment, root)}) · on Colab, run the next cell first: it "
        "installs the course package (once per session). On your own machine or JupyterHub "
        "with the package installed, it does nothing.")
    install = nbformat.v4.new_code_cell(
        "# Installs the course package where it is missing (Colab, a fresh environment); it\n"
        "# keeps the torch you have. Where the package is installed already, nothing happens.\n"
        "import importlib.util\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if importlib.util.find_spec("course") is None:\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",\n'
        f'                    "{install_requirement(root)}"], check=True)')
    return [_locked(link, LINK_ID), _locked(install, INSTALL_ID)]


def add_setup_cells(nb: NotebookNode, assignment: str, root: Path | None = None) -> NotebookNode:
    """``nb`` with the setup cells first (replacing any it already has)."""
    nb.cells = setup_cells(assignment, root) + [
        c for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in (LINK_ID, INSTALL_ID)]
    return nb
