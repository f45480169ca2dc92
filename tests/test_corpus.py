"""Broken and hostile submissions (tests/corpus.py) are contained: each finishes within its
time bound, earns no point its code did not, gets a one-line message, and leaves the scores
of honest submissions graded in the same run exactly as they are alone. Nothing a case starts
outlives the grading, and the grader never runs code a case sends back."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import corpus
import pytest

from course.grading import runner
from course.grading.cgroups import WorkerCgroup
from course.grading.sandbox import _isolation_prefix
from course.paths import data_dir

#: Time budget of one submission, per assignment: the references take 15 to 50 s alone on two
#: busy cores; cases that hang have a smaller budget of their own (they spend all of it).
BUDGET_S = {corpus.ASSIGNMENT: 40.0, corpus.GD: 120.0, corpus.AE: 120.0}

pytestmark = pytest.mark.skipif(
    not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason="MNIST is not staged: run `make data`",
)

AVAILABLE = {
    "": True,
    "cgroups": WorkerCgroup.available(),
    "pidns": "--pid" in _isolation_prefix(),
    "lockdown": "--mount" in _isolation_prefix(),
}
CASES = [c for c in corpus.cases() if AVAILABLE[c.needs]]
#: Baselines also graded alone, to compare with their scores in the crowded run.
ALONE = ("baseline_reference", "baseline_zeros", "gd_baseline_reference",
         "ae_baseline_reference")


def _jobs(folder: Path, notebooks: dict[str, tuple[str, bytes]]) -> list[runner.Job]:
    jobs = []
    for name, (assignment, content) in notebooks.items():
        path = folder / name / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        jobs.append(runner.Job(name, path, assignment))
    return jobs


def _grade(jobs: list[runner.Job], out: Path, parallel: int,
           budgets: dict[str, float]) -> dict[str, dict]:
    """Grade each job with its budget, ``parallel`` at a time (largest budget first)."""
    jobs = sorted(jobs, key=lambda j: -budgets[j.name])
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {job.name: pool.submit(runner.grade_job, job, out,
                                         runner.Settings(budget_s=budgets[job.name]))
                   for job in jobs}
        return {name: fut.result() for name, fut in futures.items()}


def _survivors() -> list[str]:
    """Processes on this machine whose command line carries the corpus daemon's mark."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if corpus.DAEMON_MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("corpus")
    Path(corpus.PWNED).unlink(missing_ok=True)
    base = corpus.baselines()
    budgets = {**{n: BUDGET_S[a] for n, (a, _) in base.items()},
               **{c.name: c.budget_s or BUDGET_S[c.assignment] for c in CASES}}
    alone = {name: res["score"] for name, res in
             _grade(_jobs(tmp / "alone", {n: base[n] for n in ALONE}), tmp / "alone-grades",
                    1, budgets).items()}
    notebooks = {**{c.name: (c.assignment, c.build()) for c in CASES}, **base}
    results = _grade(_jobs(tmp / "submitted", notebooks), tmp / "grades", 2, budgets)
    verdicts = {c.name: _verdict(c, results[c.name], results, budgets[c.name]) for c in CASES}
    contained = sum(v is None for v in verdicts.values())
    request.config._corpus_summary = (  # printed at the end of the run (tests/conftest.py)
        f"hostile/broken corpus: {contained} contained of {len(CASES)} cases tried")
    return {"results": results, "alone": alone, "verdicts": verdicts, "out": tmp / "grades",
            "survivors": _survivors(), "pwned": Path(corpus.PWNED).exists()}


def _failed(res: dict) -> set[str]:
    return {t["extra_data"]["test"] for t in res["tests"] if t["status"] != "passed"}


def _verdict(case: corpus.Case, res: dict, everything: dict, budget: float) -> str | None:
    """None when the case is contained as expected, else what went wrong."""
    if res["execution_time"] > budget + 90:
        return f"took {res['execution_time']:.0f} s"
    if case.score == "zero" and res["score"] != 0:
        return f"scored {res['score']} instead of 0"
    if case.score == "full" and res["score"] != res["max_score"]:
        return f"scored {res['score']} of {res['max_score']}: {sorted(_failed(res))}"
    limit = "baseline_zeros" if case.score == "at_most_zeros" else case.at_most
    if limit and res["score"] > everything[limit]["score"]:
        return (f"scored {res['score']}, more than its honest code earns "
                f"({everything[limit]['score']}): passed "
                f"{sorted(_failed(everything[limit]) - _failed(res))}")
    if case.fail is not None:
        failed = _failed(res)
        if not case.fail <= failed <= case.fail | case.may_fail:
            return f"failed {sorted(failed)} instead of {sorted(case.fail)}"
    if any("\n" in t["output"] for t in res["tests"]):
        return "a message spans several lines"
    if case.message:
        texts = [t["output"] for t in res["tests"] if t["status"] != "passed"] + [res["output"]]
        if not any(case.message in text for text in texts):
            return f"no message mentions {case.message!r}: {texts[:2]}"
    return None


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_case_is_contained(outcome, case):
    assert outcome["verdicts"][case] is None, outcome["verdicts"][case]


def test_honest_submissions_score_as_when_graded_alone(outcome):
    for name, score in outcome["alone"].items():
        assert outcome["results"][name]["score"] == score, name
    for name in ("baseline_reference", "gd_baseline_reference", "ae_baseline_reference"):
        ref = outcome["results"][name]
        assert ref["score"] == ref["max_score"], (name, sorted(_failed(ref)))


def test_nothing_on_disk_was_forged(outcome):
    for name, res in outcome["results"].items():
        on_disk = json.loads((outcome["out"] / name / "results.json").read_text())
        assert on_disk["score"] == res["score"], name


def test_nothing_a_case_started_outlives_grading(outcome):
    assert not outcome["survivors"], f"still running: {outcome['survivors']}"


def test_the_grader_never_ran_code_a_case_sent_back(outcome):
    assert not outcome["pwned"]
