"""A test-only pytest plugin for grader processes: faults from outside the submission.

Loaded only when a test asks for it (``PYTEST_PLUGINS=fault_plugin``, ``tests/`` on
``PYTHONPATH``). ``COURSE_FAULT_LOG=FILE``: append the name of every hidden test that ran.
``COURSE_FAULT_KILL_AFTER=K``: the grader process SIGKILLs itself once K tests were decided
(as the OOM killer or an administrator would), after the course plugin recorded them.
``COURSE_FAULT_ATEXIT=FILE``: an atexit handler of the grader process writes FILE (it runs
only if the process ends through the interpreter's normal teardown).
"""

from __future__ import annotations

import os
import signal

import pytest

_decided = 0


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001
    mark = os.environ.get("COURSE_FAULT_ATEXIT")
    if mark:
        import atexit
        from pathlib import Path

        atexit.register(Path(mark).write_text, "the interpreter's teardown ran")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _decided
    if report.when == "call" or (report.when == "setup" and report.failed):
        _decided += 1
        log = os.environ.get("COURSE_FAULT_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(report.nodeid.rsplit("::", 1)[-1] + "\n")
        kill_after = int(os.environ.get("COURSE_FAULT_KILL_AFTER", "0") or 0)
        if kill_after and _decided >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
