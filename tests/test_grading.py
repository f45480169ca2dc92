"""Grading the real assignments end to end.

For every assignment with ``tests/variants/<id>/expected.json``: the reference solution scores
full marks, the untouched release zero, the demo mistake partial marks, and each variant
(a folder of solution cells swapped into the reference) fails exactly the hidden tests that
``expected.json`` lists ("fail": must fail, "may_fail": allowed to fail); variants of different
functions are graded together (``packed``), their failures the union of theirs. Results follow
Gradescope's schema, and no file the run produces holds hidden test code, reference solution
code, reference values or the tests' own data (the grader processes record those values with
tests/audit_plugin.py, and every artefact is grepped for them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from course.grading import runner
from course.grading.notebook import grade_id, nbgrader_meta, read_notebook
from course.paths import data_dir, repo_root
from course.submissions import (
    apply_variant,
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


def packed(assignment: str) -> list[list[str]]:
    """The variants of ``assignment`` in groups graded as one submission each: variants that
    replace different cells and may fail disjoint sets of tests (each a fault confined to its
    own function's tests, the stand-ins seeing to that) share a notebook, so grading takes a
    few submissions per assignment instead of one per variant. A group's failures must be the
    union of its members' (test_each_variant_fails_exactly_the_expected_tests); a failure
    outside every member's list is caught, one inside another member's list is not told apart.
    """
    rules = expected(assignment)
    folder = ROOT / "tests" / "variants" / assignment
    cells = {n: {f.stem for f in (folder / n).glob("*.py")} for n in rules}
    tests = {n: set(r["fail"]) | set(r.get("may_fail", [])) for n, r in rules.items()}
    groups: list[list[str]] = []
    for name in rules:
        for group in groups:
            if all(not cells[name] & cells[m] and not tests[name] & tests[m] for m in group):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def group_name(group: list[str]) -> str:
    return group[0] if len(group) == 1 else f"{group[0]}-and-{len(group) - 1}-more"


def grade_notebooks(assignment: str, notebooks: dict[str, dict], tmp: Path) -> dict:
    """Grade ``notebooks`` (name: notebook) of ``assignment`` two at a time, with the grader
    processes recording the reference values they compare against (tests/audit_plugin.py)."""
    jobs = [runner.Job(name, write_notebook(nb, tmp / "submitted" / name / f"{assignment}.ipynb"),
                       assignment) for name, nb in notebooks.items()]
    out = tmp / "grades"
    audit = tmp / "audit"
    with pytest.MonkeyPatch.context() as mp:  # the grader processes record reference values
        mp.setenv("PYTEST_PLUGINS", "audit_plugin")
        mp.setenv("COURSE_AUDIT_DIR", str(audit))
        mp.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p))
        results = runner.grade_jobs(jobs, out, runner.Settings(), jobs_in_parallel=2,
                                    progress=False)
    recorded = [torch.load(f, weights_only=True) for f in sorted(audit.glob("*.pt"))]
    return {"assignment": assignment, "out": out, "jobs": jobs, "recorded": recorded,
            "results": {job.name: res for job, res in results}}


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request, tmp_path_factory) -> dict:
    """The reference, the untouched release and the demo mistake of each assignment, graded."""
    assignment = request.param
    return grade_notebooks(assignment, {
        "reference": reference_submission(assignment),
        "untouched": read_notebook(release_path(assignment)),
        "partial": build_variant(assignment, ROOT / "demo" / "submissions" / assignment / "partial"),
    }, tmp_path_factory.mktemp(f"grading-{assignment}"))


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded_variants(request, tmp_path_factory) -> dict:
    """The packed variant groups of each assignment, graded (the extended suite only)."""
    assignment = request.param
    variants = ROOT / "tests" / "variants" / assignment
    notebooks = {}
    for group in packed(assignment):
        nb = reference_submission(assignment)
        for name in group:
            nb = apply_variant(nb, variants / name)
        notebooks[group_name(group)] = nb
    return grade_notebooks(assignment, notebooks,
                           tmp_path_factory.mktemp(f"variants-{assignment}"))


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


@pytest.mark.extended
def test_each_variant_fails_exactly_the_expected_tests(graded_variants):
    rules = expected(graded_variants["assignment"])
    for group in packed(graded_variants["assignment"]):
        res = graded_variants["results"][group_name(group)]
        failed = failed_tests(res)
        must = set().union(*(rules[n]["fail"] for n in group))
        may = set().union(*(rules[n].get("may_fail", []) for n in group))
        assert must <= failed <= must | may, (group, sorted(failed - must - may),
                                              sorted(must - failed), problems(res))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_packed_groups_keep_variants_apart(assignment):
    """Variants graded together replace different cells and expect disjoint failures, and
    each variant is in exactly one group."""
    rules = expected(assignment)
    folder = ROOT / "tests" / "variants" / assignment
    groups = packed(assignment)
    assert sorted(n for g in groups for n in g) == sorted(rules)
    for group in groups:
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                cells_a = {f.stem for f in (folder / a).glob("*.py")}
                cells_b = {f.stem for f in (folder / b).glob("*.py")}
                assert not cells_a & cells_b, (a, b)
                tests_a = set(rules[a]["fail"]) | set(rules[a].get("may_fail", []))
                tests_b = set(rules[b]["fail"]) | set(rules[b].get("may_fail", []))
                assert not tests_a & tests_b, (a, b)


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


# -- nothing secret in any artefact ------------------------------------------------------------
def hidden_test_lines(assignment: str) -> set[str]:
    """Non-trivial code lines of the hidden tests (docstring first lines are the public test
    names, so docstrings and comments are left out)."""
    lines = (ROOT / "autograder" / f"test_{assignment}.py").read_text().splitlines()
    return {ln.strip() for ln in lines
            if len(ln.strip()) > 25 and not ln.strip().startswith(('"""', "#"))}


def solution_lines(assignment: str) -> set[str]:
    """Non-trivial lines between ### BEGIN SOLUTION and ### END SOLUTION in the source
    notebook that the release does not show anyway."""
    source = read_notebook(ROOT / "source" / assignment / f"{assignment}.ipynb")
    public = json.dumps(read_notebook(release_path(assignment)))
    lines = set()
    for cell in source["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, re.S):
            for ln in block.splitlines():
                ln = ln.strip()
                if len(re.sub(r"\s", "", ln)) >= 16 and json.dumps(ln)[1:-1] not in public:
                    lines.add(ln)
    return lines


NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+)(?:[eE]([+-]?\d+))?")


def printed_numbers(text: str) -> list[tuple[str, float, float, int]]:
    """Decimal numbers in ``text``, in order: (as printed, value, half the width of the values
    that print so, significant digits). Signs are dropped; numbers with fewer than 3
    significant digits (0.5, 1.25e-3, 100.0) say too little to count."""
    out = []
    for m in NUMBER.finditer(text):
        mantissa, exp = m.group(1), int(m.group(2) or 0)
        digits = len(mantissa.replace(".", "").lstrip("0").rstrip("0"))
        if digits >= 3:
            decimals = len(mantissa.split(".")[1])
            out.append((m.group(0), float(mantissa) * 10.0**exp,
                        0.5 * 10.0 ** (exp - decimals), digits))
    return out


def leaked_values(text: str, recorded: list[torch.Tensor]) -> list[str]:
    """Recorded values that ``text`` prints, in any format (repr, f"{v:.4f}", f"{v:.3g}",
    scientific, str(tensor), tolist()). A number counts when it is a small tensor's entry
    (8 or fewer non-integer entries, e.g. a scalar), when it has at least 6 significant
    digits, or when numbers in a row are neighbouring entries of one tensor (what printing a
    tensor or a list shows) and a run that long is unlikely by chance (in a tensor of
    millions of entries, "1.25, 1.25" finds neighbours anyway); integers are ignored."""
    numbers = printed_numbers(text)
    found = []
    for values in recorded:
        a = values.abs().numpy().astype(np.float64)
        a[~np.isfinite(a) | (a == np.round(a))] = np.nan
        order = np.argsort(a)[: int(np.count_nonzero(~np.isnan(a)))]
        ordered = a[order]
        small = len(order) <= 8
        hits = []
        for shown, value, half, digits in numbers:
            tol = half + 1e-7 * value
            lo = np.searchsorted(ordered, value - tol, side="left")
            hi = np.searchsorted(ordered, value + tol, side="right")
            idx = set(order[lo:hi].tolist())
            hits.append(idx)
            if idx and (small or digits >= 6):
                found.append(shown)
        n = max(len(order), 1)
        for j in range(len(numbers) - 1):
            # a run of printed numbers that are consecutive entries; it counts once a run that
            # long would match by chance less than once in a thousand tensors this size
            run, chance = hits[j], float(len(hits[j]))
            for k in range(j + 1, min(j + 8, len(numbers))):
                run = {i + 1 for i in run} & hits[k]
                chance *= len(hits[k]) / n
                if not run:
                    break
                if chance < 1e-3:
                    found.append(", ".join(shown for shown, *_ in numbers[j:k + 1]))
                    break
    return found


#: "points / max" as the grader prints scores (every point value is a multiple of 0.25)
SCORE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?) / (\d+(?:\.\d+)?)(?![\w.])")


def _drop_scores(node):
    if isinstance(node, dict):
        return {k: _drop_scores(v) for k, v in node.items()
                if k not in ("score", "max_score", "execution_time")}
    if isinstance(node, list):
        return [_drop_scores(v) for v in node]
    return node


#: a duration as the grader prints what it measured ("computed for 1.62 s", "allowed 0.30 s")
DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)? s\b")


def without_scores(path: Path, text: str) -> str:
    """``text`` less the figures the grader makes itself, which are no reference values but
    print like one (a cell's 1.75 of 2 as "1.75" matches a small tensor's 1.7512): the score,
    max_score and execution_time (seconds) fields of a JSON file, "points / max" pairs of
    multiples of 0.25 elsewhere, and durations in seconds (a speed test's "computed for 1.62 s"
    matched a recorded 1.6228 of 02's seven-entry theta by chance and failed a CI run, and a
    results.json's "execution_time": 2.97 a recorded 2.97... another). The rest of the messages,
    where test or student text goes, is kept."""
    if path.suffix == ".json":
        try:
            text = json.dumps(_drop_scores(json.loads(text)), indent=1)
        except ValueError:
            pass
    else:
        def score(m: re.Match) -> str:
            quarters = all(float(v) * 4 == round(float(v) * 4) for v in m.groups())
            return "" if quarters else m.group(0)
        text = SCORE.sub(score, text)
    return DURATION.sub("", text)


def artefacts(out: Path) -> dict[Path, str]:
    """Every file a grading run wrote (results, feedback, worker output, anything else)."""
    return {p: p.read_text(errors="replace") for p in sorted(Path(out).rglob("*"))
            if p.is_file()}


def assert_recorded(graded: dict) -> None:
    """The leak test is only as good as what the grader processes recorded."""
    assert len(graded["recorded"]) == len(graded["jobs"])
    # the submission that passes the most tests (the reference, or a variant close to it)
    # compared against at least 5 reference values
    most = max(len(r["expected"]) for r in graded["recorded"])
    assert most >= 5, most


def test_recorder_saw_the_reference_values(graded):
    assert_recorded(graded)


def test_no_artefact_leaks_tests_solutions_reference_values_or_data(graded):
    """Requirement 3: grep every produced file for hidden test code, reference solution code,
    the reference values hidden tests compare against and the data they generate."""
    assert_no_leaks(graded)


@pytest.mark.extended
def test_no_artefact_of_a_mistaken_variant_leaks_anything(graded_variants):
    """The same for the variant groups, whose failing tests say the most."""
    assert_recorded(graded_variants)
    assert_no_leaks(graded_variants)


def assert_no_leaks(graded: dict) -> None:
    code = hidden_test_lines(graded["assignment"]) | solution_lines(graded["assignment"])
    values = [t for r in graded["recorded"] for key in ("expected", "inputs") for t in r[key]]
    files = artefacts(graded["out"])
    assert any(p.name == "results.json" for p in files) and any(
        p.name == "feedback.md" for p in files)
    for path, text in files.items():
        leaked = [ln for ln in code if ln in text]
        assert not leaked, (path, leaked[:3])
        numbers = leaked_values(without_scores(path, text), values)
        assert not numbers, (path, numbers[:5])


def test_leak_detector_finds_printed_reference_values():
    """The detector itself: every usual way of printing a reference value is caught, and
    ordinary messages are not flagged."""
    g = torch.Generator().manual_seed(0)
    big = torch.randn(300, 7, generator=g, dtype=torch.float64) * 40
    scalar = torch.tensor([0.8213117], dtype=torch.float64)
    rec = [big.reshape(-1), scalar]
    assert not leaked_values("pca is wrong in 12 of 100 entries (largest relative error "
                             "0.31); took 2.35 s, allowed 5.0 s; NMI 0.452", rec)
    for text in (f"expected {big[:2]}", f"want {big[0].tolist()}",
                 f"entry (3, 2) should be {big[3, 2].item()!r}", f"accuracy {scalar.item():.4f}",
                 f"accuracy {scalar.item():.3g}", f"got 0.1, want {scalar}",
                 f"row {big[5, :3].numpy()}", f"{big[1, 1].item():.6e}"):
        assert leaked_values(text, rec), text
    huge = torch.randn(4_000_000, generator=g, dtype=torch.float64)
    assert not leaked_values("1.25 / 1.25 points; 1.25, 1.25, 0.750", [huge])
    for text in (f"{huge[:6]}", ", ".join(f"{v:.3g}" for v in huge[100:108].tolist()),
                 f"{huge[7:9].tolist()}"):
        assert leaked_values(text, [huge]), text
    # scores: a cell's 1.75 of 2 next to a recorded 1.7512 is no leak; the same number in a
    # message is
    near = [torch.tensor([1.7512, -0.31], dtype=torch.float64)]
    report = {"score": 12.75, "tests": [{"score": 1.75, "max_score": 2.0, "output": "{}"}],
              "extra_data": {"cells": {"c": {"score": 1.75, "max_score": 2.0}}}}
    clean = json.dumps(report)
    assert leaked_values(clean, near)  # what the old scan flagged
    assert not leaked_values(without_scores(Path("results.json"), clean), near)
    told = clean.replace('"{}"', '"got 0.2, want 1.75"')
    assert leaked_values(without_scores(Path("results.json"), told), near)
    md = "**Score: 12.75 / 16**\n| mse | 1.75 / 2 | passed |\n| pca | 0 / 1 | want 1.75, got 0.2 |"
    assert leaked_values(without_scores(Path("feedback.md"), md), near) == ["1.75"]
    assert leaked_values(without_scores(Path("feedback.md"), "got 1.751 / 2"), near)
    # durations: a speed test's measured seconds next to a recorded 1.6228 are no leak, in
    # JSON or markdown; the same number as a value is, and so is "1.62 seconds" or "1.62s"
    theta = [torch.tensor([1.6228, -1.1757, -3.128, 3.9559], dtype=torch.float64)]
    timed = "mse_grad computed for 1.62 s for 200,000 examples (allowed 0.30 s): use one"
    assert leaked_values(timed, theta)
    for name, text in (("results.json", json.dumps({"tests": [{"output": timed}]})),
                       ("feedback.md", f"| mse_grad | 0 / 1 | {timed} |")):
        assert not leaked_values(without_scores(Path(name), text), theta), name
        told = text.replace("(allowed", "(want 1.62, allowed")
        assert leaked_values(without_scores(Path(name), told), theta), name
    for text in ("theta[0] 1.62 seconds", "1.62s", "theta 1.62 shown"):
        assert leaked_values(without_scores(Path("feedback.md"), text), theta), text
    # how long the grading took (Gradescope's execution_time) is no leak; a message is
    timing = json.dumps({"execution_time": 1.62, "tests": [{"output": "ok"}]})
    assert leaked_values(timing, theta)
    assert not leaked_values(without_scores(Path("results.json"), timing), theta)
    assert leaked_values(without_scores(Path("results.json"), timing.replace('"ok"', '"1.62"')),
                         theta)


def test_solution_and_test_lines_are_found():
    """The code lists are not empty (a renamed marker would silently test nothing)."""
    for assignment in ASSIGNMENTS:
        assert len(solution_lines(assignment)) >= 10, assignment
        assert len(hidden_test_lines(assignment)) >= 50, assignment


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
    assert lines[0].startswith("submission,assignment,score,max_score,status,test_")
    assert len(lines) == len(results) + 1
    full = f"{sum(notebook_points(graded['assignment']).values()):g}"
    assert re.search(rf"reference\s+{graded['assignment']}\s+{full}/{full}\s", runner.table(results))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA on this machine")
def test_reference_scores_full_marks_on_cuda(graded, tmp_path):
    job = next(j for j in graded["jobs"] if j.name == "reference")
    res = runner.grade_job(job, tmp_path, runner.Settings(device="cuda"))
    assert res["extra_data"]["device"] == "cuda"
    assert res["score"] == res["max_score"], problems(res)


@pytest.mark.extended
def test_nbgrader_autograde_and_export_store_course_grade_scores(graded_variants, tmp_path):
    """For every assignment: nbgrader autograde of a submission with partial marks (a variant
    group; reusing this run's signed results, as it does after `course grade --class`) stores
    per cell, and `nbgrader export` reports in total, exactly the scores `course grade` gave."""
    graded = graded_variants
    import csv

    from nbgrader.api import Gradebook
    from nbgrader_helpers import nbgrader, new_course

    a = graded["assignment"]
    root = new_course(tmp_path / "course")
    nbgrader(root, "generate_assignment", a)
    job = next(j for j in graded["jobs"]
               if 0 < graded["results"][j.name]["score"] < graded["results"][j.name]["max_score"])
    student = job.name  # the results are reused only under the name they were graded as
    (root / "submitted" / student / a).mkdir(parents=True)
    shutil.copy(job.notebook, root / "submitted" / student / a / f"{a}.ipynb")
    shutil.copytree(Path(graded["out"]) / student, root / "grades" / a / student)
    proc = nbgrader(root, "autograde", a)
    assert "(results reused)" in proc.stdout + proc.stderr  # no second grading
    want = graded["results"][job.name]
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for cell, score in want["extra_data"]["cells"].items():
            assert gb.find_grade(cell, a, a, student).auto_score == pytest.approx(
                score["score"]), cell
    nbgrader(root, "export", "--CsvExportPlugin.to=export.csv")
    with open(root / "export.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["student_id"] == student)
    assert float(row["score"]) == pytest.approx(want["score"])
    assert float(row["max_score"]) == pytest.approx(want["max_score"])
