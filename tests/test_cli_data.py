"""The `course` command line, run as students and instructors run it: `python -m course ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def course(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COURSE_DATA": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "course", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a failure reported as exactly one line on stderr; return that line."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"]], ids=["course", "data"])
def test_help_exits_zero(args: list[str], tmp_path: Path) -> None:
    result = course(*args, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: course" in result.stdout


def test_fetch_from_missing_folder_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(course("data", "fetch", "mnist", "--from", str(tmp_path / "nope"),
                                 data_dir=tmp_path))
    assert "nope: no such folder" in line


def test_fetch_from_mirror_then_verify(tmp_path: Path, mnist_mirror: Path) -> None:
    fetched = course("data", "fetch", "mnist", "--from", str(mnist_mirror), data_dir=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert len(fetched.stdout.split()) == 4
    assert all(Path(p).is_file() for p in fetched.stdout.split())
    verified = course("data", "verify", data_dir=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert [line.split()[0] for line in verified.stdout.splitlines()] == ["ok"] * 4


def test_verify_truncated_file_is_one_line_naming_it(mnist_copy: Path) -> None:
    damaged = mnist_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    with damaged.open("r+b") as f:
        f.truncate(1000)
    line = one_line_error(course("data", "verify", data_dir=mnist_copy))
    assert "train-labels-idx1-ubyte: sha256 mismatch" in line
    assert "course data fetch mnist" in line


def test_release_of_unknown_assignment_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(course("release", "no_such_assignment", data_dir=tmp_path))
    assert "no_such_assignment" in line
