"""`course grade` refuses bad input with one line on stderr and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch


def course(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, fragment", [
    (("grade", "no/such/notebook.ipynb"), "no such notebook"),
    (("grade", "--class", "99_nothing"), "unknown assignment"),
    (("grade",), "give notebooks to grade or --class"),
    (("grade", "--class", "01_kmeans", "--submitted", "no_such_dir"), "does not exist"),
])
def test_bad_input_gives_one_line(args, fragment, tmp_path):
    proc = course(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_absent_device_is_refused(tmp_path):
    nb = tmp_path / "01_kmeans.ipynb"
    nb.write_text("{}")
    proc = course("grade", str(nb), "--device", "cuda")
    assert proc.returncode != 0 and "not available" in proc.stderr.strip().splitlines()[-1]


def test_notebook_of_unknown_assignment(tmp_path):
    nb = tmp_path / "homework.ipynb"
    nb.write_text("{}")
    proc = course("grade", str(nb))
    assert proc.returncode != 0 and "pass --assignment" in proc.stderr


def test_grade_help():
    proc = course("grade", "--help")
    assert proc.returncode == 0 and "--class" in proc.stdout
