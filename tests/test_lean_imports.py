"""The processes the course starts and owns skip the RFC 3987 grammar (course.lean_imports):
nbgrader started for a release or a check, and the ``course`` CLI, import nbformat and
jsonschema without compiling it, and nbformat still refuses an invalid notebook there."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from course import generate
from course.lean_imports import PRELUDE, SKIPPED, nbgrader_command

GRAMMAR = f"{SKIPPED}.syntax_helpers"  # the module whose import compiles the grammar


def _run(cmd: list[str]) -> tuple[str, set[str]]:
    """What a process running ``cmd`` printed, and the modules it imported
    (PYTHONPROFILEIMPORTTIME's stderr lines)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                         if line.startswith("import time:")}


needs_grammar = pytest.mark.skipif(importlib.util.find_spec(SKIPPED) is None,
                                   reason=f"{SKIPPED} is not installed: nothing to skip")


@needs_grammar
def test_nbgrader_started_by_the_course_skips_the_grammar() -> None:
    _, plain = _run([sys.executable, "-m", "nbgrader", "--version"])
    _, lean = _run(nbgrader_command("--version"))
    assert GRAMMAR in plain  # what nbgrader does on its own, and what this test would catch
    assert {"nbformat", "jsonschema", "nbgrader.apps.nbgraderapp"} <= lean
    assert GRAMMAR not in lean


@needs_grammar
def test_the_cli_skips_the_grammar_and_nbformat_still_validates() -> None:
    code = (  # a check runs nbgrader too: its problems, if any, are test_generation's
        "from course import cli\n"
        "assert cli.main(['check', '01_kmeans']) in (0, 1)\n"
        "import nbformat\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')])\n"
        "nb.cells[0]['outputs'] = 'not a list'\n"
        "try:\n"
        "    nbformat.validate(nb)\n"
        "except nbformat.ValidationError:\n"
        "    print('refused')\n"
    )
    out, imported = _run([sys.executable, "-c", code])
    assert out.strip().splitlines()[-1] == "refused"
    assert {"course.generate", "jsonschema"} <= imported and GRAMMAR not in imported


def test_releases_and_gradebooks_start_nbgrader_with_the_prelude(monkeypatch, tmp_path) -> None:
    seen: list[list[str]] = []

    def run(cmd, **kwargs):
        seen.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, "", "nbgrader: stopped by the test")

    monkeypatch.setattr(generate.subprocess, "run", run)
    generate._empty_gradebook.cache_clear()
    try:
        with pytest.raises(generate.CourseError):
            generate._empty_gradebook()
    finally:
        generate._empty_gradebook.cache_clear()
    (tmp_path / "nbgrader_config.py").write_text("")
    with pytest.raises(generate.CourseError):
        generate._generate_assignment(tmp_path, "a1", tmp_path / "release", use_gradebook=True)
    assert [cmd[:2] for cmd in seen] == [[sys.executable, "-c"]] * 2
    assert all(cmd[2].startswith(PRELUDE) for cmd in seen)
    assert seen[1][3:5] == ["generate_assignment", "a1"]
