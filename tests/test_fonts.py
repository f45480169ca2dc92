"""The workers' matplotlib font list (course.grading.fonts): built once per machine, current
until the fonts or matplotlib change, and found by every worker in its own matplotlib folder
(behind the mount lockdown, carried into its new scratch space), so that no worker scans the
installed fonts again when the notebook imports matplotlib."""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest

from course.grading import fonts, sandbox
from course.grading.session import Submission

pytest.importorskip("matplotlib")


@pytest.fixture
def font_dir(tmp_path, monkeypatch):
    """A cache of this test's own, and a folder of fonts it may change."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "fonts"
    folder.mkdir()
    monkeypatch.setattr(fonts, "FONT_DIRS", (*fonts.FONT_DIRS, str(folder)))
    return folder


def test_the_list_is_built_once_and_current_until_the_fonts_change(font_dir) -> None:
    assert fonts.current() is None
    built = fonts.ensure()
    assert built is not None and built.parent == fonts.folder()
    assert built.name.startswith("fontlist-v") and json.loads(built.read_text())["ttflist"]
    stamp = built.stat().st_mtime_ns
    assert fonts.ensure() == built and built.stat().st_mtime_ns == stamp  # not built again
    installed = font_dir / "a-new-family"  # a font installed afterwards, one folder down
    installed.mkdir()
    later = time.time() + 5
    os.utime(installed, (later, later))
    assert fonts.current() is None
    rebuilt = fonts.ensure()
    assert rebuilt is not None and rebuilt.stat().st_mtime >= later - 5


def test_without_matplotlib_nothing_is_built(font_dir, monkeypatch) -> None:
    monkeypatch.setattr(fonts, "_matplotlib_dir", lambda: None)
    assert fonts.ensure() is None and not fonts.folder().exists()


def _font_names_notebook(path):
    code = ("import matplotlib.font_manager as fm\n\n"
            "def font_names():\n"
            "    return sorted({f.name for f in fm.fontManager.ttflist})\n")
    c = nbformat.v4.new_code_cell(code)
    c.metadata["nbgrader"] = {"schema_version": 3, "grade_id": "fonts", "locked": False,
                              "solution": True, "grade": False}
    nbformat.write(nbformat.v4.new_notebook(cells=[c]), str(path))
    return path


@pytest.mark.parametrize("setting", ["", "unshare"], ids=["lockdown", "no-unshare"])
def test_every_worker_finds_the_list_instead_of_scanning_the_fonts(font_dir, tmp_path,
                                                                   monkeypatch, setting) -> None:
    """A family that only the handed list names (no font file of that name exists) is known
    to the worker's matplotlib: it read the list instead of scanning the fonts."""
    monkeypatch.setenv("COURSE_SANDBOX_DISABLE", setting)
    if setting == "" and "--mount" not in sandbox._probe_unshare():
        pytest.skip("no mount namespace here: the lockdown is not applied")
    built = fonts.ensure()
    assert built is not None
    data = json.loads(built.read_text())
    data["ttflist"].append({**data["ttflist"][0], "name": "Course Marker Sans"})
    built.write_text(json.dumps(data))  # written after the fonts' folders: still current
    nb = _font_names_notebook(tmp_path / "fonts.ipynb")
    sub = Submission(nb, nb)
    try:
        names = sub.call("font_names")
        assert sub.isolation["level"] in ("isolated", "contained")
    finally:
        sub.close()
    assert "Course Marker Sans" in names and "DejaVu Sans" in names
