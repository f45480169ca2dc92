"""Grading submissions: one pytest run of the hidden tests per submission, in parallel.

For each submission a grader process (trusted code only) runs ``autograder/test_<id>.py``
with the :mod:`course.grading.plugin`; the plugin's worker runs the student's code. This
module turns the per-test records into a Gradescope ``results.json``, per-student feedback,
a class CSV and a printed table. Each result is written atomically as soon as its submission
is done, so a run that is killed loses nothing already graded and a rerun grades the rest
(a result is reused when the notebook and the hidden tests are unchanged).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.errors import CourseError
from course.paths import assignment_ids, repo_root
from course.submissions import release_path

RESULTS = "results.json"
FEEDBACK = "feedback.md"
GRADER_VERSION = "course-grader 1"


@dataclass(frozen=True)
class Job:
    name: str
    notebook: Path
    assignment: str


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    budget_s: float = 900.0
    threads: int = 0
    force: bool = False


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hidden_tests(assignment: str, root: Path | None = None) -> Path:
    path = (root or repo_root()) / "autograder" / f"test_{assignment}.py"
    if not path.is_file():
        raise CourseError(f"no hidden tests for {assignment!r} ({path} is missing)")
    return path


def release_notebook(assignment: str, root: Path | None = None) -> Path:
    path = release_path(assignment, root)
    if not path.is_file():
        raise CourseError(f"{path} is missing; run `course release {assignment}` first")
    return path


def guess_assignment(notebook: Path, root: Path | None = None) -> str:
    """The assignment a notebook belongs to, from its file or folder names."""
    known = assignment_ids(root)
    for part in (notebook.stem, *[p.name for p in notebook.resolve().parents]):
        if part in known:
            return part
    raise CourseError(f"cannot tell which assignment {notebook} is ({', '.join(known)}); "
                      "pass --assignment")


def submission_name(notebook: Path, assignment: str) -> str:
    """``submitted/alice/01_kmeans/01_kmeans.ipynb`` -> ``alice``; ``bob.ipynb`` -> ``bob``."""
    parts = [notebook.stem, *[p.name for p in notebook.resolve().parents]]
    for part in parts:
        if part and part != assignment:
            return part
    return notebook.stem


def class_jobs(assignment: str, submitted: Path) -> list[Job]:
    """Every ``submitted/<student>/<assignment>/<assignment>.ipynb`` (nbgrader's layout)."""
    if not submitted.is_dir():
        raise CourseError(f"{submitted} does not exist (nbgrader's submitted/ folder)")
    jobs = []
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        nb = student / assignment / f"{assignment}.ipynb"
        if nb.is_file():
            jobs.append(Job(student.name, nb, assignment))
    if not jobs:
        raise CourseError(f"no submissions of {assignment} under {submitted}/<student>/{assignment}/")
    return jobs


# -- one submission -----------------------------------------------------------------------
def run_hidden_tests(job: Job, settings: Settings, report: Path) -> tuple[int, str]:
    """Run pytest on the hidden tests for one submission in a grader process."""
    root = repo_root()
    cmd = [
        sys.executable, "-m", "pytest", str(hidden_tests(job.assignment, root)),
        "-p", "course.grading.plugin", "-p", "no:cacheprovider", "--assert=plain",
        "-o", "addopts=", "-q", "--no-header", "--tb=no", "-rN",
        "--rootdir", str(root / "autograder"),
        "--submission", str(job.notebook.resolve()),
        "--release", str(release_notebook(job.assignment, root)),
        "--device", settings.device, "--budget", str(settings.budget_s),
        "--threads", str(settings.threads), "--report", str(report),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root,
                              timeout=settings.budget_s + 120)
    except subprocess.TimeoutExpired:
        return -1, "the grader process timed out"
    return proc.returncode, (proc.stdout + proc.stderr)[-4000:]


def build_results(job: Job, data: dict[str, Any], seconds: float, settings: Settings,
                  fingerprint: dict[str, str]) -> dict[str, Any]:
    """Gradescope's results.json from the plugin's records."""
    tests, cells = [], {}
    for n, rec in enumerate(data["records"], start=1):
        score = rec["max_score"] if rec["passed"] else 0.0
        tests.append({
            "number": str(n),
            "name": rec["name"],
            "score": score,
            "max_score": rec["max_score"],
            "status": "passed" if rec["passed"] else "failed",
            "output": rec["message"],
            "tags": [rec["cell"]],
            "visibility": "visible",
            "extra_data": {"grade_id": rec["cell"], "test": rec["test"]},
        })
        cell = cells.setdefault(rec["cell"], {"score": 0.0, "max_score": 0.0})
        cell["score"] += score
        cell["max_score"] += rec["max_score"]
    lines = list(data.get("notes", []))
    for rep in data.get("cells", []):
        if not rep.get("ok"):
            lines.append(f"cell `{rep['id']}` raised {rep.get('type')}: {rep.get('message', '')}"
                         + (f" ({rep['where']})" if rep.get("where") else ""))
    lines += data.get("events", [])
    return {
        "score": round(sum(t["score"] for t in tests), 4),
        "max_score": round(sum(t["max_score"] for t in tests), 4),
        "execution_time": round(seconds, 2),
        "output": "\n".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "assignment": job.assignment,
            "submission": job.name,
            "device": settings.device,
            "cells": cells,
            **fingerprint,
        },
    }


def failed_results(job: Job, reason: str, fingerprint: dict[str, str], max_score: float) -> dict:
    return {"score": 0.0, "max_score": max_score, "execution_time": 0.0, "output": reason,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": [],
            "extra_data": {"assignment": job.assignment, "submission": job.name, **fingerprint}}


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def feedback_text(results: dict[str, Any]) -> str:
    """Per-student feedback: test names, points and messages (no hidden test code or data)."""
    ex = results.get("extra_data", {})
    out = [f"# Feedback: {ex.get('assignment', '')} ({ex.get('submission', '')})", "",
           f"**Score: {results['score']:g} / {results['max_score']:g}**", ""]
    if results.get("output"):
        out += ["Notes:", ""] + [f"- {line}" for line in results["output"].splitlines()] + [""]
    out += ["| test | points | result |", "|---|---|---|"]
    for t in results["tests"]:
        msg = t["output"].replace("|", "\\|") if t["output"] else "passed"
        out.append(f"| {t['name']} | {t['score']:g} / {t['max_score']:g} | {msg} |")
    return "\n".join(out) + "\n"


def grade_job(job: Job, out_dir: Path, settings: Settings) -> dict[str, Any]:
    """Grade one submission, write its results.json and feedback, return the results."""
    dest = out_dir / job.name
    fingerprint = {
        "submission_sha256": sha256_file(job.notebook) if job.notebook.is_file() else "",
        "tests_sha256": sha256_file(hidden_tests(job.assignment)),
        "grader": GRADER_VERSION,
    }
    previous = dest / RESULTS
    if previous.is_file() and not settings.force:
        try:
            old = json.loads(previous.read_text())
            if all(old.get("extra_data", {}).get(k) == v for k, v in fingerprint.items()):
                old["extra_data"]["reused"] = True
                return old
        except (json.JSONDecodeError, AttributeError):
            pass
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        report = Path(tmp) / "report.json"
        code, log = run_hidden_tests(job, settings, report)
        if report.is_file():
            data = json.loads(report.read_text())
            results = build_results(job, data, time.monotonic() - t0, settings, fingerprint)
            output = data.get("output", "")
        else:
            reason = _first_error_line(log) or f"the grader failed (exit {code})"
            results = failed_results(job, reason, fingerprint, 0.0)
            output = log
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "worker-output.txt").write_text(output)
    (dest / FEEDBACK).write_text(feedback_text(results))
    write_json_atomic(previous, results)  # last: its presence means "done"
    return results


def _first_error_line(log: str) -> str:
    for line in log.splitlines():
        if "SubmissionError" in line or "CourseError" in line:
            return line.split(":", 1)[-1].strip()
    for line in reversed(log.splitlines()):
        if line.strip().startswith(("E ", "ERROR")):
            return line.strip()
    return ""


# -- many submissions ---------------------------------------------------------------------
def grade_jobs(jobs: list[Job], out_dir: Path, settings: Settings, jobs_in_parallel: int = 1,
               progress: bool = True) -> list[tuple[Job, dict[str, Any]]]:
    """Grade ``jobs`` with up to ``jobs_in_parallel`` at once; results in the input order."""
    names = [j.name for j in jobs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise CourseError(f"two submissions would share the name {sorted(dupes)[0]!r}; "
                          "grade them separately or rename the files")
    results: dict[int, dict[str, Any]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="grading", unit="submission", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, jobs_in_parallel)) as pool:
        futures = {pool.submit(grade_job, job, out_dir, settings): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return [(job, results[i]) for i, job in enumerate(jobs)]


def write_class_csv(graded: list[tuple[Job, dict[str, Any]]], path: Path) -> None:
    cells: list[str] = []
    for _, res in graded:
        for c in res.get("extra_data", {}).get("cells", {}):
            if c not in cells:
                cells.append(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["submission", "assignment", "score", "max_score", *cells])
        for job, res in graded:
            per = res.get("extra_data", {}).get("cells", {})
            w.writerow([job.name, job.assignment, res["score"], res["max_score"],
                        *[per.get(c, {}).get("score", 0.0) for c in cells]])


def table(graded: list[tuple[Job, dict[str, Any]]]) -> str:
    """A plain-text grade table, one line per submission."""
    rows = [("submission", "assignment", "score", "tests passed", "time", "first problem")]
    for job, res in graded:
        tests = res["tests"]
        passed = sum(t["status"] == "passed" for t in tests)
        first = next((t["output"] for t in tests if t["status"] != "passed"), "")
        first = first or (res["output"].splitlines()[0] if res.get("output") else "")
        rows.append((job.name, job.assignment, f"{res['score']:g}/{res['max_score']:g}",
                     f"{passed}/{len(tests)}", f"{res['execution_time']:.0f}s",
                     first[:70] + ("..." if len(first) > 70 else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
        if n == 0:
            lines.append("-" * min(120, sum(widths) + 2 * len(widths) + 14))
    return "\n".join(lines)
