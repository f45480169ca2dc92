"""The course website (`course site`, course/site.py).

Built from the committed release/ and solutions/ notebooks (nothing is executed), once for
students and once with --solutions, then checked as files and in a headless Chromium that has
no network: every page of both builds, every image, link and formula.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
from browser_helpers import browser

from course import colab, site
from course.cli import main
from course.errors import CourseError
from course.paths import repo_root

ROOT = repo_root()
IDS = sorted(p.name for p in (ROOT / "release").iterdir() if p.is_dir() and p.name[0] != ".")
COURSE = site._course_title(ROOT)
REPOSITORY = colab.repository(ROOT)[0]
#: The only addresses outside the site a page may link to.
OUTSIDE = ("https://colab.research.google.com/github/"
           f"{REPOSITORY.removeprefix('https://github.com/')}/", REPOSITORY)


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def student_site(tmp_path_factory) -> tuple[Path, list[str]]:
    lines: list[str] = []
    out = tmp_path_factory.mktemp("student") / "site"
    site.build(out, solutions=False, root=ROOT, say=lines.append)
    return out, lines


@pytest.fixture(scope="module")
def solutions_site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("solutions") / "site"
    site.build(out, solutions=True, root=ROOT, say=_quiet)
    return out


def _notebook(folder: str, assignment: str):
    return nbformat.read(ROOT / folder / assignment / f"{assignment}.ipynb", as_version=4)


def _solution_lines() -> dict[str, set[str]]:
    """Per assignment, the lines of its graded solution cells (executed solutions) that no
    release notebook contains: what a student site must not show."""
    released = "\n".join(c.source for a in IDS for c in _notebook("release", a).cells)
    found: dict[str, set[str]] = {}
    for a in IDS:
        cells = [c for c in _notebook("solutions", a).cells if c.cell_type == "code"
                 and c.metadata.get("nbgrader", {}).get("solution")]
        found[a] = {line.strip() for c in cells for line in c.source.splitlines()
                    if len(line.strip()) >= 12 and line.strip() not in released}
    return found


def _text(path: Path) -> str:
    """What a reader of ``path`` sees (HTML: its text, tags and highlighting gone; a notebook:
    its cells' sources and outputs), whitespace collapsed."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(raw, "html.parser")  # code: one span per token, nothing between
        raw += "\n" + soup.get_text("") + "\n" + soup.get_text(" ")
    return " ".join(raw.split())


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


# -- the files --------------------------------------------------------------------------------
def test_student_site_has_every_assignment_and_no_solution_page(student_site):
    out, _ = student_site
    assert (out / "index.html").is_file()
    assert json.loads((out / site.MARKER).read_text())["solutions"] is False
    for a in IDS:
        assert (out / a / "index.html").is_file()
        assert (out / a / f"{a}.ipynb").read_bytes() == \
            (ROOT / "release" / a / f"{a}.ipynb").read_bytes()
    assert not list(out.rglob(site.SOLUTION_PAGE))
    assert "solution.html" not in (out / "index.html").read_text()


def test_solutions_site_has_a_solution_page_per_assignment(solutions_site):
    for a in IDS:
        page = (solutions_site / a / site.SOLUTION_PAGE).read_text()
        assert page.count("<img") >= 1, f"{a}: the executed solution's figures are missing"
        assert 'src="data:image/png;base64,' in page  # embedded, not files beside the page
    assert json.loads((solutions_site / site.MARKER).read_text())["solutions"] is True


def test_solution_animations_are_files_the_page_embeds(solutions_site):
    animated = [a for a in IDS if "data:image/gif;base64," in (
        ROOT / "solutions" / a / f"{a}.ipynb").read_text()]
    assert {"01_kmeans", "02_gradient_descent", "04_contrastive"} <= set(animated)
    for a in animated:
        page = (solutions_site / a / site.SOLUTION_PAGE).read_text()
        assert "data:image/gif" not in page, f"{a}: an animation stayed inline"
        names = re.findall(r'src="(solution-animation-\d+\.gif)"', page)
        assert names, f"{a}: the solution page shows no animation"
        for name in names:
            from PIL import Image

            with Image.open(solutions_site / a / name) as gif:
                assert gif.format == "GIF" and gif.n_frames > 3, f"{a}/{name}: not an animation"


def test_student_pages_preview_the_animations_and_no_other_output(student_site):
    """Each assignment page shows, as files, the animations its notebook plays (from the
    course's run: pictures, not code), and nothing else the solution printed or drew."""
    out, _ = student_site
    previewed = {}
    for a in IDS:
        page = (out / a / "index.html").read_text()
        assert "data:image/png" not in page and "data:image/gif" not in page, a
        tags = [t for t in re.findall(r"<img [^>]*>", page) if 'src="animation-' in t]
        previewed[a] = [(re.search(r'src="(animation-\d+\.gif)"', t).group(1),
                         re.search(r'alt="([^"]+)"', t).group(1)) for t in tags]
        for name, _ in previewed[a]:
            from PIL import Image

            with Image.open(out / a / name) as gif:
                assert gif.n_frames > 3, f"{a}/{name}: not an animation"
    assert all(previewed[a] for a in ("01_kmeans", "02_gradient_descent", "04_contrastive"))
    assert previewed["01_kmeans"][0][1].startswith("k-means with k = 5")


def test_widget_views_become_their_text_and_load_nothing(solutions_site):
    """The solutions hold live widget views (ipywidgets: sliders, tqdm's progress bars) and
    their saved state; the pages show each view's plain text instead (a slider's note, a
    bar's final state), and no widget manager from a CDN."""
    with_widgets = [a for a in IDS if site.WIDGET_VIEW in (
        ROOT / "solutions" / a / f"{a}.ipynb").read_text()]
    assert {"01_kmeans", "02_gradient_descent", "03_autoencoder"} <= set(with_widgets)
    pages = {a: (solutions_site / a / site.SOLUTION_PAGE).read_text() for a in with_widgets}
    for a, page in pages.items():
        assert "unpkg.com" not in page and "html-manager" not in page, a
        assert site.WIDGET_VIEW not in page, a
    for a in ("01_kmeans", "02_gradient_descent"):  # sliders
        assert "interactive view: run this cell in Jupyter or Colab" in pages[a], a
    # 03's training bars, as they ended (not as they were first shown, at 0 steps)
    assert "training: 100%|██████████| 1180/1180" in pages["03_autoencoder"]
    assert not re.search(r"\b0%\|", pages["03_autoencoder"])


def test_no_solution_code_in_the_student_site(student_site, solutions_site):
    out, _ = student_site
    lines = _solution_lines()
    assert all(lines.values()), "every solution notebook has lines its release lacks"
    for path in _files(out):
        text = _text(path)
        leaked = sorted(line for a in IDS for line in lines[a] if " ".join(line.split()) in text)
        assert not leaked, f"{path.relative_to(out)} shows solution code: {leaked[:5]}"
    for a in IDS:  # the same search finds every line where the solutions are meant to be
        text = _text(solutions_site / a / site.SOLUTION_PAGE)
        missing = [line for line in lines[a] if " ".join(line.split()) not in text]
        assert not missing, f"{a}: solution page lacks {missing[:3]}"


def test_index_shows_title_teaser_points_and_runtime(student_site):
    out, _ = student_site
    text = _text(out / "index.html")
    for a in IDS:
        nb = _notebook("release", a)
        title, teaser, _ = site.intro(nb, a)
        assert title in text and title.startswith("Assignment")
        first_words = " ".join(re.sub(r"[*`$]", "", teaser).split()[:6])
        assert first_words in text
        points = sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade"))
        assert f"{points:g} points" in text
        seconds = _notebook("solutions", a).metadata.get("course", {}).get("execution_s")
        assert f"runtime: {site.runtime_text(seconds)}" in text


def test_no_absolute_path_and_no_outside_address(student_site, solutions_site):
    for out in (student_site[0], solutions_site):
        for path in _files(out):
            if path.suffix not in (".html", ".css", ".ipynb", ""):
                continue
            raw = path.read_text(encoding="utf-8", errors="replace")
            for forbidden in (str(ROOT), str(out), "file://"):
                assert forbidden not in raw, f"{path.relative_to(out)} holds {forbidden}"
            if path.suffix != ".html":
                continue
            for attr in re.findall(r'(?:href|src)="([^"]*)"', raw):
                if attr.startswith(("#", "data:")):
                    continue
                if re.match(r"[a-z]+:", attr):
                    assert attr.startswith(OUTSIDE), f"{path.relative_to(out)} links to {attr}"
                    continue
                target = (path.parent / unquote(attr.split("?")[0].split("#")[0])).resolve()
                assert target.is_file(), f"{path.relative_to(out)}: {attr} is missing"
                assert target.is_relative_to(out.resolve())


def test_mathjax_is_bundled_and_small(student_site):
    out, _ = student_site
    assert (out / "mathjax" / "MathJax.js").is_file()
    assert (out / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    assert list((out / "mathjax" / "fonts").rglob("*.woff"))
    size = sum(p.stat().st_size for p in _files(out)) / 1e6
    assert size < 6, f"the student site takes {size:.1f} MB"


def test_one_progress_line_per_page(student_site):
    _, lines = student_site
    assert len(lines) == len(IDS) + 1
    assert all(line.startswith("built ") for line in lines)


# -- the introduction the index quotes --------------------------------------------------------
def test_intro_skips_the_title_and_time_lines_and_stops_at_what_you_write():
    cell = nbformat.v4.new_markdown_cell(
        "# Assignment 9: toy\n\n*Time: about 2 minutes on a laptop.*\n\nFirst idea, with a list:"
        "\n\n* one;\n* two.\n\nSecond idea, and a formula,\n\n$$\nx = 1 .\n$$\n\nThird idea."
        "\n\n**What you write.** Functions.")
    cell.metadata["nbgrader"] = {"grade_id": site.INTRO_ID}
    nb = nbformat.v4.new_notebook(cells=[cell])
    title, teaser, more = site.intro(nb, "09_toy")
    assert title == "Assignment 9: toy"
    assert teaser == "First idea, with a list:\n\n* one;\n* two.\n\nSecond idea, and a " \
                     "formula,\n\n$$\nx = 1 .\n$$"
    assert more == "Third idea."


def test_runtime_in_minutes():
    assert site.runtime_text(None) == "not measured"
    assert site.runtime_text(11.8) == "under 1 min"
    assert site.runtime_text(318) == "about 5 min"


# -- refusals ---------------------------------------------------------------------------------
@pytest.fixture
def small_course(tmp_path) -> Path:
    """A course folder with one assignment's release and solution (quick to build)."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for folder in ("release", "solutions"):
        (root / folder / IDS[0]).mkdir(parents=True)
        shutil.copy(ROOT / folder / IDS[0] / f"{IDS[0]}.ipynb", root / folder / IDS[0])
    return root


def test_an_existing_folder_that_is_not_a_site_is_refused(small_course, tmp_path, monkeypatch,
                                                           capsys):
    monkeypatch.setenv("COURSE_ROOT", str(small_course))
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    assert main(["site", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "course site: error: refusing to replace" in err
    assert "not a site built by `course site`" in err
    assert (folder / "mine.txt").read_text() == "keep me"
    with pytest.raises(CourseError, match="is a file"):
        site.build(folder / "mine.txt", root=small_course, say=_quiet)


def test_a_missing_solution_names_the_command(small_course, tmp_path, monkeypatch, capsys):
    (small_course / "solutions" / IDS[0] / f"{IDS[0]}.ipynb").unlink()
    monkeypatch.setenv("COURSE_ROOT", str(small_course))
    out = tmp_path / "out"
    assert main(["site", "--solutions", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"solutions/{IDS[0]}/{IDS[0]}.ipynb missing: run `course solutions {IDS[0]}`"
            in err)
    assert not out.exists()
    (small_course / "release" / IDS[0] / f"{IDS[0]}.ipynb").unlink()
    with pytest.raises(CourseError, match=f"run `course release {IDS[0]}`"):
        site.build(out, root=small_course, say=_quiet)


def test_a_rebuild_replaces_the_previous_one(small_course, tmp_path):
    out = tmp_path / "out"
    site.build(out, solutions=True, root=small_course, say=_quiet)
    assert (out / IDS[0] / site.SOLUTION_PAGE).is_file()
    (out / "stale.txt").write_text("from an older build")
    site.build(out, solutions=False, root=small_course, say=_quiet)
    assert not (out / "stale.txt").exists()
    assert not list(out.rglob(site.SOLUTION_PAGE))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-building-")]


# -- in a browser, offline --------------------------------------------------------------------
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.Hub) {
  done({mathjax: false, page: location.href, state: document.readyState,
        scripts: [...document.scripts].map(s => s.src).filter(Boolean)});
  return;
}
MathJax.Hub.Queue(function () {
  const scripts = [...document.querySelectorAll('script[type^="math/tex"]')];
  const frames = scripts.map(s => document.getElementById(s.id + "-Frame"));
  const prose = [...document.querySelectorAll(".jp-RenderedMarkdown, .card, .how-to")];
  const raw = prose.map(e => {
    const copy = e.cloneNode(true);
    copy.querySelectorAll("script, .MathJax, .MathJax_Display").forEach(x => x.remove());
    return copy.textContent;
  }).join(" ");
  done({mathjax: true, formulas: scripts.length,
        unrendered: frames.filter(f => !f || (f.offsetParent && f.offsetWidth === 0)).length,
        errors: document.querySelectorAll(".MathJax .merror, .MathJax .noError").length,
        font: (MathJax.OutputJax["HTML-CSS"] || {}).fontInUse || null,
        rawTeX: /\\$\\$|\\\\frac|\\\\mathbb/.test(raw),
        images: [...document.images].map(i => [i.currentSrc.slice(0, 60),
                                                i.complete && i.naturalWidth > 0]),
        links: [...document.querySelectorAll("a[href]")].map(a => [a.getAttribute("href"), a.href]),
        noAnchor: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute("href"))
          .filter(h => !document.getElementById(decodeURIComponent(h.slice(1)))),
        resources: [...document.querySelectorAll("[src], link[href]")].map(e => e.src || e.href)});
});
"""


def _open(driver, page: Path) -> dict:
    """Load ``page``, wait for it (the driver may return while it is still loading) and for
    MathJax to finish; return what WAIT_FOR_MATHJAX reports."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.as_uri())
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    return driver.execute_async_script(WAIT_FOR_MATHJAX)


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _offline_browser():
    driver = browser(["--host-resolver-rules=MAP * ~NOTFOUND"],
                     {"browser": "ALL", "performance": "ALL"})
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    driver.set_script_timeout(120)
    driver.get("about:blank")  # the network is off: a request to any host fails at once
    result = driver.execute_async_script(
        "const done = arguments[0]; fetch('http://course-site.invalid/').then("
        "() => done('fetched'), e => done('failed'))")
    log = " ".join(e["message"] for e in driver.get_log("browser"))
    assert result == "failed" and "ERR_INTERNET_DISCONNECTED" in log
    _requests(driver)  # drop what the check logged
    return driver


def _crawl(driver, out: Path, follow: str = ".html") -> dict[str, dict]:
    """Open index.html, then every page it leads to whose name ends in ``follow``; check each
    as it loads (links to other files: that they exist). Returns what each page reported, by
    its path relative to ``out``."""
    root = out.resolve()
    seen: dict[str, dict] = {}
    queue = ["index.html"]
    while queue:
        rel = queue.pop(0)
        if rel in seen:
            continue
        seen[rel] = report = _open(driver, root / rel)
        where = f"{out.name}/{rel}"
        assert driver.title, f"{where}: no title"
        assert report["mathjax"], f"{where}: MathJax did not load: {report}"
        assert report["unrendered"] == 0 and report["errors"] == 0, f"{where}: {report}"
        assert not report["rawTeX"], f"{where}: TeX left unrendered in the text"
        if report["formulas"]:
            assert report["font"] == "STIX-Web", f"{where}: math font {report['font']}"
        broken = [src for src, ok in report["images"] if not ok]
        assert not broken, f"{where}: images not loaded: {broken}"
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, f"{where}: console errors {severe}"
        outside = [u for u in _requests(driver) if not u.startswith(("file://", "data:"))]
        assert not outside, f"{where}: requested {outside}"
        for url in report["resources"]:
            if not url.startswith("data:"):
                assert Path(unquote(urlparse(url).path)).is_file(), f"{where}: {url} missing"
        assert not report["noAnchor"], f"{where}: no anchor for {report['noAnchor']}"
        for raw, resolved in report["links"]:
            if raw.startswith("#"):
                continue
            if not resolved.startswith("file://"):
                assert resolved.startswith(OUTSIDE), f"{where}: links outside to {resolved}"
                continue
            target = Path(unquote(urlparse(resolved).path))
            assert target.is_file() and target.is_relative_to(root), f"{where}: {raw} missing"
            if target.name.endswith(follow):
                queue.append(target.relative_to(root).as_posix())
    return seen


def _screenshot(driver, path: Path) -> None:
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    path.write_bytes(base64.b64decode(shot["data"]))
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, f"{path.name} looks blank"


@pytest.mark.extended
def test_every_page_in_a_browser_without_network(student_site, solutions_site, tmp_path):
    driver = _offline_browser()
    try:
        start = time.perf_counter()
        out = student_site[0]
        seen = _crawl(driver, out)
        expected = {p.relative_to(out).as_posix() for p in out.rglob("*.html")
                    if not p.is_relative_to(out / "mathjax")}
        assert set(seen) == expected, f"pages no link leads to: {expected - set(seen)}"
        assert seen["index.html"]["formulas"] > 0  # the introductions quote math
        for a in IDS:
            assert seen[f"{a}/index.html"]["formulas"] > 0
        # The solutions build: its index and solution pages (its student pages are the ones
        # above with one more link, checked to exist).
        seen = _crawl(driver, solutions_site, follow=site.SOLUTION_PAGE)
        assert set(seen) == {"index.html"} | {f"{a}/{site.SOLUTION_PAGE}" for a in IDS}
        for a in IDS:
            assert len(seen[f"{a}/{site.SOLUTION_PAGE}"]["images"]) > 0
        _open(driver, student_site[0] / "index.html")
        assert driver.title == f"{COURSE}: assignments"
        _screenshot(driver, tmp_path / "index.png")
        _open(driver, student_site[0] / IDS[-1] / "index.html")
        title = site.intro(_notebook("release", IDS[-1]), IDS[-1])[0]
        assert driver.title == f"{title} · {COURSE}"
        colab_links = driver.execute_script(
            "return [...document.querySelectorAll('a')].map(a => a.href)"
            ".filter(h => h.startsWith('https://colab.research.google.com/'))")
        assert colab.colab_url(IDS[-1], ROOT) in colab_links
        _screenshot(driver, tmp_path / "assignment.png")
        print(f"browser checks: {time.perf_counter() - start:.1f} s; screenshots in {tmp_path}")
    finally:
        driver.quit()
