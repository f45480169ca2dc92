"""Grading the real assignments end to end.

For every assignment with ``tests/variants/<id>/expected.json``: the reference solution scores
full marks, the untouched release zero, the demo mistake partial marks, and each variant
(a folder of solution cells swapped into the reference) fails exactly the hidden tests that
``expected.json`` lists ("fail": must fail, "may_fail": allowed to fail). Results follow
Gradescope's schema and leak nothing of the hidden tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course.grading import runner
from course.grading.notebook import grade_id, nbgrader_meta, read_notebook
from course.paths import data_dir, repo_root
from course.submissions import (
    build_variant,
    reference_submission,
    release_path,
    write_notebook,
)

ROOT = repo_root()
ASSIGNMENTS = sorted(p.parent.name for p in (ROOT / "tests" / "variants").glob("*/expected.json"))

pytestmark = pytest.mark.skipif(
    not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason="MNIST is not staged: run `make data` (or `course data fetch mnist --from DIR`)",
)


def notebook_points(assignment: str) -> dict[str, float]:
    nb = read_notebook(release_path(assignment))
    return {grade_id(c): float(nbgrader_meta(c)["points"])
            for c in nb["cells"] if nbgrader_meta(c).get("grade")}


def expected(assignment: str) -> dict[str, dict[str, list[str]]]:
    return json.loads((ROOT / "tests" / "variants" / assignment / "expected.json").read_text())


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, tmp_path_factory) -> dict:
    assignment = request.param
    tmp = tmp_path_factory.mktemp(f"grading-{assignment}")
    variants = ROOT / "tests" / "variants" / assignment
    notebooks = {
        "reference": reference_submission(assignment),
        "untouched": read_notebook(release_path(assignment)),
        "partial": build_variant(assignment, ROOT / "demo" / "submissions" / assignment / "partial"),
    }
    for name in expected(assignment):
        notebooks[name] = build_variant(assignment, variants / name)
    jobs = [runner.Job(name, write_notebook(nb, tmp / "submitted" / name / f"{assignment}.ipynb"),
                       assignment) for name, nb in notebooks.items()]
    out = tmp / "grades"
    results = runner.grade_jobs(jobs, out, runner.Settings(), jobs_in_parallel=2, progress=False)
    return {"assignment": assignment, "out": out, "jobs": jobs,
            "results": {job.name: res for job, res in results}}


def failed_tests(results: dict) -> set[str]:
    return {t["extra_data"]["test"] for t in results["tests"] if t["status"] != "passed"}


def problems(results: dict) -> list[tuple[str, str]]:
    return [(t["name"], t["output"]) for t in results["tests"] if t["status"] != "passed"]


def test_reference_solution_scores_full_marks(graded):
    res = graded["results"]["reference"]
    assert res["max_score"] == sum(notebook_points(graded["assignment"]).values())
    assert res["score"] == res["max_score"], problems(res)


def test_untouched_release_scores_zero_with_clear_messages(graded):
    res = graded["results"]["untouched"]
    assert res["score"] == 0 and res["max_score"] > 0
    assert all("not implemented yet" in t["output"] for t in res["tests"]), problems(res)


def test_demo_mistake_scores_partial_marks(graded):
    res = graded["results"]["partial"]
    assert 0 < res["score"] < res["max_score"], problems(res)


def test_each_variant_fails_exactly_the_expected_tests(graded):
    for name, rule in expected(graded["assignment"]).items():
        failed = failed_tests(graded["results"][name])
        must, may = set(rule["fail"]), set(rule.get("may_fail", []))
        assert must <= failed <= must | may, (name, problems(graded["results"][name]))


def test_points_per_grade_cell_match_the_notebook(graded):
    cells = graded["results"]["reference"]["extra_data"]["cells"]
    assert {c: v["max_score"] for c, v in cells.items()} == notebook_points(graded["assignment"])


def test_results_follow_gradescope_schema(graded):
    for name, res in graded["results"].items():
        assert isinstance(res["score"], float) and isinstance(res["max_score"], float), name
        assert res["tests"], name
        for t in res["tests"]:
            assert {"name", "score", "max_score", "output", "status"} <= set(t)
            assert t["score"] in (0.0, t["max_score"])
            assert "\n" not in t["output"]


def test_results_and_feedback_leak_no_hidden_test_code(graded):
    hidden = (ROOT / "autograder" / f"test_{graded['assignment']}.py").read_text().splitlines()
    code_lines = {ln.strip() for ln in hidden
                  if len(ln.strip()) > 25 and not ln.strip().startswith(('"""', "#"))}
    for path in Path(graded["out"]).rglob("*"):
        if path.suffix in {".json", ".md", ".csv", ".txt"}:
            text = path.read_text()
            leaked = [ln for ln in code_lines if ln in text]
            assert not leaked, (path, leaked[:3])


def test_rerun_reuses_finished_results_and_grades_changed_ones(graded, tmp_path):
    out = Path(graded["out"])
    job = next(j for j in graded["jobs"] if j.name == "untouched")
    again = runner.grade_job(job, out, runner.Settings())
    assert again["extra_data"].get("reused") is True
    copy = tmp_path / "grades"
    (copy / job.name).mkdir(parents=True)
    stale = json.loads((out / job.name / "results.json").read_text())
    stale["extra_data"]["submission_sha256"] = "0" * 64  # the notebook changed since
    (copy / job.name / "results.json").write_text(json.dumps(stale))
    fresh = runner.grade_job(job, copy, runner.Settings())
    assert "reused" not in fresh["extra_data"] and fresh["score"] == 0


def test_class_csv_and_table(graded, tmp_path):
    results = [(job, graded["results"][job.name]) for job in graded["jobs"]]
    runner.write_class_csv(results, tmp_path / "grades.csv")
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("submission,assignment,score,max_score,test_")
    assert len(lines) == len(results) + 1
    full = f"{sum(notebook_points(graded['assignment']).values()):g}"
    assert re.search(rf"reference\s+{graded['assignment']}\s+{full}/{full}\s", runner.table(results))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA on this machine")
def test_reference_scores_full_marks_on_cuda(graded, tmp_path):
    job = next(j for j in graded["jobs"] if j.name == "reference")
    res = runner.grade_job(job, tmp_path, runner.Settings(device="cuda"))
    assert res["extra_data"]["device"] == "cuda"
    assert res["score"] == res["max_score"], problems(res)
