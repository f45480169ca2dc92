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
import functools
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.errors import CourseError
from course.grading import integrity
from course.grading.plaintext import MAX_MESSAGE, MAX_TYPE, MAX_WHERE, markdown, one_line
from course.paths import assignment_ids, repo_root
from course.submissions import release_path

RESULTS = "results.json"
FEEDBACK = "feedback.md"
GRADER_VERSION = "course-grader 2"  # 2: results are signed (integrity.sign)
#: Largest report.json / results.json the grader reads (they are a few hundred KiB at most).
MAX_JSON_BYTES = 64 * 2**20
#: Lines of notes in results.json and feedback.md (plan notes, failed cells, events); more
#: are summarised in one last line.
MAX_NOTES = 50
#: Gradescope shows these fields as plain text (its default, "simple_format", renders some
#: HTML): messages from student code must never format the page.
PLAIN_TEXT = {"output_format": "text", "test_output_format": "text", "test_name_format": "text"}


class NotGraded(CourseError):
    """The grader could not give a verdict (for instance the sandbox was too weak); nothing was
    written for the submission, so a rerun grades it."""


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
    allow_weak_isolation: bool = False  # grade even where the sandbox is below "contained"


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
#: The grader process's address-space cap (RLIMIT_AS) on the CPU; on CUDA none, as CUDA maps
#: huge address ranges. Measured grading 04_contrastive's reference with ``course grade``
#: (MNIST loaded, 1.6M-parameter reference autoencoders trained in the grader, all 18 tests
#: passing): VmPeak 1.41 GiB with 2 torch threads (peak RSS 0.85 GiB), 2.4 GiB with 16 and
#: 6.3 GiB with 64 (threads set in the grader, one malloc arena each), as every thread
#: reserves ~80 MiB of address space (its 64 MiB malloc arena, its stack). The cap leaves room
#: for a 256 MiB reply and the checks' copies of it: 4 GiB plus 128 MiB per CPU, at least 8 GiB.
GRADER_MEMORY_BASE = 4 * 2**30
GRADER_MEMORY_PER_CPU = 128 * 2**20
GRADER_MEMORY_MIN = 8 * 2**30


def grader_memory_bytes() -> int:
    """The address-space cap of a grader process on this machine (see ``GRADER_MEMORY_*``)."""
    cap = max(GRADER_MEMORY_MIN, GRADER_MEMORY_BASE + GRADER_MEMORY_PER_CPU * (os.cpu_count() or 1))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    return cap if hard == resource.RLIM_INFINITY else min(cap, hard)


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
        *(["--allow-weak-isolation"] if settings.allow_weak_isolation else []),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
    try:
        cap = grader_memory_bytes()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root,
                              timeout=settings.budget_s + 120,
                              preexec_fn=functools.partial(resource.setrlimit, resource.RLIMIT_AS,
                                                           (cap, cap))
                              if settings.device == "cpu" else None)
    except subprocess.TimeoutExpired:
        return -1, "the grader process timed out"
    return proc.returncode, (proc.stdout + proc.stderr)[-4000:]


def build_results(job: Job, data: dict[str, Any], seconds: float, settings: Settings,
                  fingerprint: dict[str, str]) -> dict[str, Any]:
    """Gradescope's results.json from the plugin's records. Raises :class:`NotGraded` when
    the grader could not run the student's code safely (nothing may be recorded then)."""
    if data.get("not_graded"):
        raise NotGraded(f"{job.name}: not graded: {data['not_graded']}")
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
    # plan notes, failed cells and events all carry student-influenced text (cell ids, type
    # names, messages, where-fields from the worker): each becomes one bounded line
    lines = [one_line(note) for note in data.get("notes", [])]
    for rep in data.get("cells", []):
        if isinstance(rep, dict) and not rep.get("ok"):
            where = one_line(rep.get("where") or "", MAX_WHERE)
            lines.append(f"cell `{one_line(rep.get('id'), MAX_TYPE)}` raised "
                         f"{one_line(rep.get('type') or 'Error', MAX_TYPE)}: "
                         f"{one_line(rep.get('message') or '', MAX_MESSAGE)}"
                         + (f" ({where})" if where else ""))
    lines += [one_line(event) for event in data.get("events", [])]
    if len(lines) > MAX_NOTES:
        lines[MAX_NOTES - 1:] = [f"... and {len(lines) - MAX_NOTES + 1} more notes"]
    return {
        "score": round(sum(t["score"] for t in tests), 4),
        "max_score": round(sum(t["max_score"] for t in tests), 4),
        "execution_time": round(seconds, 2),
        "output": "\n".join(lines),
        **PLAIN_TEXT,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "assignment": job.assignment,
            "submission": job.name,
            "device": settings.device,
            "cells": cells,
            "isolation": data.get("isolation") or {},
            **fingerprint,
        },
    }


def failed_results(job: Job, reason: str, fingerprint: dict[str, str], max_score: float) -> dict:
    return {"score": 0.0, "max_score": max_score, "execution_time": 0.0,
            "output": one_line(reason), **PLAIN_TEXT,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": [],
            "extra_data": {"assignment": job.assignment, "submission": job.name, **fingerprint}}


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` all at once: a new private file beside it (random name, created
    exclusively), synced, then renamed over ``path``; a link planted at ``path`` is replaced,
    never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def feedback_text(results: dict[str, Any]) -> str:
    """Per-student feedback: test names, points and messages (no hidden test code or data).

    Every piece of text in it is escaped (:func:`plaintext.markdown`): a message cannot add a
    line, a heading, a score or a table row, only show up as literal text. Its lines are the
    header (4), the notes (3 plus one per line of ``output``, when there is any), the table
    head (2) and one row per test."""
    ex = results.get("extra_data", {})
    out = [f"# Feedback: {markdown(ex.get('assignment', ''), 80)} "
           f"({markdown(ex.get('submission', ''), 80)})", "",
           f"**Score: {float(results['score']):g} / {float(results['max_score']):g}**", ""]
    if results.get("output"):
        out += ["Notes:", ""] + [f"- {markdown(line)}"
                                 for line in str(results["output"]).split("\n")] + [""]
    out += ["| test | points | result |", "|---|---|---|"]
    for t in results["tests"]:
        msg = markdown(t["output"]) if t["output"] else "passed"
        out.append(f"| {markdown(t['name'], 200)} | {float(t['score']):g} / "
                   f"{float(t['max_score']):g} | {msg} |")
    return "\n".join(out) + "\n"


def grade_job(job: Job, out_dir: Path, settings: Settings,
              manifest: integrity.Manifest | None = None) -> dict[str, Any]:
    """Grade one submission, write its results.json and feedback, return the results.

    ``manifest`` (default: the run's, see :func:`integrity.start_run`, else one taken now)
    is checked after the hidden tests ran and before anything is written: if a file the
    grader trusts changed, :class:`integrity.IntegrityError` stops the run and no verdict is
    written. Results are signed with this machine's grader key; a results.json already there
    is reused only when its signature holds and its fingerprints match."""
    if manifest is None:
        manifest = integrity.run_manifest(job.assignment)
    dest = out_dir / job.name
    fingerprint = {
        "submission_sha256": sha256_file(job.notebook) if job.notebook.is_file() else "",
        "tests_sha256": sha256_file(hidden_tests(job.assignment)),
        "release_sha256": sha256_file(release_notebook(job.assignment)),
        "grader": GRADER_VERSION,
    }
    previous = dest / RESULTS
    if not settings.force and os.path.lexists(previous):
        old = reusable_results(previous, job, fingerprint)
        if old is not None:
            if _read_text(dest / FEEDBACK) != feedback_text(old):  # derived: rewrite if edited
                manifest.verify(f"while grading {job.name}")
                write_text_atomic(dest / FEEDBACK, feedback_text(old))
            old["extra_data"]["reused"] = True
            return old
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="course-grade-"))  # 0700: the grader's alone
    try:
        code, log = run_hidden_tests(job, settings, tmp / "report.json")
        try:
            data = read_report(tmp / "report.json", tmp)
        except CourseError as exc:
            manifest.verify(f"while grading {job.name}")  # a changed grader explains it best
            raise CourseError(f"{job.name}: {exc}; no result was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if data is not None:
        results = build_results(job, data, time.monotonic() - t0, settings, fingerprint)
        output = data.get("output", "")
    else:
        reason = _first_error_line(log) or f"the grader failed (exit {code})"
        results = failed_results(job, reason, fingerprint, 0.0)
        output = log
    manifest.verify(f"while grading {job.name}")  # before any verdict is written
    integrity.sign(results)
    write_text_atomic(dest / "worker-output.txt", output)
    write_text_atomic(dest / FEEDBACK, feedback_text(results))
    write_json_atomic(previous, results)  # last: its presence means "done"
    return results


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def _load_json_file(path: Path, folder_owner: int | None = None) -> Any:
    """Parse the JSON file at ``path`` read once: a regular file of this user (not a link),
    at most :data:`MAX_JSON_BYTES`. Raises ``CourseError`` saying why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CourseError(f"cannot be opened as a plain file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CourseError("is not a regular file")
        if folder_owner is not None and st.st_uid != folder_owner:
            raise CourseError("belongs to another user")
        raw = fh.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise CourseError(f"is larger than {MAX_JSON_BYTES // 2**20} MiB")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CourseError(f"is not valid JSON ({exc})") from None


#: Top-level fields of the plugin's report.json and their types (records are checked apart).
_REPORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "records": list, "notes": list, "cells": list, "events": list, "output": str,
    "worker_seconds": (int, float), "finished": (int, float), "isolation": dict,
    "not_graded": str,
}
_RECORD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "test": str, "name": str, "cell": str, "max_score": (int, float), "passed": bool,
    "message": str,
}


def report_problem(data: Any) -> str:
    """Why ``data`` is not a report the plugin writes ("" when it has the expected shape)."""
    if not isinstance(data, dict):
        return "is not a JSON object"
    if "records" not in data:
        return "has no records"
    for key, kind in _REPORT_FIELDS.items():
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)
                            and kind is not bool):
            return f"has a {key!r} of the wrong type"
    for rec in data["records"]:
        if not isinstance(rec, dict):
            return "has a record that is not an object"
        for key, kind in _RECORD_FIELDS.items():
            value = rec.get(key)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                return f"has a record whose {key!r} is missing or of the wrong type"
        if not 0 <= rec["max_score"] < float("inf"):
            return "has a record with impossible points"
    if not all(isinstance(x, str) for x in data.get("notes", []) + data.get("events", [])):
        return "has notes or events that are not text"
    if not all(isinstance(cell, dict) for cell in data.get("cells", [])):
        return "has a cell report that is not an object"
    return ""


def read_report(report: Path, folder: Path) -> dict[str, Any] | None:
    """The plugin's report, read once from the grader's private ``folder`` and checked; None
    when the hidden tests wrote none. Raises ``CourseError`` for a report that is not one."""
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise CourseError(f"the grader's private folder {folder} was tampered with")
    if not os.path.lexists(report):
        return None
    try:
        data = _load_json_file(report, folder_owner=os.geteuid())
    except CourseError as exc:
        raise CourseError(f"the hidden tests' report {exc}") from None
    why = report_problem(data)
    if why:
        raise CourseError(f"the hidden tests' report {why}")
    return data


def reusable_results(path: Path, job: Job, fingerprint: dict[str, str]) -> dict[str, Any] | None:
    """The results at ``path`` when this machine's grader wrote them for this submission, with
    the same notebook, hidden tests, release notebook and grader version; else None (with a
    one-line note when they are not genuine)."""
    try:
        old = _load_json_file(path)
    except CourseError as exc:
        _note(f"{path} {exc}: ignored, regrading {job.name}")
        return None
    if not integrity.is_signed(old):
        _note(f"{path} is not signed by this machine's grader (planted, edited, or from "
              f"another machine or an older grader): ignored, regrading {job.name}")
        return None
    extra = old["extra_data"]
    if (extra.get("assignment"), extra.get("submission")) != (job.assignment, job.name):
        _note(f"{path} holds the results of {extra.get('submission')!r} "
              f"({extra.get('assignment')}): ignored, regrading {job.name}")
        return None
    if any(extra.get(k) != v for k, v in fingerprint.items()):
        return None  # the notebook, tests or grader changed since: grade again
    return old


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
        first = first or (res["output"].split("\n")[0] if res.get("output") else "")
        # names and messages are student-influenced: one line each, no control characters
        rows.append((one_line(job.name, 40), one_line(job.assignment, 40),
                     f"{res['score']:g}/{res['max_score']:g}",
                     f"{passed}/{len(tests)}", f"{res['execution_time']:.0f}s",
                     one_line(first, 73)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
        if n == 0:
            lines.append("-" * min(120, sum(widths) + 2 * len(widths) + 14))
    return "\n".join(lines)
