"""The pytest plugin that runs hidden tests against one submission.

Options: ``--submission NB`` (the student's notebook), ``--release NB`` (the release notebook
it was made from), ``--device``, ``--report JSON`` (where per-test records go). Fixtures:
``submission`` (a :class:`~course.grading.session.Submission`, one worker per run),
``device``, and ``mnist_train`` / ``mnist_test`` (the grader's own copy of MNIST as flattened
rows in [0, 1] with labels, loaded once per run). Every test must carry
``@points(n, cell=...)``; the record of each test holds its points, grade cell, outcome and a
one-line message, never the test's code or traceback.

The report is rewritten (atomically) each time a test's verdict is decided, with
``"complete": false`` until the session ends normally: a grader that crashes or is killed half
way leaves the verdicts it reached, and ``--skip NAME,...`` runs only the tests an earlier,
unfinished run did not decide (see :mod:`course.grading.runner`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from course.errors import CourseError
from course.grading import kept, plaintext
from course.grading.boot import leave_now
from course.grading.session import (
    Budget,
    GraderFault,
    StudentFailure,
    Submission,
    WorkerRequest,
    discard_prelaunched,
    take_prelaunched,
)

if TYPE_CHECKING:  # torch loads with the hidden tests, after the worker was started
    import torch

MAX_MESSAGE = 500


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("course grading")
    group.addoption("--submission", help="student notebook to grade")
    group.addoption("--release", help="release notebook of the assignment")
    group.addoption("--device", default="cpu", help="device for the student's code")
    group.addoption("--report", help="write per-test records (JSON) here")
    group.addoption("--budget", type=float, default=900.0, help="seconds for the submission")
    group.addoption("--threads", type=int, default=0, help="torch threads in the worker")
    group.addoption("--allow-weak-isolation", action="store_true",
                    help="run student code even where the sandbox is below 'contained'")
    group.addoption("--no-kept-references", action="store_true",
                    help="neither read nor keep references between gradings (weak isolation)")
    group.addoption("--skip", default="",
                    help="comma-separated test names already decided by an earlier run")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "grade(points, cell): points of a hidden test")
    config._course_records = []  # type: ignore[attr-defined]
    config._course_collected = []  # type: ignore[attr-defined]
    config._course_launched = None  # type: ignore[attr-defined]
    if config.getoption("--no-kept-references", False):
        kept.ENABLED = False  # before collection: no reference is looked up before this
    if config.getoption("--submission", None) and not config.getoption("collectonly", False):
        # the worker boots (confines itself, imports torch: seconds) while this process
        # imports torch and the hidden tests (nothing it loaded so far imports torch: the two
        # imports take two cores at once); it runs nothing of the student's before the first
        # test asks
        # a grader started by course.grading.start launched it before pytest loaded
        request = _worker_request(config)
        launched = take_prelaunched(request)
        if launched is None:
            try:
                launched = request.launch()
            except OSError:
                pass  # the submission fixture starts one, and says why if it cannot
        config._course_launched = launched  # type: ignore[attr-defined]
    else:
        discard_prelaunched()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    launched = getattr(config, "_course_launched", None)
    if launched is not None:  # no test asked for the submission
        launched.close()
    session = getattr(config, "_course_session", None)
    if session is not None and config.getoption("--submission", None):
        # a grader process: pytest is done (the report complete, the summary printed, the
        # worker closed) and the status is final; skip the interpreter's second of teardown
        leave_now(int(session.exitstatus))


def _worker_request(config: pytest.Config) -> WorkerRequest:
    """The worker the command line asks for."""
    return WorkerRequest(config.getoption("--device"), config.getoption("--threads"),
                         bool(config.getoption("--allow-weak-isolation")),
                         config.getoption("--release", None))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Remember every hidden test in file order; drop those decided by an earlier run."""
    config._course_collected = [item.name for item in items]  # type: ignore[attr-defined]
    skip = {n for n in config.getoption("--skip").split(",") if n}
    if skip:
        config.hook.pytest_deselected(items=[i for i in items if i.name in skip])
        items[:] = [i for i in items if i.name not in skip]
    write_report(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The tests are collected and the grader is about to wait for its worker: compute the
    hidden tests' submission-independent references meanwhile (checks.ComputedLater), and
    freeze what the imports allocated, so that no full garbage collection walks torch's
    objects again while the tests run (one took 0.13 s of a grading)."""
    gc.freeze()
    checks = sys.modules.get("course.grading.checks")  # loaded by the hidden tests, if at all
    if checks is not None:
        checks.start_computing()


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--device")


@pytest.fixture(scope="session")
def mnist_train() -> tuple[torch.Tensor, torch.Tensor]:
    from course.data import load_mnist

    return load_mnist("train", flatten=True)


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    from course.data import load_mnist

    return load_mnist("test", flatten=True)


@pytest.fixture(scope="session")
def submission(request: pytest.FixtureRequest, device: str):
    cfg = request.config
    nb, rel = cfg.getoption("--submission"), cfg.getoption("--release")
    if not nb or not rel:
        pytest.exit("--submission and --release are required", returncode=4)
    launched, cfg._course_launched = cfg._course_launched, None  # type: ignore[attr-defined]
    request = _worker_request(cfg)
    try:
        sub = Submission(Path(nb), Path(rel), device=device, limits=request.limits,
                         budget=Budget(total_s=cfg.getoption("--budget")),
                         min_isolation=request.min_isolation, launched=launched)
    except BaseException:
        if launched is not None:
            launched.close()
        raise
    cfg._course_submission = sub  # type: ignore[attr-defined]
    yield sub
    sub.close()


def one_line(exc: BaseException) -> str:
    """The student-facing message of a failure: no traceback, no test source."""
    if isinstance(exc, (StudentFailure, CourseError)):
        text = str(exc)
    elif isinstance(exc, AssertionError):
        text = str(exc) or "a hidden check failed"
    else:
        text = f"a check could not run on the returned value ({type(exc).__name__}: {exc})"
    # one bounded line, whatever the student's code put in it (\r, \x1b, U+2028, ...); the
    # escaping for Markdown happens where feedback.md is written (runner.feedback_text)
    return plaintext.one_line(text, MAX_MESSAGE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and isinstance(call.excinfo.value, GraderFault):
        # nothing is known about the submission: stop, and record "not graded", not a zero
        item.config._course_not_graded = " ".join(str(call.excinfo.value).split())  # type: ignore[attr-defined]
        item.session.shouldstop = "not graded"
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        mark = item.get_closest_marker("grade")
        if mark is None:
            raise pytest.UsageError(f"{item.nodeid} has no @points(...) mark")
        doc = (getattr(item.function, "__doc__", None) or "").strip().splitlines()
        record = {
            "test": item.name,
            "name": doc[0] if doc else item.name.removeprefix("test_").replace("_", " "),
            "cell": mark.kwargs["cell"],
            "max_score": float(mark.kwargs["points"]),
            "passed": report.passed,
            "message": "" if report.passed else one_line(call.excinfo.value),
            "seconds": round(report.duration, 3),
        }
        item.config._course_records.append(record)  # type: ignore[attr-defined]
        write_report(item.config)  # decided: it survives whatever happens to this process


def write_report(config: pytest.Config, complete: bool = False) -> None:
    """Write the report as it stands (atomically: a reader sees the old or the new one)."""
    path = config.getoption("--report", None)
    if not path:
        return
    sub = getattr(config, "_course_submission", None)
    data = {
        "records": config._course_records,  # type: ignore[attr-defined]
        "collected": config._course_collected,  # type: ignore[attr-defined]
        "complete": complete,
        "notes": sub.plan.notes if sub else [],
        "cells": sub.cell_report if sub else [],
        "events": sub.events if sub else [],
        "output": sub.output() if sub and complete else "",
        "worker_seconds": round(sub.used_s, 3) if sub else 0.0,
        # level and layers only: the notes name the grader's own paths, not for students
        "isolation": {k: sub.isolation[k] for k in ("level", "layers", "missing")
                      if k in sub.isolation} if sub else {},
        "not_graded": getattr(config, "_course_not_graded", ""),
        "finished": time.time(),
    }
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._course_session = session  # type: ignore[attr-defined]
    # complete only when every selected test ran to its verdict: not after a GraderFault, an
    # internal error, an interrupt or a collection error
    complete = (not getattr(session.config, "_course_not_graded", "")
                and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                                   pytest.ExitCode.NO_TESTS_COLLECTED))
    write_report(session.config, complete=complete)
