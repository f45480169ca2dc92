"""The end-to-end demo (README command a): build the releases from source, grade three demo
submissions per assignment (the reference solution, the untouched release, and one with a
realistic mistake), print the grade table and where the results are.

Run with ``make demo`` or ``python -m course.demo``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from course import data, generate
from course.errors import CourseError
from course.grading import runner
from course.grading.notebook import read_notebook
from course.paths import assignment_ids, data_dir, repo_root
from course.submissions import (
    build_variant,
    reference_submission,
    release_path,
    write_notebook,
)

STUDENTS = ("reference", "untouched", "partial")


def stage_mnist() -> None:
    """Make sure MNIST is staged: a local mirror beside the checkout, else the network."""
    raw = data_dir() / "MNIST" / "raw"
    if all((raw / f.name).is_file() for f in data.REGISTRY["mnist"].files.values()):
        return
    mirror = repo_root().parent / "shared" / "data" / "mnist"
    print(f"staging MNIST into {raw} ...", flush=True)
    data.fetch("mnist", from_dir=mirror if mirror.is_dir() else None)


def build_submissions(assignment: str, submitted: Path) -> list[runner.Job]:
    """submitted/<student>/<id>/<id>.ipynb for the three demo students."""
    root = repo_root()
    notebooks = {
        "reference": reference_submission(assignment, root),
        "untouched": read_notebook(release_path(assignment, root)),
        "partial": build_variant(assignment, root / "demo" / "submissions" / assignment / "partial"),
    }
    jobs = []
    for student in STUDENTS:
        path = submitted / student / assignment / f"{assignment}.ipynb"
        write_notebook(notebooks[student], path)
        jobs.append(runner.Job(student, path, assignment))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo/out"), help="demo output folder")
    parser.add_argument("assignment", nargs="*", help="assignments (default: all)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        ids = args.assignment or assignment_ids()
        stage_mnist()
        for a in ids:
            print(f"[1/3] course release {a}", flush=True)
            generate.release(a)
        out = args.out.resolve()
        shutil.rmtree(out, ignore_errors=True)
        jobs = []
        for a in ids:
            jobs += build_submissions(a, out / "submitted")
        print(f"[2/3] grading {len(jobs)} demo submissions (student code runs in sandboxed "
              "workers)", flush=True)
        graded = []
        for a in ids:
            mine = [j for j in jobs if j.assignment == a]
            res = runner.grade_jobs(mine, out / "grades" / a, runner.Settings(), jobs_in_parallel=2)
            runner.write_class_csv(res, out / "grades" / a / "grades.csv")
            graded += res
    except CourseError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    print("[3/3] grades\n")
    print(runner.table(graded))
    print(f"\nper-submission results.json (Gradescope schema) and feedback.md: "
          f"{out}/grades/<assignment>/<student>/")
    print(f"class CSV: {out}/grades/<assignment>/grades.csv")
    print(f"demo finished in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
