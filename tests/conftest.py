"""Fixtures shared by the tests of the bundle."""

from __future__ import annotations

import os
import shutil
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
    """Print the corpus summary line (cases contained of cases tried) when it ran."""
    line = getattr(config, "_corpus_summary", None)
    if line:
        terminalreporter.write_line(line)
