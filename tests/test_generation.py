"""release/ and solutions/ are exactly what the generators make from source/.

The first part works on a copy of a tiny fixture course (tests/fixtures/generation/) with the
repository's own nbgrader_config.py and source/header.ipynb; the second part checks the real
repository (skipped, with the reason, until its first assignment is written and generated).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course import generate
from course.errors import CourseError

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "generation"
FX = "fixture"  # the fixture assignment id
SOLUTION_LINE = "total = a * a + b * b"  # only in the fixture's solution region
LEAKS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def _new_course(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    shutil.copy(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copy(REPO / "source" / "header.ipynb", dest / "source" / "header.ipynb")
    return dest


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture course with its release and executed solutions generated once."""
    root = _new_course(tmp_path_factory.mktemp("gen") / "course")
    generate.release(FX, root=root)
    generate.solutions(FX, root=root)
    return root


@pytest.fixture
def course(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the generated fixture course, to damage freely."""
    return Path(shutil.copytree(generated, tmp_path / "course"))


def _release_nb(root: Path) -> nbformat.NotebookNode:
    return nbformat.read(root / "release" / FX / f"{FX}.ipynb", as_version=4)


def _solution_path(root: Path) -> Path:
    return root / "solutions" / FX / f"{FX}.ipynb"


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# --- release (fixture) ---------------------------------------------------------------------


def test_release_replaces_the_solution_with_the_stub(generated: Path) -> None:
    source = _cell(_release_nb(generated), "add_squares").source
    assert "# your code here" in source
    assert "raise NotImplementedError" in source
    assert source.startswith("def add_squares(a, b):")  # the signature around the region stays


def test_release_has_no_solution_or_hidden_test_text(generated: Path) -> None:
    text = (generated / "release" / FX / f"{FX}.ipynb").read_text(encoding="utf-8")
    for leak in (*LEAKS, SOLUTION_LINE):
        assert leak not in text


def test_release_starts_with_the_header(generated: Path) -> None:
    """After the two setup cells (the next test's), the header."""
    nb = _release_nb(generated)
    header = nbformat.read(generated / "source" / "header.ipynb", as_version=4)
    assert [c.source for c in nb.cells[2:2 + len(header.cells)]] == [c.source for c in header.cells]
    assert 'NAME = ""' in nb.cells[3].source


def test_release_opens_with_a_colab_link_and_an_install_cell(generated: Path) -> None:
    """Both built from [project.urls] Repository of the repository's pyproject.toml (the
    fixture course has none of its own), both locked."""
    import tomllib

    from course import colab

    nb = _release_nb(generated)
    link, install = nb.cells[0], nb.cells[1]
    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    owner_name = url.removeprefix("https://github.com/")
    assert link.cell_type == "markdown" and install.cell_type == "code"
    assert (f"(https://colab.research.google.com/github/{owner_name}/blob/main/release/{FX}/"
            f"{FX}.ipynb)") in link.source
    assert f'"course @ git+{url}@main"' in install.source
    for cell, gid in ((link, colab.LINK_ID), (install, colab.INSTALL_ID)):
        assert cell.metadata.nbgrader.grade_id == gid and cell.metadata.nbgrader.locked
        assert not cell.metadata.nbgrader.grade and not cell.metadata.nbgrader.solution
    assert "%" not in install.source and "!" not in install.source  # plain Python: the grader runs it


def test_setup_cells_follow_the_configured_repository(course: Path) -> None:
    """Another URL in the course's own pyproject.toml changes the link and the install cell;
    a URL that is not a GitHub repository stops the release with a message saying where."""
    (course / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.urls]\nRepository = "https://github.com/someone/'
        'ml-course.git"\nReleases-branch = "fall-2026"\n')
    generate.release(FX, root=course)
    nb = _release_nb(course)
    assert ("https://colab.research.google.com/github/someone/ml-course/blob/fall-2026/release/"
            f"{FX}/{FX}.ipynb") in nb.cells[0].source
    assert '"course @ git+https://github.com/someone/ml-course@fall-2026"' in nb.cells[1].source
    (course / "pyproject.toml").write_text('[project]\nname = "x"\n[project.urls]\n'
                                           'Repository = "<this repository\'s URL>"\n')
    with pytest.raises(CourseError, match=r"\[project.urls\] Repository"):
        generate.release(FX, root=course)
    assert _release_nb(course).cells[1].source == nb.cells[1].source  # the release is kept


def test_install_cell_installs_only_where_the_package_is_missing(generated: Path,
                                                                 monkeypatch) -> None:
    import importlib.util

    install = _release_nb(generated).cells[1].source
    calls: list = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    exec(compile(install, "install_course", "exec"), {})  # course is importable here
    assert calls == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    exec(compile(install, "install_course", "exec"), {})
    assert len(calls) == 1 and calls[0][:4] == [sys.executable, "-m", "pip", "install"]
    assert calls[0][-1].startswith("course @ git+https://github.com/")


def test_release_keeps_nbgrader_metadata(generated: Path) -> None:
    nb = _release_nb(generated)
    test_cell = _cell(nb, "test_add_squares").metadata
    assert test_cell.nbgrader.grade and test_cell.nbgrader.points == 2 and test_cell.nbgrader.locked
    assert _cell(nb, "add_squares").metadata.nbgrader.solution
    assert "experiment" in _cell(nb, "plot_values").metadata.tags
    nbformat.validate(nb)


def test_release_copies_the_other_assignment_files(generated: Path) -> None:
    assert (generated / "release" / FX / "values.txt").read_text() == "3 4\n"


def test_release_is_byte_identical_when_regenerated(course: Path) -> None:
    before = {p.name: p.read_bytes() for p in (course / "release" / FX).iterdir()}
    generate.release(FX, root=course)
    after = {p.name: p.read_bytes() for p in (course / "release" / FX).iterdir()}
    assert after == before


def test_throw_away_gradebooks_are_copies_of_one_made_once(course: Path) -> None:
    """Each release copies one empty gradebook made once per process (nbgrader creating its
    own runs `alembic heads`, about 6 s); that one is what nbgrader makes: migrated to the
    current alembic head, no assignment in it. (The test below shows the release it gives is
    plain nbgrader's, byte for byte.)"""
    import sqlite3

    from nbgrader.api import get_alembic_version

    generate.release(FX, root=course)
    template = generate._empty_gradebook()
    generate.release(FX, root=course)
    assert generate._empty_gradebook.cache_info().misses == 1 and template.is_file()
    db = sqlite3.connect(template)
    try:
        (version,), = db.execute("SELECT version_num FROM alembic_version").fetchall()
        assert db.execute("SELECT COUNT(*) FROM assignment").fetchone() == (0,)
    finally:
        db.close()
    with pytest.MonkeyPatch.context() as mp:  # nbgrader runs `alembic` found on PATH
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        assert version == get_alembic_version()


def test_plain_nbgrader_in_the_course_root_makes_the_same_release(course: Path) -> None:
    """What an instructor gets from `nbgrader generate_assignment <id>` equals `course release`."""
    expected = (course / "release" / FX / f"{FX}.ipynb").read_bytes()
    shutil.rmtree(course / "release")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", FX], cwd=course,
                   env=env, check=True, capture_output=True)
    assert (course / "release" / FX / f"{FX}.ipynb").read_bytes() == expected
    assert (course / "gradebook.db").is_file()  # plain nbgrader uses the instructor's gradebook


def test_release_of_a_missing_assignment_is_a_clear_error(course: Path) -> None:
    with pytest.raises(CourseError, match=r"no source notebook source/nope/nope\.ipynb"):
        generate.release("nope", root=course)


def test_release_reports_nbgrader_failure_in_one_line(course: Path) -> None:
    def drop_end_marker(nb: dict) -> None:
        cell = nb["cells"][2]
        cell["source"] = [line for line in cell["source"] if "END SOLUTION" not in line]

    released = course / "release" / FX / f"{FX}.ipynb"
    before = released.read_bytes()
    _edit_json(course / "source" / FX / f"{FX}.ipynb", drop_end_marker)
    with pytest.raises(CourseError) as info:
        generate.release(FX, root=course)
    message = str(info.value)
    assert "no end solution statement found" in message
    assert "\n" not in message
    assert released.read_bytes() == before  # the previous release survives a failed one


def test_release_refuses_a_source_without_cell_ids(course: Path) -> None:
    def to_nbformat_44(nb: dict) -> None:
        nb["nbformat_minor"] = 4
        for cell in nb["cells"]:
            del cell["id"]

    _edit_json(course / "source" / FX / f"{FX}.ipynb", to_nbformat_44)
    with pytest.raises(CourseError, match="without ids"):
        generate.release(FX, root=course)


# --- solutions (fixture) -------------------------------------------------------------------


def test_strip_solution_markers_keeps_the_code_between_them() -> None:
    text = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    assert generate.strip_solution_markers(text) == "def f():\n    return 1"


def test_unexecuted_solutions_keep_the_code_without_markers(course: Path) -> None:
    generate.solutions(FX, root=course, execute=False)
    nb = nbformat.read(_solution_path(course), as_version=4)
    source = _cell(nb, "add_squares").source
    assert SOLUTION_LINE in source and "    return total" in source
    assert not any(leak in source for leak in LEAKS)
    assert _cell(nb, "test_add_squares").metadata.nbgrader.points == 2
    assert nb.cells[1].source.startswith("NAME")  # header prepended
    assert all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_executed_solutions_have_outputs_and_figures(generated: Path) -> None:
    nb = nbformat.read(_solution_path(generated), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = _cell(nb, "plot_values").outputs
    assert any(o.get("text") == "sum of squares: 25.0\n" for o in outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)
    # the tqdm.auto bar is a widget; its saved text is its final state, not the first "0/2"
    bars = [o.data["text/plain"] for o in outputs if generate.WIDGET_VIEW in o.get("data", {})]
    assert bars and bars[0].startswith("reading: 100%|██████████| 2/2 ["), bars
    assert (generated / "solutions" / FX / "values.txt").is_file()  # the notebook ran beside it
    stamp = nb.metadata.course
    assert stamp.scale == "full" and stamp.generated_by == "course solutions"
    assert 0 < stamp.execution_s < 600  # the run's wall time, for the runtime statements
    assert stamp.content_sha256 == generate.cells_digest(nb.cells)


def _edit_source(root: Path, grade_id: str, edit) -> None:
    path = root / "source" / FX / f"{FX}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = _cell(nb, grade_id)
    cell.source = edit(cell.source)
    nbformat.write(nb, path)


def test_text_only_takes_new_wording_and_keeps_the_outputs(course: Path) -> None:
    before = nbformat.read(_solution_path(course), as_version=4)
    _edit_source(course, "intro", lambda text: text + "\n\nA sentence added after the run.")
    assert generate.check([FX], root=course)  # stale now
    generate.solutions(FX, root=course, text_only=True)
    after = nbformat.read(_solution_path(course), as_version=4)
    assert "A sentence added after the run." in _cell(after, "intro").source
    code = [(c.source, c.outputs, c.execution_count) for c in before.cells if c.cell_type == "code"]
    assert code == [(c.source, c.outputs, c.execution_count) for c in after.cells
                    if c.cell_type == "code"]
    assert after.metadata.course.execution_s == before.metadata.course.execution_s
    assert after.metadata.language_info == before.metadata.language_info  # as the kernel left it
    generate.release(FX, root=course)  # the release takes the wording too
    assert generate.check([FX], root=course) == []


def test_text_only_is_refused_when_code_changed(course: Path) -> None:
    before = _solution_path(course).read_bytes()
    _edit_source(course, "plot_values", lambda text: text + "\nprint('one more line')")
    with pytest.raises(CourseError, match=r"code cell \d+ changed since the run.*without --text-only"):
        generate.solutions(FX, root=course, text_only=True)
    assert _solution_path(course).read_bytes() == before


def test_cell_text_reads_what_a_cell_printed(generated: Path) -> None:
    assert generate.cell_text(_solution_path(generated), "plot_values") == "sum of squares: 25.0\n"
    with pytest.raises(CourseError, match="no code cell 'nope'"):
        generate.cell_text(_solution_path(generated), "nope")


def test_solutions_cli_prints_the_named_cell(course: Path, monkeypatch, capsys) -> None:
    from course import cli

    monkeypatch.setenv("COURSE_ROOT", str(course))
    assert cli.main(["solutions", FX, "--print", "plot_values"]) == 0
    out = capsys.readouterr().out
    assert f"--- {FX}: output of cell plot_values ---\nsum of squares: 25.0\n" in out


def test_a_failing_solution_is_an_error_and_writes_nothing(course: Path) -> None:
    def break_solution(nb: dict) -> None:
        nb["cells"][2]["source"] = ["def add_squares(a, b):\n", "    return a + b"]

    _edit_json(course / "source" / FX / f"{FX}.ipynb", break_solution)
    before = _solution_path(course).read_bytes()
    with pytest.raises(CourseError, match=r"test_add_squares.*AssertionError"):
        generate.solutions(FX, root=course)
    assert _solution_path(course).read_bytes() == before


# --- check (fixture) -----------------------------------------------------------------------


def test_check_is_clean_when_fresh(course: Path) -> None:
    assert generate.check([FX], root=course) == []


def test_check_reports_a_source_edit(course: Path) -> None:
    _edit_json(course / "source" / FX / f"{FX}.ipynb",
               lambda nb: nb["cells"][0]["source"].append("\nOne more sentence."))
    problems = generate.check([FX], root=course)
    assert any(p.startswith(f"release/{FX}/{FX}.ipynb is stale") and f"course release {FX}" in p
               for p in problems)
    assert f"solutions/{FX}/{FX}.ipynb is stale (source changed): run `course solutions {FX}`" in problems


def test_check_reports_a_hand_edited_release(course: Path) -> None:
    path = course / "release" / FX / f"{FX}.ipynb"
    path.write_text(path.read_text().replace("A tiny notebook", "A small notebook"))
    problems = generate.check([FX], root=course)
    assert len(problems) == 1
    assert problems[0].startswith(f"release/{FX}/{FX}.ipynb is stale")
    assert "grade_id intro" in problems[0]


def test_check_of_several_assignments_lists_each_ones_problems_in_their_order(
        course: Path) -> None:
    """``check`` regenerates several releases at once (one per core); its problems still come
    assignment by assignment, in the order asked for."""
    other = "fixture_b"
    for folder in ("source", "release", "solutions"):
        src, dst = course / folder / FX, course / folder / other
        shutil.copytree(src, dst)
        (dst / f"{FX}.ipynb").rename(dst / f"{other}.ipynb")
    for assignment in (FX, other):
        path = course / "release" / assignment / f"{assignment}.ipynb"
        path.write_text(path.read_text().replace("A tiny notebook", "A small notebook"))
    problems = generate.check([other, FX], root=course)
    assert [p.split(" is ")[0] for p in problems] == [f"release/{other}/{other}.ipynb",
                                                      f"release/{FX}/{FX}.ipynb"], problems


def test_check_reports_missing_and_extra_release_files(course: Path) -> None:
    (course / "release" / FX / "values.txt").unlink()
    (course / "release" / FX / "notes.md").write_text("not from source\n")
    problems = generate.check([FX], root=course)
    assert any(p.startswith(f"release/{FX}/values.txt is missing") for p in problems)
    assert any(p.startswith(f"release/{FX}/notes.md is not generated") for p in problems)


def test_check_reports_a_hand_edited_solution_output(course: Path) -> None:
    path = _solution_path(course)
    path.write_text(path.read_text().replace("sum of squares: 25.0", "sum of squares: 26.0"))
    problems = generate.check([FX], root=course)
    assert problems == [
        f"solutions/{FX}/{FX}.ipynb was edited by hand (its cells do not match their recorded "
        f"hash): run `course solutions {FX}`"
    ]


def test_check_reports_unexecuted_solutions(course: Path) -> None:
    generate.solutions(FX, root=course, execute=False)
    problems = generate.check([FX], root=course)
    assert len(problems) == 1
    assert re.match(rf"solutions/{FX}/{FX}\.ipynb has 5 unexecuted code cell\(s\)", problems[0])


def test_check_reports_solution_code_that_differs_from_source(course: Path) -> None:
    """Even with the recorded hash forged to match, changed code is caught."""
    path = _solution_path(course)
    nb = nbformat.read(path, as_version=4)
    _cell(nb, "add_squares").source += "\n# tweak"
    nb.metadata.course.content_sha256 = generate.cells_digest(nb.cells)
    nbformat.write(nb, path)
    problems = generate.check([FX], root=course)
    assert problems == [f"solutions/{FX}/{FX}.ipynb cell 5 is not what the source generates: "
                        f"run `course solutions {FX}`"]


def test_check_reports_a_source_with_outputs(course: Path) -> None:
    def add_output(nb: dict) -> None:
        nb["cells"][1]["execution_count"] = 1

    _edit_json(course / "source" / FX / f"{FX}.ipynb", add_output)
    problems = generate.check([FX], root=course)
    assert any(p.startswith(f"source/{FX}/{FX}.ipynb has outputs or execution counts in cell(s) 1")
               for p in problems)


# --- nbgrader_config.py --------------------------------------------------------------------


def _nbgrader_config():
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def test_config_feedback_hides_hidden_tests_and_names_folders() -> None:
    from nbgrader.preprocessors import ClearHiddenTests

    config = _nbgrader_config()
    assert ClearHiddenTests in config.GenerateFeedback.preprocessors
    assert config.CourseDirectory.solution_directory == "solutions"
    assert config.IncludeHeaderFooter.header == "source/header.ipynb"
    assert config.ClearSolutions.code_stub == {"python": "# your code here\nraise NotImplementedError"}


# --- the real repository -------------------------------------------------------------------


def _repo_ids() -> list[str]:
    from course.paths import assignment_ids

    return assignment_ids(REPO)


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        pytest.skip(f"{path.relative_to(REPO)} does not exist yet ({what})")


@pytest.fixture(scope="module")
def repo_ids() -> list[str]:
    _require(REPO / "source" / "01_kmeans" / "01_kmeans.ipynb", "the first assignment is not written")
    return _repo_ids()


@pytest.fixture(scope="module")
def released_ids(repo_ids: list[str]) -> list[str]:
    for a in repo_ids:
        _require(REPO / "release" / a / f"{a}.ipynb", f"run `course release {a}`")
    return repo_ids


def _solution_regions(source: str) -> list[str]:
    """The lines inside BEGIN/END SOLUTION regions of one cell."""
    lines, inside = [], False
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif inside:
            lines.append(line.strip())
    return lines


def test_course_check_passes_on_the_committed_tree(released_ids: list[str]) -> None:
    for a in released_ids:
        _require(REPO / "solutions" / a / f"{a}.ipynb", f"run `course solutions {a}`")
    proc = subprocess.run([sys.executable, "-m", "course", "check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_release_notebooks_have_stubs_and_no_solution_text(released_ids: list[str]) -> None:
    for a in released_ids:
        source = nbformat.read(REPO / "source" / a / f"{a}.ipynb", as_version=4)
        release_path = REPO / "release" / a / f"{a}.ipynb"
        release = nbformat.read(release_path, as_version=4)
        nbformat.validate(release)
        text = release_path.read_text(encoding="utf-8")
        everything = "\n".join(c.source for c in release.cells)
        for leak in LEAKS:
            assert leak not in text, f"{release_path}: {leak!r}"
        outside = "\n".join(generate.strip_solution_markers(c.source) for c in source.cells
                            if not c.metadata.nbgrader.get("solution"))
        for cell in source.cells:
            if not cell.metadata.nbgrader.get("solution"):
                continue
            released = _cell(release, cell.metadata.nbgrader.grade_id).source
            if cell.cell_type == "code":
                assert "# your code here" in released and "raise NotImplementedError" in released
            for line in _solution_regions(cell.source):
                if len(line) >= 12 and line not in outside and not line.startswith("#"):
                    assert line not in everything, f"{a}: solution line {line!r} in the release"


def test_source_notebooks_have_no_outputs(repo_ids: list[str]) -> None:
    for a in repo_ids:
        for i, cell in enumerate(nbformat.read(REPO / "source" / a / f"{a}.ipynb", as_version=4).cells):
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{a} cell {i}"


def test_every_cell_has_a_unique_grade_id(repo_ids: list[str]) -> None:
    header = nbformat.read(REPO / "source" / "header.ipynb", as_version=4)
    for a in repo_ids:
        nb = nbformat.read(REPO / "source" / a / f"{a}.ipynb", as_version=4)
        ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in header.cells + nb.cells]
        assert None not in ids, f"{a}: a cell has no nbgrader grade_id"
        assert len(ids) == len(set(ids)), f"{a}: duplicate grade ids {sorted(i for i in ids if ids.count(i) > 1)}"
        assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids), f"{a}: grade ids are snake_case"


def test_grade_cells_are_locked_with_positive_points(repo_ids: list[str]) -> None:
    for a in repo_ids:
        nb = nbformat.read(REPO / "source" / a / f"{a}.ipynb", as_version=4)
        grade_cells = [c.metadata.nbgrader for c in nb.cells if c.metadata.nbgrader.get("grade")]
        assert grade_cells, f"{a} has no grade cells"
        for meta in grade_cells:
            assert meta.get("points", 0) > 0, f"{a}: {meta.grade_id} has no points"
            assert meta.locked or meta.solution, f"{a}: test cell {meta.grade_id} is not locked"


def test_experiment_cells_are_locked_code(repo_ids: list[str]) -> None:
    for a in repo_ids:
        nb = nbformat.read(REPO / "source" / a / f"{a}.ipynb", as_version=4)
        for cell in nb.cells:
            if "experiment" in cell.metadata.get("tags", []):
                assert cell.cell_type == "code" and cell.metadata.nbgrader.locked, cell.metadata.nbgrader.grade_id


def test_every_release_opens_with_its_own_colab_link(released_ids: list[str]) -> None:
    """The committed releases carry the configured link and install line; the README holds no
    placeholder for the repository's address."""
    from course import colab

    for a in released_ids:
        nb = nbformat.read(REPO / "release" / a / f"{a}.ipynb", as_version=4)
        assert f"({colab.colab_url(a, REPO)})" in nb.cells[0].source, a
        assert f'"{colab.install_requirement(REPO)}"' in nb.cells[1].source, a
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"<[^<>\n]*\b(URL|url)\b[^<>\n]*>", readme)



# -- numbers quoted in the text ------------------------------------------------------------------
#: A decimal number in running text (not in $math$ or `code`), with an optional scale word or %.
QUOTED = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)(?![\w.]*\d)\s*(million|thousand|%)?")
PRINTED = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
SCALE = {"million": 1e6, "thousand": 1e3, "%": 0.01}


def quoted_numbers(markdown: str) -> list[tuple[str, float, int, str]]:
    """(as written, value, decimals, context) of each decimal number quoted in ``markdown``."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`\n]*`", " ", markdown, flags=re.S)
    found = []
    for m in QUOTED.finditer(text):
        digits = (m.group(1) + m.group(2)).replace(",", "")
        value = float(digits) * SCALE.get(m.group(3) or "", 1.0)
        found.append((m.group(0).strip(), value, len(m.group(2)) - 1,
                      " ".join(text[max(0, m.start() - 50):m.end() + 20].split())))
    return found


def printed_values(nb: nbformat.NotebookNode) -> list[float]:
    """Every number the notebook's code printed (stdout and plain-text results; not stderr,
    where progress bars show passing values)."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") != "stdout":
                continue
            text = o.get("text") or o.get("data", {}).get("text/plain") or ""
            out += [float(t.replace(",", "")) for t in PRINTED.findall(text)]
    return out


def matches(value: float, decimals: int, scale: float, printed: list[float]) -> bool:
    """``value`` as written is one of ``printed`` rounded the way the text rounds it (a
    percentage may be printed as a fraction or as a percentage)."""
    unit = scale * 10.0 ** -decimals
    return any(abs(p * k - value) <= unit / 2 * (1 + 1e-9)
               for p in printed for k in ((1.0, 0.01) if scale == 0.01 else (1.0,)))


def test_quoted_number_detector() -> None:
    text = ("accuracy 0.82 and $\\tau = 0.5$ and `lr=1e-3`, 1.6 million parameters, 17.6% of it,"
            " 3,900.5 images, version 2.13.0")
    assert [(q[0], pytest.approx(q[1]), q[2]) for q in quoted_numbers(text)] == [
        ("0.82", 0.82, 2), ("1.6 million", 1.6e6, 1), ("17.6%", 0.176, 1),
        ("3,900.5", 3900.5, 1)]
    assert matches(0.82, 2, 1.0, [0.8203]) and not matches(0.72, 2, 1.0, [0.6848])
    assert matches(1.6e6, 1, 1e6, [1_647_109]) and matches(0.176, 1, 0.01, [17.6])


def test_numbers_quoted_in_the_text_are_printed_by_the_solutions(released_ids: list[str]) -> None:
    """Every decimal number a notebook's text quotes is one its executed solution printed
    (rounded as the text rounds it): no reading off an old run, another seed or a curve."""
    wrong = []
    for a in released_ids:
        path = REPO / "solutions" / a / f"{a}.ipynb"
        _require(path, f"run `course solutions {a}`")
        nb = nbformat.read(path, as_version=4)
        printed = printed_values(nb)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for written, value, decimals, context in quoted_numbers(cell.source):
                scale = next((v for k, v in SCALE.items() if written.endswith(k)), 1.0)
                if not matches(value, decimals, scale, printed):
                    wrong.append(f"{a}: {written!r} is not printed by the solution (…{context}…)")
    assert not wrong, "\n".join(wrong)



# -- how long each notebook takes -----------------------------------------------------------------
#: The runtime statement each notebook's introduction makes (filled in from its solution run).
RUNTIME = re.compile(r"runs in about (\d+) minutes? on a 2-core laptop CPU")
#: Full scale must fit a lesson's break on the course's own 2-core machine (issue 16).
MAX_FULL_SCALE_S = 660


def test_each_notebook_states_its_measured_runtime(released_ids: list[str]) -> None:
    """The introduction says how long the notebook takes at full scale, and that is what its
    solution run took (to the minute, or a fifth of it); no notebook needs much more than ten
    minutes."""
    for a in released_ids:
        path = REPO / "solutions" / a / f"{a}.ipynb"
        _require(path, f"run `course solutions {a}`")
        nb = nbformat.read(path, as_version=4)
        seconds = nb.metadata.get("course", {}).get("execution_s")
        assert seconds, f"{a}: the solutions carry no run time: run `course solutions {a}`"
        intro = next(c.source for c in nb.cells if c.cell_type == "markdown"
                     and c.metadata.get("nbgrader", {}).get("grade_id") == "md_intro")
        stated = RUNTIME.search(" ".join(intro.split()))
        assert stated, f"{a}: md_intro does not say how long the notebook runs"
        minutes = int(stated.group(1))
        assert abs(minutes * 60 - seconds) <= max(60, 0.2 * seconds), (
            f"{a}: the introduction says about {minutes} min, the solution run took "
            f"{seconds / 60:.1f} min")
        assert seconds <= MAX_FULL_SCALE_S, f"{a}: full scale took {seconds / 60:.1f} min"
