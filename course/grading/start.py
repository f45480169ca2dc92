"""Entry point of a grader started as a process: its worker is launched before pytest loads.

``python -P -m course.grading.start ARGS`` runs ``pytest ARGS`` as ``python -m pytest`` would,
but first starts the submission's worker (``--submission``, ``--release``, ``--device``,
``--threads``, ``--allow-weak-isolation``: the plugin's options, read here without pytest):
importing pytest and configuring it took 0.15 to 0.25 s of each grading before the plugin's
``pytest_configure`` launched the worker, whose start (torch, the notebook's preloads) is
what a grading of one submission waits for. The plugin adopts the worker when its options are
the same (:func:`course.grading.session.take_prelaunched`) and launches its own otherwise.
A grader forked from a server (a class) does not come here: its worker forks from a template.
"""

from __future__ import annotations

import argparse
import sys

from course.grading import session  # imports no torch: the worker imports it beside us


def worker_request(argv: list[str]) -> session.WorkerRequest | None:
    """The worker the plugin will ask for, read from pytest's command line (None when the
    run grades nothing: no submission, or only collecting)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--submission")
    parser.add_argument("--release")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--allow-weak-isolation", action="store_true")
    parser.add_argument("--collect-only", "--co", action="store_true")
    try:
        known, _ = parser.parse_known_args(argv)
    except SystemExit:  # a malformed option: pytest says what is wrong with it
        return None
    if not known.submission or known.collect_only:
        return None
    return session.WorkerRequest(known.device, known.threads, known.allow_weak_isolation,
                                 known.release)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = worker_request(argv)
    if request is not None:
        session.prelaunch(request)
    import pytest

    code = pytest.main(argv)
    # here only when the plugin did not end the process (pytest stopped before configuring
    # it, or nothing was graded): a worker it did not adopt is stopped
    session.discard_prelaunched()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
