"""The time budget of a CI stage (tests/conftest.py): past COURSE_TEST_DEADLINE no further
test starts, each is reported as not started, and the run says how many."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import conftest
import pytest


class _Config:
    pass


class _Item:
    def __init__(self) -> None:
        self.config = _Config()


def test_a_test_starts_before_the_deadline(monkeypatch):
    monkeypatch.setenv(conftest.DEADLINE_ENV, str(time.time() + 600))
    item = _Item()
    conftest.pytest_runtest_setup(item)  # no skip
    assert getattr(item.config, "_out_of_time", 0) == 0


def test_no_test_starts_after_the_deadline(monkeypatch):
    monkeypatch.setenv(conftest.DEADLINE_ENV, str(time.time() - 1))
    item = _Item()
    with pytest.raises(pytest.skip.Exception, match="not started"):
        conftest.pytest_runtest_setup(item)
    assert item.config._out_of_time == 1


def test_a_run_past_its_deadline_reports_what_it_left(tmp_path):
    """End to end, in a pytest of its own with this conftest: the first test runs, the ones
    after the deadline it sets are skipped and counted in the summary."""
    (tmp_path / "conftest.py").write_text(Path(conftest.__file__).read_text())
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import os, time

        def test_first():
            os.environ["COURSE_TEST_DEADLINE"] = str(time.time() - 1)

        def test_second():
            pass

        def test_third():
            pass
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "1 passed, 2 skipped" in out, out
    assert "2 tests were not started" in out, out
