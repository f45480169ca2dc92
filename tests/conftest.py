"""Fixtures shared by the tests of the bundle."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_mirror() -> Path:
    """A local mirror of the four official MNIST .gz files: ``COURSE_MNIST_MIRROR`` or
    ``../shared/data/mnist`` beside the repository (what CI has). Skips when absent."""
    path = Path(os.environ.get("COURSE_MNIST_MIRROR", REPO.parent / "shared" / "data" / "mnist"))
    if not path.is_dir():
        pytest.skip(f"no MNIST mirror at {path} (set COURSE_MNIST_MIRROR to a folder of the .gz files)")
    return path


@pytest.fixture(scope="session")
def mnist_root(mnist_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with MNIST staged once per session from the mirror. Read-only for tests: a
    test that damages files uses ``mnist_copy``."""
    from course import data

    root = tmp_path_factory.mktemp("mnist_data")
    data.fetch("mnist", dest=root, from_dir=mnist_mirror, progress=False)
    return root


@pytest.fixture
def mnist_copy(mnist_root: Path, tmp_path: Path) -> Path:
    """A private copy of the staged data dir (``.gz`` and decompressed files) to damage freely."""
    root = tmp_path / "data"
    shutil.copytree(mnist_root, root)
    return root


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """Print the corpus summary line (cases contained of cases tried) when it ran, and how
    many tests the time budget left unstarted."""
    line = getattr(config, "_corpus_summary", None)
    if line:
        terminalreporter.write_line(line)
    skipped = getattr(config, "_out_of_time", 0)
    if skipped:
        terminalreporter.write_line(
            f"time budget ({DEADLINE_ENV}) ended: {skipped} tests were not started", red=True)


# -- the CI time budget of the extended suite --------------------------------------------------
#: Seconds since the epoch after which no further test starts (set by .ci/run for the extended
#: suite only): CI has a hard time limit, and a run cut off by it lands nothing at all.
DEADLINE_ENV = "COURSE_TEST_DEADLINE"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    deadline = os.environ.get(DEADLINE_ENV)
    if deadline and time.time() > float(deadline):
        item.config._out_of_time = getattr(item.config, "_out_of_time", 0) + 1
        pytest.skip(f"not started: the time budget of this run ended ({DEADLINE_ENV})")
