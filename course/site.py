"""Build the course website: an index of the assignments and one HTML page per notebook.

``course site`` writes a static site (default ``site/`` in the repository) that works from
``file://`` and from any static host, without the network:

* ``index.html``: one card per assignment (the folders of ``release/``) with what it teaches
  (the opening paragraphs of its ``md_intro`` cell), its points, and how long its solution took
  to run at full scale;
* ``<id>/index.html``: the release notebook rendered by nbconvert (JupyterLab template), with
  its "Open in Colab" link and, as ``animation-<n>.gif`` files, the animations its experiment
  cells play in the course's run; ``<id>/<id>.ipynb``, a copy to download;
* ``<id>/solution.html``: the executed solution with its figures, only with ``--solutions``
  (its animations as ``solution-animation-<n>.gif`` files beside it);
  without it nothing else of the solutions goes in (the index reads their run time);
* ``mathjax/``: the part of MathJax 2 the pages use, copied from the ``jupyter-server-mathjax``
  package, so math renders offline; ``assets/``: the shared style sheets.

A build goes to a temporary folder beside the target and replaces it only when complete. The
target is replaced only if it is empty or a previous build (it holds the ``.course-site``
marker); any other folder is refused.
"""

from __future__ import annotations

import base64
import html as htmllib
import importlib.util
import json
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from course import colab
from course.errors import CourseError
from course.generate import WIDGET_VIEW
from course.generate import read_notebook as _read
from course.paths import PACKAGE_DIR, assignment_ids, repo_root

TEMPLATES = PACKAGE_DIR / "site_templates"
MARKER = ".course-site"
INTRO_ID = "md_intro"
SOLUTION_PAGE = "solution.html"
TEASER_PARAGRAPHS = 2  # of the introduction, on the index; the rest folds away

#: The combined MathJax 2 configuration the pages load: TeX and MathML input, HTML-CSS output
#: (the only output ``jupyter-server-mathjax`` ships), and the Safe extension (no links or
#: styles from the math).
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
#: What the site needs of the MathJax package, relative to its ``static/`` folder. Left out:
#: the SVG output (2.9 MB), translations (2.1 MB) and the accessibility extensions (3.7 MB),
#: which only MathJax's right-click menu would load; the menu items that lead there are hidden.
MATHJAX_PARTS = ("MathJax.js", "LICENSE", "config", "extensions", "jax/input", "jax/element",
                 "jax/output/HTML-CSS", "fonts/HTML-CSS/STIX-Web/woff")
MATHJAX_SKIP = ("a11y",)
#: MathJax settings for a bundled copy served from anywhere, ``file://`` included: use the STIX
#: web fonts it ships (it would look for the TeX ones first); hide the menu items that need
#: files left out; and give the fonts it declares but does not ship (a blank test font at
#: ``about:blank``, which ``file://`` pages may not load, and the TeX fonts of the hidden MathML
#: kept for screen readers) local sources only, so the browser never requests a missing file.
_NATIVE_FONTS = (("Caligraphic", "Regular"), ("Caligraphic", "Bold"), ("AMS", "Regular"),
                 ("Script", "Regular"), ("Fraktur", "Regular"), ("Fraktur", "Bold"))
MATHJAX_SETTINGS = "MathJax.Hub.Config(" + json.dumps({
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web",
                 "imageFont": None,
                 "styles": {"@font-face": {"font-family": "MathJax_Blank",
                                           "src": "local('MathJax_Blank')"}}},
    "NativeMML": {"styles": {
        f"@font-face /*{i}*/": {"font-family": f"MathJax_{name}-WEB",
                                **({"font-weight": "bold"} if weight == "Bold" else {}),
                                "src": f"local('MathJax_{name}-{weight}')"}
        for i, (name, weight) in enumerate(_NATIVE_FONTS, start=1)}},
    "MathMenu": {"showRenderer": False, "showLocale": False},
}) + ");"


@dataclass(frozen=True)
class Assignment:
    """What the index shows of one assignment."""

    id: str
    title: str
    teaser: str  # HTML: the first paragraphs of the introduction (with the lists they announce)
    more: str  # HTML: the rest of the introduction, before "What you write"
    points: str
    runtime: str
    colab: str


@dataclass(frozen=True)
class Site:
    """A finished build."""

    index: Path
    pages: int
    size_bytes: int
    seconds: float
    solutions: bool


def build(out: Path | str | None = None, solutions: bool = False, root: Path | str | None = None,
          say: Callable[[str], None] = print) -> Site:
    """Write the website to ``out`` (default ``<root>/site``) and return what was built.

    Every notebook is checked before anything is written: a missing one raises ``CourseError``
    naming the file and the command that makes it. ``say`` gets one line per page built.
    """
    start = time.perf_counter()
    root = Path(root).resolve() if root is not None else repo_root()
    out = Path(out).resolve() if out is not None else root / "site"
    ids = _assignment_ids(root)
    notebooks = {a: _need(root, "release", a, f"course release {a}") for a in ids}
    solved = {a: _need(root, "solutions", a, f"course solutions {a}")
              for a in ids} if solutions else {}
    mathjax = _mathjax_source()
    _check_target(out)
    assignments = [_describe(root, a, notebooks[a]) for a in ids]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-building-", dir=out.parent))
    try:
        exporter = _exporter()
        _copy_mathjax(mathjax, tmp / "mathjax")
        _write_assets(exporter, tmp / "assets")
        course, repository = _course_title(root), colab.repository(root)[0]
        for a in assignments:
            for page, source in _assignment_pages(exporter, a, tmp / a.id, notebooks[a.id],
                                                  solved.get(a.id), course):
                say(f"built {_shown(out / a.id / page)} from {source}")
        _write_index(tmp / "index.html", assignments, course=course, repository=repository,
                     install=colab.install_requirement(root), solutions=solutions)
        say(f"built {_shown(out / 'index.html')}")
        (tmp / MARKER).write_text(json.dumps(
            {"generated_by": "course site", "solutions": solutions}) + "\n")
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep a web server out
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Site(index=out / "index.html", pages=len(ids) * (2 if solutions else 1) + 1,
                size_bytes=size, seconds=time.perf_counter() - start, solutions=solutions)


# --- inputs --------------------------------------------------------------------------------


def _assignment_ids(root: Path) -> list[str]:
    """The folders of ``release/``, and any assignment with a source but no release yet (so a
    missing release is reported rather than silently left out)."""
    release = root / "release"
    found = {p.name for p in release.iterdir() if p.is_dir() and not p.name.startswith(".")} \
        if release.is_dir() else set()
    found.update(assignment_ids(root))
    if not found:
        raise CourseError("no assignments under release/: run `course release`")
    return sorted(found)


def _need(root: Path, folder: str, assignment: str, command: str) -> Path:
    path = root / folder / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        raise CourseError(f"{folder}/{assignment}/{assignment}.ipynb missing: run `{command}`")
    return path


def _mathjax_source() -> Path:
    """The ``static/`` folder of the installed ``jupyter-server-mathjax`` (found, not imported:
    importing it would start loading Jupyter Server)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        static = Path(folder) / "static"
        if (static / "MathJax.js").is_file():
            return static
    raise CourseError("MathJax is missing: install the instructor tools (`make venv`, or "
                      "pip install 'course[instructor]'), which include jupyter-server-mathjax")


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise CourseError(f"{out} is a file, not a folder: choose another --out")
    if (out / MARKER).is_file() or not any(out.iterdir()):
        return
    raise CourseError(f"refusing to replace {out}: it is not a site built by `course site` (no "
                      f"{MARKER} marker in it); choose another --out, or remove it yourself")


# --- the index -----------------------------------------------------------------------------


def _describe(root: Path, assignment: str, notebook: Path) -> Assignment:
    nb = _read(notebook)
    title, teaser, more = intro(nb, assignment)
    points = sum(float(c.metadata.get("nbgrader", {}).get("points", 0)) for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade"))
    return Assignment(id=assignment, title=title, teaser=_markdown(teaser), more=_markdown(more),
                      points=f"{points:g}", runtime=runtime_text(_execution_s(root, assignment)),
                      colab=colab.colab_url(assignment, root))


def intro(nb: NotebookNode, assignment: str) -> tuple[str, str, str]:
    """(title, teaser, more) from the notebook's ``md_intro`` cell, as Markdown.

    The title is its first heading. The teaser is the first two paragraphs after it (the
    ``*Time: ...*`` line skipped), each with the list or equation that finishes its sentence;
    ``more`` is the rest, up to the first run-in heading such as ``**What you write.**`` or a
    Markdown heading.
    """
    cells = [c for c in nb.cells if c.cell_type == "markdown"
             and c.metadata.get("nbgrader", {}).get("grade_id") == INTRO_ID]
    if not cells:
        raise CourseError(f"release/{assignment}/{assignment}.ipynb has no Markdown cell with "
                          f"grade id {INTRO_ID!r} (the introduction the index quotes)")
    blocks = [b.strip() for b in re.split(r"\n[ \t]*\n", cells[0].source) if b.strip()]
    title = assignment
    if blocks and blocks[0].startswith("#"):
        title = blocks[0].splitlines()[0].lstrip("#").strip()
        rest = "\n".join(blocks[0].splitlines()[1:]).strip()
        blocks = ([rest] if rest else []) + blocks[1:]
    kept: list[str] = []
    for block in blocks:
        if re.match(r"\*Time:", block):
            continue
        if block.startswith("#") or re.match(r"\*\*[^*]+[.:]\*\*", block):
            break
        kept.append(block)
    n = 0  # blocks in the teaser
    for _ in range(TEASER_PARAGRAPHS):
        if n == len(kept):
            break
        n += 1
        while n < len(kept) and not _ends_sentence(kept[n - 1]):
            n += 1
    return title, "\n\n".join(kept[:n]), "\n\n".join(kept[n:])


def _ends_sentence(block: str) -> bool:
    """Whether a Markdown block ends a sentence (a display equation by its last character
    inside the ``$$``); a paragraph ending in a colon or comma goes on in the next block."""
    text = block.strip().removesuffix("$$").rstrip()
    return bool(re.search(r"[.!?][*_)\"']*$", text))


def runtime_text(seconds: float | None) -> str:
    """A solution's run time in minutes, as the index shows it."""
    if seconds is None:
        return "not measured"
    minutes = seconds / 60
    return "under 1 min" if minutes < 1 else f"about {round(minutes)} min"


def _execution_s(root: Path, assignment: str) -> float | None:
    """``metadata.course.execution_s`` of the executed solution, if it exists and has one."""
    path = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        return None
    value = _read(path).metadata.get("course", {}).get("execution_s")
    return float(value) if isinstance(value, int | float) else None


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text) if text else ""


def _course_title(root: Path) -> str:
    """The course's name: ``[project] description`` of pyproject.toml, up to its colon."""
    try:
        description = tomllib.loads((root / "pyproject.toml").read_text())["project"]["description"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "Course assignments"
    return str(description).split(":")[0].strip() or "Course assignments"


def _write_index(path: Path, assignments: list[Assignment], **context: Any) -> None:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    total = sum(float(a.points) for a in assignments)
    html = env.get_template("index.html.j2").render(
        assignments=assignments, total_points=f"{total:g}", mathjax_settings=MATHJAX_SETTINGS,
        mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}", **context)
    path.write_text(html, encoding="utf-8")


# --- the notebook pages --------------------------------------------------------------------


def _exporter() -> Any:
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", theme="light", template_file="page.html.j2",
                        extra_template_paths=[str(TEMPLATES)],
                        mathjax_url=f"../mathjax/MathJax.js?config={MATHJAX_CONFIG}")


def _assignment_pages(exporter: Any, a: Assignment, folder: Path, notebook: Path,
                      solution: Path | None, course: str) -> list[tuple[str, str]]:
    """Write ``folder``: the release page, the notebook to download and, given ``solution``,
    the solution page. Return (page, notebook it came from) for each page."""
    folder.mkdir()
    shutil.copy2(notebook, folder / notebook.name)
    links = [{"href": notebook.name, "text": f"Download {notebook.name}", "download": True},
             {"href": a.colab, "text": "Open in Colab"}]
    if solution:
        links.append({"href": SOLUTION_PAGE, "text": "Solution", "kind": "solution"})
    shown = []
    for n, (gif, alt) in enumerate(_experiment_animations(_root_of(notebook), a.id), start=1):
        (folder / f"animation-{n}.gif").write_bytes(gif)
        shown.append({"src": f"animation-{n}.gif", "alt": alt})
    _render(exporter, notebook, folder / "index.html", a.title, course, links,
            animations=shown)
    pages = [("index.html", f"release/{a.id}/{notebook.name}")]
    if solution:
        _render(exporter, solution, folder / SOLUTION_PAGE, f"{a.title} (solution)", course,
                [{"href": "index.html", "text": "The assignment (student version)"}],
                banner="The reference solution, executed at full scale: for instructors and "
                       "teaching assistants, not for students.")
        pages.append((SOLUTION_PAGE, f"solutions/{a.id}/{solution.name}"))
    return pages


def _render(exporter: Any, notebook: Path, target: Path, heading: str, course: str,
            links: list[dict[str, Any]], banner: str = "",
            animations: list[dict[str, str]] | None = None) -> None:
    resources = {"metadata": {"name": f"{heading} · {course}"},
                 "course_site": {"up": "../", "heading": heading, "links": links,
                                 "banner": banner, "mathjax_settings": MATHJAX_SETTINGS,
                                 "animations": animations or []}}
    html, _ = exporter.from_notebook_node(_without_widgets(_read(notebook)), resources=resources)
    target.write_text(_animations_to_files(html, target), encoding="utf-8")


def _without_widgets(nb: NotebookNode) -> NotebookNode:
    """Drop saved widget state and widget views: with them nbconvert loads the widget manager
    from a CDN (a request the offline page must not make) to show sliders with no kernel
    behind them. The output's plain-text fallback stays (course.interactive says there what a
    live notebook shows, next to the static figure drawn before it; a progress bar's is its
    final text, see course.generate.settle_progress_bars)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    return nb


def _root_of(release_notebook: Path) -> Path:
    """The repository a ``release/<id>/<id>.ipynb`` belongs to."""
    return release_notebook.parents[2]


def _experiment_animations(root: Path, assignment: str) -> list[tuple[bytes, str]]:
    """(GIF, caption) of each animation the executed solution's *experiment* cells show.

    The student page shows them as a preview of what the notebook plays once the student's
    functions work: pictures of the course's own run, never code or printed numbers (the
    solution's figures, tables and code stay on the solution page)."""
    from course.grading.notebook import is_experiment

    path = root / "solutions" / assignment / f"{assignment}.ipynb"
    if not path.is_file():
        return []
    found = []
    heading = ""  # the first line of the Markdown cell before: what the animation is about
    for cell in _read(path).cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            first = cell.source.strip().split("\n\n")[0].lstrip("#").strip()
            heading = re.split(r"(?<=[.?!])\s", " ".join(first.split()))[0]
        if cell.cell_type != "code" or not is_experiment(cell):
            continue
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            for tag in re.findall(r"<img [^>]*>", html if isinstance(html, str) else "".join(html)):
                gif = _INLINE_GIF.search(tag)
                if gif:
                    alt = re.search(r'alt="([^"]*)"', tag)
                    caption = htmllib.unescape(alt.group(1)) if alt else ""
                    if " " not in caption:  # a file name, not a caption
                        caption = heading or "animation"
                    found.append((base64.b64decode(gif.group(1)), caption))
    return found


#: An animation a notebook shows inline (course.interactive): a GIF in a data URI.
_INLINE_GIF = re.compile(r'src="data:image/gif;base64,([A-Za-z0-9+/=\s]+)"')


def _animations_to_files(html: str, page: Path) -> str:
    """Write each inline GIF of ``html`` beside ``page`` (``<page>-animation-<n>.gif``) and
    point its ``<img>`` there: the page stays small and each animation is a file of its own."""
    count = 0

    def to_file(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        name = f"{page.stem}-animation-{count}.gif"
        (page.parent / name).write_bytes(base64.b64decode(match.group(1)))
        return f'src="{name}"'

    return _INLINE_GIF.sub(to_file, html)


def _write_assets(exporter: Any, folder: Path) -> None:
    """``notebook.css`` (nbconvert's JupyterLab styles, once for all pages) and ``site.css``."""
    folder.mkdir()
    env = exporter.environment
    css = [env.loader.get_source(env, name)[0]
           for name in ("static/index.css", "static/theme-light.css")]
    (folder / "notebook.css").write_text("\n".join(css), encoding="utf-8")
    shutil.copy2(TEMPLATES / "site.css", folder / "site.css")


def _copy_mathjax(static: Path, target: Path) -> None:
    for part in MATHJAX_PARTS:
        source = static / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns(*MATHJAX_SKIP))
        elif source.is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)
        else:
            raise CourseError(f"{source} missing: reinstall jupyter-server-mathjax "
                              "(`make venv`)")


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

