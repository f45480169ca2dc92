"""The pieces of "never a false zero" that need no grading run: why a run gave no verdict,
how a not-graded submission appears in the table and the CSV (the gradebook: in
test_gradebook.py), and how many
submissions `course grade --class` grades at once."""

from __future__ import annotations

import csv
import re
import signal
from pathlib import Path

import pytest

from course.grading import cli, runner

JOB = runner.Job("alice", Path("alice.ipynb"), "01_kmeans")
SETTINGS = runner.Settings(budget_s=100)


def rec(name: str, passed: bool = True) -> dict:
    return {"test": name, "name": name, "cell": "c", "max_score": 1.0, "passed": passed,
            "message": ""}


def report(**fields) -> dict:
    return {"records": [], "collected": ["a", "b"], "complete": True, **fields}


@pytest.mark.parametrize("code, data, records, pattern", [
    (None, None, {}, r"ran past its 1200 s wall-clock bound before any test"),
    (-signal.SIGKILL, report(complete=False), {"a": rec("a")},
     r"killed by SIGKILL after 1 of 2 tests"),
    (-signal.SIGSEGV, None, {}, r"killed by SIGSEGV before any test"),
    (1, report(complete=False), {}, r"stopped after 0 of 2 tests \(exit status 1\)"),
    (0, None, {}, r"stopped before any test"),
    (0, report(not_graded="the sandbox refused"), {}, r"^the sandbox refused$"),
    (0, report(collected=[]), {}, r"collected no test"),
    (0, report(), {"a": rec("a")}, r"1 hidden tests reached no verdict \(b, ...\)"),
])
def test_every_way_a_run_can_end_without_a_verdict_has_its_reason(code, data, records, pattern):
    collected = data["collected"] if data else []
    reason = runner.unfinished(code, "", data, collected, records, SETTINGS)
    assert re.search(pattern, reason), reason


def test_a_run_that_decided_every_test_is_a_verdict_even_with_failures():
    records = {"a": rec("a", passed=False), "b": rec("b")}
    assert runner.unfinished(1, "", report(), ["a", "b"], records, SETTINGS) == ""


def test_not_graded_is_never_a_zero_in_the_table_or_the_csv(tmp_path):
    bob = runner.Job("bob", Path("bob.ipynb"), "01_kmeans")
    graded_bob = {"score": 3.0, "max_score": 17.0, "execution_time": 2.0, "output": "",
                  "tests": [], "extra_data": {"cells": {"c1": {"score": 3.0, "max_score": 17.0}}}}
    rows = [(JOB, runner.not_graded_entry(JOB, "the grader process was killed by SIGKILL", 4)),
            (bob, graded_bob)]
    text = runner.table(rows)
    alice = next(line for line in text.splitlines() if line.startswith("alice"))
    assert "NOT GRADED" in alice and "killed by SIGKILL (4 tests decided, kept)" in alice
    assert "0/" not in alice
    runner.write_class_csv(rows, tmp_path / "grades.csv")
    got = {r["submission"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert got["alice"]["score"] == "" and got["alice"]["c1"] == ""
    assert got["alice"]["status"] == "not graded: the grader process was killed by SIGKILL"
    assert got["bob"]["score"] == "3.0" and got["bob"]["status"] == "graded"


@pytest.mark.parametrize("cores, memory_gib, expected", [
    (2, 24, 2),      # this machine: one per core
    (16, 128, 16),
    (16, 7, 2),      # memory short: about 3 GiB each
    (8, 1, 1),       # never fewer than one
])
def test_class_grading_uses_every_core_within_memory(cores, memory_gib, expected):
    assert cli.default_jobs(cores, memory_gib * 2**30) == expected


def test_available_memory_is_read():
    mem = cli.available_memory()
    assert mem is None or mem > 2**26
