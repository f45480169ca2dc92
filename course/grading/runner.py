"""Grading submissions: one pytest run of the hidden tests per submission, in parallel.

For each submission a grader process (trusted code only) runs ``autograder/test_<id>.py``
with the :mod:`course.grading.plugin`; the plugin's worker runs the student's code. This
module turns the per-test records into a Gradescope ``results.json``, per-student feedback,
a class CSV and a printed table. Each result is written atomically as soon as its submission
is done, so a run that is killed loses nothing already graded and a rerun grades the rest
(a result is reused when the notebook and the hidden tests are unchanged).

A result is a verdict on the student's code or nothing: when the grader crashes, is killed,
runs past its wall-clock bound or meets a fault outside the submission, the submission is
"not graded" (:class:`NotGraded`, a row in the table, no results.json, never a zero). The
verdicts its tests had already reached are kept, signed, in ``partial.json``, and the next run
runs only the tests still undecided.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import site
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from course.cores import usable_cores
from course.errors import CourseError
from course.grading import fonts, forkserver, integrity
from course.grading.plaintext import MAX_MESSAGE, MAX_TYPE, MAX_WHERE, markdown, one_line
from course.paths import PACKAGE_DIR, assignment_ids, repo_root
from course.submissions import release_path

RESULTS = "results.json"
FEEDBACK = "feedback.md"
PARTIAL = "partial.json"  # verdicts reached by a run that did not finish
#: 2: results are signed (integrity.sign); 3: a result is always a verdict (no 0/0 for a
#: grader failure) and time limits charge CPU time
GRADER_VERSION = "course-grader 3"
#: Largest report.json / results.json the grader reads (they are a few hundred KiB at most).
MAX_JSON_BYTES = 64 * 2**20
#: Lines of notes in results.json and feedback.md (plan notes, failed cells, events); more
#: are summarised in one last line.
MAX_NOTES = 50
#: Gradescope shows these fields as plain text (its default, "simple_format", renders some
#: HTML): messages from student code must never format the page.
PLAIN_TEXT = {"output_format": "text", "test_output_format": "text", "test_name_format": "text"}


class NotGraded(CourseError):
    """The grader could not give a verdict (the sandbox was too weak, the grader crashed, was
    killed or ran out of time): no result was written, so a rerun grades the submission.
    ``reason`` is the cause alone; ``decided`` how many tests did reach a verdict (kept)."""

    def __init__(self, name: str, reason: str, decided: int = 0) -> None:
        super().__init__(f"{name}: not graded: {reason}")
        self.reason = reason
        self.decided = decided


@dataclass(frozen=True)
class Job:
    name: str
    notebook: Path
    assignment: str


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    budget_s: float = 900.0
    threads: int = 0  # torch threads of each worker and grader; 0: cores / submissions at once
    force: bool = False
    allow_weak_isolation: bool = False  # grade even where the sandbox is below "contained"
    #: read and keep references between gradings (course.grading.kept); None: unless weak
    #: isolation is allowed (a worker could then plant one for later gradings)
    kept_references: bool | None = None
    prestart: bool = True  # a class's graders fork from one that imported the tests' modules


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


#: The grader process's wall-clock bound: the budget charges the student's CPU time, so on a
#: busy machine a submission may take several times its budget on the clock (and the grader
#: computes its own references); past this bound the submission is not graded, not failed.
GRADER_WALL_FACTOR = 6.0
GRADER_WALL_SLACK_S = 600.0


def grader_wall_limit(settings: Settings) -> float:
    return GRADER_WALL_FACTOR * settings.budget_s + GRADER_WALL_SLACK_S


def run_hidden_tests(job: Job, settings: Settings, report: Path,
                     skip: tuple[str, ...] = (),
                     pool: forkserver.GraderPool | None = None) -> tuple[int | None, str]:
    """Run pytest on the hidden tests for one submission in a grader process; the exit status
    is None when the process ran past :func:`grader_wall_limit` (it was killed). Threads 0
    (Gradescope's one submission): the cores this process may use, never torch's default of
    the host's count (a container's quota would throttle that many threads). With ``pool``
    (a class run) the grader is forked from a server that imported its modules once
    (:mod:`course.grading.forkserver`): the same command line, environment and limits."""
    if not settings.threads:
        settings = replace(settings, threads=thread_share(1))
    root = repo_root()
    # -P: the grader imports the installed course package, the one this process runs and the
    # worker may read, not a copy that happens to sit in the working folder (Gradescope's
    # /autograder/source, unreadable to the worker's own uid)
    # course.grading.start: pytest, with the submission's worker launched before pytest loads
    cmd = [
        sys.executable, "-P", "-m", "course.grading.start", str(hidden_tests(job.assignment, root)),
        "-p", "course.grading.plugin", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
        "--assert=plain",
        "-o", "addopts=", "-q", "--no-header", "--tb=no", "-rN",
        "--rootdir", str(root / "autograder"),
        "--submission", str(job.notebook.resolve()),
        "--release", str(release_notebook(job.assignment, root)),
        "--device", settings.device, "--budget", str(settings.budget_s),
        "--threads", str(settings.threads), "--report", str(report),
        *(["--allow-weak-isolation"] if settings.allow_weak_isolation else []),
        *([] if _keeps_references(settings) else ["--no-kept-references"]),
        *(["--skip", ",".join(skip)] if skip else []),
    ]
    # "no:unraisableexception": that plugin's pytest_unconfigure runs a full gc.collect() to
    # report exceptions nobody raised, 0.15 s of every grading with torch's objects to walk
    # (nothing it could report reaches a student: the records hold the verdicts).
    # No pytest plugin loads unless named here (or by PYTEST_PLUGINS, which the tests of the
    # bundle use): the ones an environment happens to install are not the grader's to run, and
    # nbval's import alone (nbformat, jsonschema, an RFC 3987 grammar) took 3 of the 20 s that
    # grading 01's reference takes.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    # nor options from the caller's shell: "-x" would leave every test after the first failure
    # without a verdict (every imperfect submission "not graded"), "--pdb" would wait for a key
    env.pop("PYTEST_ADDOPTS", None)
    if settings.threads:  # the grader's own references share the cores like its worker
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(settings.threads)
    if not _installed(PACKAGE_DIR):  # a checkout (editable or not): put it first on the path
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p)
    cap = grader_memory_bytes()
    preexec = functools.partial(resource.setrlimit, resource.RLIMIT_AS, (cap, cap)) \
        if settings.device == "cpu" else None
    if pool is not None and forkserver.available():
        tests = hidden_tests(job.assignment, root)
        key = (str(tests), tuple(sorted(env.items())), preexec is not None)
        server = pool.server(tests, env, root, preexec, key)
        if server is not None:
            out = report.with_name("grader-output.txt")
            try:
                code = server.run(cmd[4:], env, root, out, grader_wall_limit(settings))
            except forkserver.ServerGone:
                pool.discard(key)  # this grader and the next start as processes
            else:
                return code, _tail(out, 4000)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root,
                              timeout=grader_wall_limit(settings), preexec_fn=preexec)
    except subprocess.TimeoutExpired as exc:
        return None, _text(exc.stdout)[-2000:] + _text(exc.stderr)[-2000:]
    return proc.returncode, (proc.stdout + proc.stderr)[-4000:]


def _keeps_references(settings: Settings) -> bool:
    if settings.kept_references is not None:
        return settings.kept_references
    return not settings.allow_weak_isolation


def _tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of a text file ("" when it is missing)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4 * chars))
            return fh.read().decode(errors="replace")[-chars:]
    except OSError:
        return ""


def _installed(package: Path) -> bool:
    """Whether ``package`` sits in a site-packages folder (importable from anywhere)."""
    return any(package.is_relative_to(Path(p).resolve()) for p in site.getsitepackages())


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def build_results(job: Job, data: dict[str, Any], seconds: float, settings: Settings,
                  fingerprint: dict[str, str]) -> dict[str, Any]:
    """Gradescope's results.json from the plugin's records (every hidden test decided)."""
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


def not_graded_entry(job: Job, reason: str, decided: int = 0) -> dict[str, Any]:
    """What :func:`grade_jobs` lists for a submission that got no verdict (never a zero)."""
    return {"not_graded": one_line(reason), "decided": decided, "score": None,
            "max_score": None, "execution_time": 0.0, "output": "", "tests": [],
            "extra_data": {"assignment": job.assignment, "submission": job.name}}


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
              manifest: integrity.Manifest | None = None,
              pool: forkserver.GraderPool | None = None) -> dict[str, Any]:
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
    carried = {} if settings.force else reusable_partial(dest / PARTIAL, job, fingerprint)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="course-grade-"))  # 0700: the grader's alone
    try:
        code, log = run_hidden_tests(job, settings, tmp / "report.json",
                                     skip=tuple(carried.get("records", {})), pool=pool)
        try:
            data = read_report(tmp / "report.json", tmp)
        except CourseError as exc:
            manifest.verify(f"while grading {job.name}")  # a changed grader explains it best
            raise CourseError(f"{job.name}: {exc}; no result was written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    records = dict(carried.get("records", {}))
    records.update({r["test"]: r for r in (data or {}).get("records", [])})
    collected = list((data or {}).get("collected") or carried.get("collected") or [])
    reason = unfinished(code, log, data, collected, records, settings)
    if reason:
        manifest.verify(f"while grading {job.name}")  # a changed grader explains it best
        if records:  # verdicts reached so far are kept for the next run
            write_json_atomic(dest / PARTIAL, integrity.sign({
                "kind": "partial", "grader": GRADER_VERSION, "assignment": job.assignment,
                "submission": job.name,
                "fingerprint": fingerprint, "collected": collected,
                "records": list(records.values())}))
        raise NotGraded(job.name, reason, decided=len(records))
    assert data is not None
    data = {**data, "records": [records[name] for name in collected]}
    results = build_results(job, data, time.monotonic() - t0, settings, fingerprint)
    if carried:  # for the instructor: how many verdicts an earlier, unfinished run reached
        results["extra_data"]["decided_earlier"] = len(carried["records"])
    manifest.verify(f"while grading {job.name}")  # before any verdict is written
    integrity.sign(results)
    write_text_atomic(dest / "worker-output.txt", data.get("output", ""))
    write_text_atomic(dest / FEEDBACK, feedback_text(results))
    write_json_atomic(previous, results)  # last: its presence means "done"
    (dest / PARTIAL).unlink(missing_ok=True)
    return results


def unfinished(code: int | None, log: str, data: dict[str, Any] | None, collected: list[str],
               records: dict[str, Any], settings: Settings) -> str:
    """Why the grader process gave no verdict ("" when every hidden test was decided)."""
    if data is not None and data.get("not_graded"):
        return data["not_graded"]
    where = f"after {len(records)} of {len(collected)} tests" if collected else "before any test"
    if code is None:
        return (f"the grader ran past its {grader_wall_limit(settings):.0f} s wall-clock bound "
                f"{where} (an overloaded machine?)")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
            else str(-code)
        return f"the grader process was killed by {name} {where}"
    if data is None or not data.get("complete"):
        why = _first_error_line(log) or f"exit status {code}"
        return f"the grader process stopped {where} ({one_line(why, 200)})"
    if not collected:
        return "the hidden tests collected no test"
    undecided = [name for name in collected if name not in records]
    if undecided:
        return f"{len(undecided)} hidden tests reached no verdict ({one_line(undecided[0], 80)}, ...)"
    return ""


def reusable_partial(path: Path, job: Job, fingerprint: dict[str, str]) -> dict[str, Any]:
    """Verdicts an earlier, unfinished run reached for this very submission, tests and grader
    (``{"records": {test: record}, "collected": [...]}``), or ``{}``."""
    if not os.path.lexists(path):
        return {}
    try:
        old = _load_json_file(path)
    except CourseError as exc:
        _note(f"{path} {exc}: ignored")
        return {}
    if not integrity.is_signed(old):
        _note(f"{path} is not signed by this machine's grader: ignored")
        return {}
    if (old.get("kind"), old.get("assignment"), old.get("submission"),
            old.get("fingerprint")) != ("partial", job.assignment, job.name, fingerprint):
        return {}  # another submission, or the notebook, tests or grader changed since
    collected, records = old.get("collected"), old.get("records")
    if not isinstance(collected, list) or report_problem({"records": records}):
        return {}
    return {"collected": collected,
            "records": {r["test"]: r for r in records if r["test"] in collected}}


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
def thread_share(jobs_in_parallel: int) -> int:
    """Torch threads for each of ``jobs_in_parallel`` submissions graded at once: the cores
    this process may use (:func:`course.cores.usable_cores`: a container's CPU quota, a
    ``taskset`` mask), not the host's."""
    return max(1, usable_cores() // max(1, jobs_in_parallel))


def grade_jobs(jobs: list[Job], out_dir: Path, settings: Settings, jobs_in_parallel: int = 1,
               progress: bool = True) -> list[tuple[Job, dict[str, Any]]]:
    """Grade ``jobs`` with up to ``jobs_in_parallel`` at once; results in the input order. A
    submission that got no verdict is listed as :func:`not_graded_entry` (the run goes on);
    an :class:`integrity.IntegrityError` or any other grader error stops the run."""
    names = [j.name for j in jobs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise CourseError(f"two submissions would share the name {sorted(dupes)[0]!r}; "
                          "grade them separately or rename the files")
    if not settings.threads:
        # each submission gets its share of the cores: two graders with a worker each, all
        # using every core, ran the small-batch training of 05 2.5 times slower than one
        settings = replace(settings, threads=thread_share(jobs_in_parallel))
    fonts.ensure()  # matplotlib's font list for the workers, built once per machine
    results: dict[int, dict[str, Any]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="grading", unit="submission", file=sys.stderr)

    def one(job: Job) -> dict[str, Any]:
        try:
            return grade_job(job, out_dir, settings, pool=pool)
        except NotGraded as exc:
            if bar is not None:
                bar.write(f"note: {exc}", file=sys.stderr)
            else:
                _note(str(exc))
            return not_graded_entry(job, exc.reason, exc.decided)

    # a class: its graders fork from a server that imported their modules once
    pool = forkserver.GraderPool() if len(jobs) > 1 and settings.prestart else None
    with ThreadPoolExecutor(max_workers=max(1, jobs_in_parallel)) as threads, \
            pool or contextlib.nullcontext():
        futures = {threads.submit(one, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if bar is not None:
                missed = sum(1 for r in results.values() if r.get("not_graded"))
                bar.set_postfix_str(f"graded {len(results) - missed}, not graded {missed}, "
                                    f"remaining {len(jobs) - len(results)}", refresh=False)
                bar.update(1)
    if bar is not None:
        bar.close()
    return [(job, results[i]) for i, job in enumerate(jobs)]


def write_class_csv(graded: list[tuple[Job, dict[str, Any]]], path: Path) -> None:
    """One row per submission; a submission not graded has empty scores (never 0) and its
    reason in the ``status`` column."""
    cells: list[str] = []
    for _, res in graded:
        for c in res.get("extra_data", {}).get("cells", {}):
            if c not in cells:
                cells.append(c)
    rows = []
    for job, res in graded:
        if res.get("not_graded"):
            rows.append([job.name, job.assignment, "", "", f"not graded: {res['not_graded']}",
                         *["" for _ in cells]])
            continue
        per = res.get("extra_data", {}).get("cells", {})
        rows.append([job.name, job.assignment, res["score"], res["max_score"], "graded",
                     *[per.get(c, {}).get("score", 0.0) for c in cells]])
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["submission", "assignment", "score", "max_score", "status", *cells])
    w.writerows(rows)
    write_text_atomic(path, text.getvalue())


def table(graded: list[tuple[Job, dict[str, Any]]]) -> str:
    """A plain-text grade table, one line per submission."""
    rows = [("submission", "assignment", "score", "tests passed", "time", "first problem")]
    for job, res in graded:
        if res.get("not_graded"):
            kept = f" ({res.get('decided', 0)} tests decided, kept)" if res.get("decided") else ""
            rows.append((one_line(job.name, 40), one_line(job.assignment, 40), "NOT GRADED",
                         "-", "-", one_line(f"{res['not_graded']}{kept}", 120)))
            continue
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
