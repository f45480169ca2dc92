"""Grading the real assignments: the reference solution scores full marks, the untouched
release zero, the demo and test variants exactly what their mistakes cost; results are in
Gradescope's schema and leak nothing of the hidden tests."""

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
ASSIGNMENT = "01_kmeans"
VARIANTS = ROOT / "tests" / "variants" / ASSIGNMENT

pytestmark = pytest.mark.skipif(
    not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
    reason="MNIST is not staged: run `make data` (or `course data fetch mnist --from DIR`)",
)


def notebook_points(assignment: str) -> dict[str, float]:
    nb = read_notebook(release_path(assignment))
    return {grade_id(c): float(nbgrader_meta(c)["points"])
            for c in nb["cells"] if nbgrader_meta(c).get("grade")}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("grading")
    notebooks = {
        "reference": reference_submission(ASSIGNMENT),
        "untouched": read_notebook(release_path(ASSIGNMENT)),
        "partial": build_variant(ASSIGNMENT, ROOT / "demo" / "submissions" / ASSIGNMENT / "partial"),
    }
    for variant in sorted(p for p in VARIANTS.iterdir() if p.is_dir()):
        notebooks[variant.name] = build_variant(ASSIGNMENT, variant)
    jobs = [runner.Job(name, write_notebook(nb, tmp / "submitted" / name / f"{ASSIGNMENT}.ipynb"),
                       ASSIGNMENT) for name, nb in notebooks.items()]
    out = tmp / "grades"
    results = runner.grade_jobs(jobs, out, runner.Settings(), jobs_in_parallel=2, progress=False)
    graded = {job.name: res for job, res in results}
    graded["__out__"] = {"path": str(out), "jobs": jobs}
    return graded


def failed_tests(results: dict) -> set[str]:
    return {t["extra_data"]["test"] for t in results["tests"] if t["status"] != "passed"}


def test_reference_solution_scores_full_marks(graded):
    res = graded["reference"]
    assert res["max_score"] == sum(notebook_points(ASSIGNMENT).values())
    assert res["score"] == res["max_score"], failed_tests(res)


def test_alternative_correct_solution_scores_full_marks(graded):
    res = graded["alternative_correct"]
    assert res["score"] == res["max_score"], [
        (t["name"], t["output"]) for t in res["tests"] if t["status"] != "passed"]


def test_untouched_release_scores_zero_with_clear_messages(graded):
    res = graded["untouched"]
    assert res["score"] == 0 and res["max_score"] > 0
    assert all("not implemented yet" in t["output"] for t in res["tests"]), [
        t["output"] for t in res["tests"]]


def test_demo_mistake_scores_partial_marks(graded):
    res = graded["partial"]
    assert 0 < res["score"] < res["max_score"]


def test_per_point_loop_fails_only_the_speed_tests(graded):
    failed = failed_tests(graded["per_point_loop"])
    assert "test_kmeans_fast" in failed
    assert failed <= {"test_kmeans_fast", "test_pairwise_fast"}, failed


def test_wrong_empty_cluster_rule_is_caught(graded):
    assert failed_tests(graded["wrong_empty_cluster"]) == {
        "test_update_empty_cluster_keeps_old_centre"}


def test_pca_without_centring_is_caught(graded):
    failed = failed_tests(graded["pca_no_centering"])
    assert failed and failed <= {"test_pca_matches_sklearn", "test_pca_on_mnist"}, failed


def test_points_per_grade_cell_match_the_notebook(graded):
    cells = graded["reference"]["extra_data"]["cells"]
    assert {c: v["max_score"] for c, v in cells.items()} == notebook_points(ASSIGNMENT)


def test_results_follow_gradescope_schema(graded):
    for name, res in graded.items():
        if name.startswith("__"):
            continue
        assert isinstance(res["score"], float) and isinstance(res["max_score"], float)
        assert res["tests"], name
        for t in res["tests"]:
            assert {"name", "score", "max_score", "output", "status"} <= set(t)
            assert t["score"] in (0.0, t["max_score"])
            assert "\n" not in t["output"]


def test_results_and_feedback_leak_no_hidden_test_code(graded):
    hidden = (ROOT / "autograder" / f"test_{ASSIGNMENT}.py").read_text().splitlines()
    code_lines = {ln.strip() for ln in hidden if len(ln.strip()) > 25 and not ln.strip().startswith(('"""', "#"))}
    out = Path(graded["__out__"]["path"])
    for path in out.rglob("*"):
        if path.suffix in {".json", ".md", ".csv"}:
            text = path.read_text()
            leaked = [ln for ln in code_lines if ln in text]
            assert not leaked, (path, leaked[:3])


def test_rerun_reuses_finished_results_and_grades_the_rest(graded, tmp_path):
    out = Path(graded["__out__"]["path"])
    job = next(j for j in graded["__out__"]["jobs"] if j.name == "untouched")
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
    results = [(job, graded[job.name]) for job in graded["__out__"]["jobs"]]
    runner.write_class_csv(results, tmp_path / "grades.csv")
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0].startswith("submission,assignment,score,max_score,test_")
    assert len(lines) == len(results) + 1
    text = runner.table(results)
    full = f"{sum(notebook_points(ASSIGNMENT).values()):g}"
    assert re.search(rf"reference\s+{ASSIGNMENT}\s+{full}/{full}\s", text), text
