"""``course grade``: grade notebooks, or a whole class in nbgrader's submitted/ layout."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from course.cores import usable_cores
from course.errors import CourseError


def add_grade_parser(sub: argparse._SubParsersAction, func) -> None:
    p = sub.add_parser(
        "grade",
        help="grade submissions with the hidden tests (student code runs only in sandboxed workers)",
        description="Grade notebooks with the hidden tests in autograder/. Writes "
                    "OUT/<submission>/results.json (Gradescope schema) and feedback.md, a class "
                    "CSV, and prints a table. Results already there for the same notebook and "
                    "tests are reused, so an interrupted run can simply be run again.",
    )
    p.add_argument("notebooks", nargs="*", type=Path, help="submission notebooks to grade")
    p.add_argument("--class", dest="klass", metavar="ASSIGNMENT",
                   help="grade every submitted/<student>/ASSIGNMENT/ASSIGNMENT.ipynb")
    p.add_argument("--submitted", type=Path, default=Path("submitted"),
                   help="nbgrader's submitted/ folder (default: ./submitted)")
    p.add_argument("--assignment", help="assignment id (default: guessed from the file names)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: grades/<assignment>)")
    p.add_argument("--device", default="cpu",
                   help="device for student code: cpu, cuda, mps or auto (default: cpu)")
    p.add_argument("-j", "--jobs", type=int, default=0,
                   help="submissions graded at once (default: one per CPU core, fewer when "
                        f"memory is short: about {JOB_MEMORY_GIB} GiB each)")
    p.add_argument("--budget", type=float, default=900.0,
                   help="seconds of computing one submission may use in total, counted as CPU "
                        "time so a busy machine does not cost the student (default: 900)")
    p.add_argument("--force", action="store_true", help="regrade even if results exist")
    p.add_argument("--allow-weak-isolation", action="store_true",
                   help="grade even where the sandbox cannot reach 'contained' isolation (an "
                        "allow-list of paths, no network, no signals outside the worker): only "
                        "for submissions you trust")
    p.add_argument("--no-prestart", dest="prestart", action="store_false",
                   help="start each grader as a process of its own (default for two or more "
                        "submissions on Linux: fork them from one that imported the hidden "
                        "tests' modules once, torch and scikit-learn among them)")
    p.add_argument("--gradebook", type=Path, metavar="DB", nargs="?", const=Path("gradebook.db"),
                   help="with --class: also store the scores as autograded scores in nbgrader's "
                        "gradebook (default file: gradebook.db)")
    p.set_defaults(func=func)


#: Memory one grading job may take at its peak: the grader (MNIST, reference models: ~0.9 GiB
#: resident for 04_contrastive) and its worker (the student's models and data: ~1.2 GiB for the
#: reference solutions), with room to spare.
JOB_MEMORY_GIB = 3
#: Exit status of `course grade` when some submissions were not graded (a rerun grades them).
EXIT_NOT_GRADED = 3


def available_memory() -> int | None:
    """Bytes of memory available for new work (MemAvailable; physical memory elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_jobs(cores: int | None = None, memory: int | None = None) -> int:
    """Submissions graded at once: one per core, capped by the memory available."""
    cores = cores or usable_cores()
    memory = memory if memory is not None else available_memory()
    by_memory = cores if memory is None else max(1, memory // (JOB_MEMORY_GIB * 2**30))
    return max(1, min(cores, by_memory))


def check_isolation(device: str, allow_weak: bool) -> dict:
    """Print the isolation a worker reaches on this machine; refuse below 'contained' unless
    the instructor allowed it."""
    from course.grading import sandbox

    try:
        report = sandbox.probe_isolation(device)
    except sandbox.GraderFault as exc:
        raise CourseError(str(exc)) from None
    print(f"isolation: {sandbox.describe(report)}")
    for note in report.get("notes", []) + report.get("problems", []):
        print(f"  note: {note}")
    if report["level"] == "weak":
        if not allow_weak:
            raise CourseError(sandbox.refusal(report))
        print("  WARNING: grading with weak isolation (--allow-weak-isolation): student code "
              f"can reach what this user can. Missing: {'; '.join(report['missing'])}")
    return report


def settings_for(device: str, budget: float, threads: int, allow_weak: bool,
                 force: bool = False, prestart: bool = True):
    """The grading settings of a run: the device chosen ("auto": CUDA, MPS or CPU) and the
    isolation this machine reaches checked (printed; weak refused unless allowed)."""
    from course.grading import runner
    from course.runtime import device as pick_device

    try:
        chosen = str(pick_device(None if device == "auto" else device))
    except RuntimeError as exc:
        raise CourseError(str(exc)) from None
    check_isolation(chosen, allow_weak)
    return runner.Settings(device=chosen, budget_s=budget, threads=threads, force=force,
                           allow_weak_isolation=allow_weak, prestart=prestart)


def run(args: argparse.Namespace) -> int:
    from course.grading import integrity, runner
    from course.paths import check_assignment

    if bool(args.notebooks) == bool(args.klass):
        raise CourseError("give notebooks to grade or --class ASSIGNMENT (not both)")
    if args.gradebook and not args.klass:
        raise CourseError("--gradebook needs --class (scores are stored per student)")
    if args.klass:
        assignment = check_assignment(args.klass)
        jobs = runner.class_jobs(assignment, args.submitted)
    else:
        jobs = []
        for nb in args.notebooks:
            if not nb.is_file():
                raise CourseError(f"{nb}: no such notebook")
            a = check_assignment(args.assignment) if args.assignment else runner.guess_assignment(nb)
            jobs.append(runner.Job(runner.submission_name(nb, a), nb, a))
    if args.jobs < 0:
        raise CourseError(f"--jobs must be 1 or more (got {args.jobs})")
    cores = usable_cores()
    parallel = min(args.jobs or default_jobs(cores), len(jobs))
    threads = runner.thread_share(parallel)
    assignments = sorted({j.assignment for j in jobs})
    out = args.out or Path("grades") / (assignments[0] if len(assignments) == 1 else "mixed")
    settings = settings_for(args.device, args.budget, threads, args.allow_weak_isolation,
                            force=args.force, prestart=args.prestart)
    integrity.start_run(assignments, gradebook=args.gradebook)  # checked before each write
    print(f"grading {len(jobs)} submission(s), {parallel} at a time, {threads} thread(s) each")
    graded = runner.grade_jobs(jobs, out, settings, jobs_in_parallel=parallel)
    runner.write_class_csv(graded, out / "grades.csv")
    print(runner.table(graded))
    missed = [job.name for job, res in graded if res.get("not_graded")]
    if args.gradebook:
        from course.grading.gradebook import record_scores

        integrity.run_manifest(assignment).verify("before writing the gradebook",
                                                  "the gradebook was not written")
        n = record_scores(args.gradebook, assignment, [(j.name, r) for j, r in graded])
        print(f"gradebook: stored {n} grade-cell scores in {args.gradebook}")
    print(f"\nresults: {out}/<submission>/results.json and feedback.md; class CSV: {out}/grades.csv")
    if missed:
        print(f"\n{len(missed)} of {len(jobs)} submission(s) NOT GRADED ({', '.join(missed[:5])}"
              f"{', ...' if len(missed) > 5 else ''}): no score was recorded for them; run the "
              "same command again to grade them (verdicts already reached are kept)")
        return EXIT_NOT_GRADED
    return 0
