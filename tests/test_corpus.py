"""Broken and hostile submissions (tests/corpus.py) are contained: each finishes within its
time bound, earns no point its code did not, gets a one-line message, and leaves the scores
of honest submissions graded in the same run exactly as they are alone."""

from __future__ import annotations

import json
from pathlib import Path

import corpus
import pytest

from course.grading import runner
from course.grading.cgroups import WorkerCgroup
from course.paths import data_dir

BUDGET_S = 40.0

pytestmark = pytest.mark.skipif(
    not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason="MNIST is not staged: run `make data`",
)


CASES = [c for c in corpus.cases() if c.needs != "cgroups" or WorkerCgroup.available()]


def _jobs(folder: Path, notebooks: dict[str, bytes]) -> list[runner.Job]:
    jobs = []
    for name, content in notebooks.items():
        path = folder / name / corpus.ASSIGNMENT / f"{corpus.ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        jobs.append(runner.Job(name, path, corpus.ASSIGNMENT))
    return jobs


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("corpus")
    settings = runner.Settings(budget_s=BUDGET_S)
    alone = {}
    for job in _jobs(tmp / "alone", corpus.baselines()):
        alone[job.name] = runner.grade_job(job, tmp / "alone-grades", settings)["score"]
    notebooks = {**{c.name: c.build() for c in CASES}, **corpus.baselines()}
    jobs = _jobs(tmp / "submitted", notebooks)
    graded = runner.grade_jobs(jobs, tmp / "grades", settings, jobs_in_parallel=2,
                               progress=False)
    results = {job.name: res for job, res in graded}
    verdicts = {c.name: _verdict(c, results[c.name], results) for c in CASES}
    contained = sum(v is None for v in verdicts.values())
    request.config._corpus_summary = (  # printed at the end of the run (tests/conftest.py)
        f"hostile/broken corpus: {contained} contained of {len(CASES)} cases tried")
    return {"results": results, "alone": alone, "verdicts": verdicts, "out": tmp / "grades"}


def _failed(res: dict) -> set[str]:
    return {t["extra_data"]["test"] for t in res["tests"] if t["status"] != "passed"}


def _verdict(case: corpus.Case, res: dict, everything: dict) -> str | None:
    """None when the case is contained as expected, else what went wrong."""
    if res["execution_time"] > BUDGET_S + 90:
        return f"took {res['execution_time']:.0f} s"
    if case.score == "zero" and res["score"] != 0:
        return f"scored {res['score']} instead of 0"
    if case.score == "full" and res["score"] != res["max_score"]:
        return f"scored {res['score']} of {res['max_score']}: {sorted(_failed(res))}"
    if case.score == "at_most_zeros" and res["score"] > everything["baseline_zeros"]["score"]:
        return f"scored {res['score']}, more than its honest code earns"
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
    ref = outcome["results"]["baseline_reference"]
    assert ref["score"] == ref["max_score"]


def test_nothing_on_disk_was_forged(outcome):
    for name, res in outcome["results"].items():
        on_disk = json.loads((outcome["out"] / name / "results.json").read_text())
        assert on_disk["score"] == res["score"], name
