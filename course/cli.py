"""The ``course`` command-line tool: the instructor's verbs.

Every verb has ``--help``; bad input ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course.errors import CourseError
from course.lean_imports import skip_slow_imports


def _cmd_data(args: argparse.Namespace) -> int:
    from course import data, toy

    if args.action == "fetch":
        paths = data.fetch(args.name, dest=args.dest, from_dir=args.from_dir)
        for p in paths:
            print(p)
        return 0
    if args.action == "verify":
        for line in data.verify(args.name, root=args.dest):
            print(line)
        return 0
    if args.action == "toy":
        for p in toy.generate(args.dest):
            print(p)
        return 0
    if args.action == "list":
        for name in data.REGISTRY:
            print(name)
        return 0
    raise CourseError(f"unknown data action {args.action!r}")


def _cmd_release(args: argparse.Namespace) -> int:
    ids = _assignments(args.assignment)
    from course import generate

    for a in ids:
        print(generate.release(a, use_gradebook=args.gradebook))
    return 0


def _cmd_solutions(args: argparse.Namespace) -> int:
    ids = _assignments(args.assignment)
    from course import generate

    for a in ids:
        path = generate.solutions(a, execute=not args.no_execute, scale=args.scale,
                                  text_only=args.text_only)
        print(path)
        for cell_id in args.print or []:
            print(f"--- {a}: output of cell {cell_id} ---")
            print(generate.cell_text(path, cell_id), end="")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    ids = _assignments(args.assignment)
    from course import generate

    problems = generate.check(ids)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"course check: {len(problems)} problem(s); run `make release solutions`", file=sys.stderr)
        return 1
    print("release/ and solutions/ are in sync with source/")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from course.grading import cli as grading_cli

    return grading_cli.run(args)


def _cmd_gradescope(args: argparse.Namespace) -> int:
    from course import gradescope
    from course.paths import check_assignment

    print(gradescope.build(check_assignment(args.assignment), out_dir=args.out))
    return 0


def _cmd_site(args: argparse.Namespace) -> int:
    from course import site

    built = site.build(out=args.out, solutions=args.solutions)
    print(f"{built.index}: {built.pages} pages, {built.size_bytes / 1e6:.1f} MB, "
          f"{built.seconds:.1f} s; open it in a browser")
    if built.solutions:
        print("it includes the solutions: do not publish it to students", file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from course import bench
    from course.paths import check_assignment

    bench.run(sections=args.only, out=args.out, quick=args.quick,
              assignments=[check_assignment(a) for a in args.assignment] or None)
    return 0


def _assignments(given: list[str] | None) -> list[str]:
    from course.paths import assignment_ids, check_assignment

    if not given:
        ids = assignment_ids()
        if not ids:
            raise CourseError("no assignments found under source/")
        return ids
    return [check_assignment(a) for a in given]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course",
        description="Unsupervised Learning course bundle: data, releases, solutions and grading.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("data", help="stage and verify datasets (MNIST, toy data)",
                       description="Stage and verify datasets.")
    p.add_argument("action", choices=["fetch", "verify", "toy", "list"],
                   help="fetch: download (or copy with --from) and verify; verify: check the "
                        "staged files; toy: regenerate the toy npz files; list: dataset names")
    p.add_argument("name", nargs="?", default="mnist", help="dataset name (default: mnist)")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR",
                   help="copy the files from a local mirror folder instead of downloading")
    p.add_argument("--dest", type=Path, default=None,
                   help="data folder (default: $COURSE_DATA, else <repo>/data in a checkout, else the per-user cache)")
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("release", help="generate student notebooks in release/ (nbgrader)",
                       description="Generate release/<id>/ from source/<id>/ with nbgrader.")
    p.add_argument("assignment", nargs="*", help="assignment ids (default: all)")
    p.add_argument("--gradebook", action="store_true",
                   help="also record the assignment in the instructor's gradebook.db "
                        "(default: a throw-away gradebook, so a release depends only on source/)")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser("solutions", help="generate executed solution notebooks in solutions/",
                       description="Generate solutions/<id>/ from source/<id>/ and execute it "
                                   "at full scale (figures included).")
    p.add_argument("assignment", nargs="*", help="assignment ids (default: all)")
    p.add_argument("--no-execute", action="store_true", help="write without executing")
    p.add_argument("--text-only", action="store_true",
                   help="take the source's Markdown into the executed solutions without running "
                        "them again (refused if a code cell changed)")
    p.add_argument("--scale", choices=["full", "ci"], default="full",
                   help="scale profile to execute at (default: full; `course check` expects full)")
    p.add_argument("--print", metavar="CELL", action="append",
                   help="afterwards print what the code cell with this grade id printed "
                        "(repeatable), e.g. --print exp_accuracy_table")
    p.set_defaults(func=_cmd_solutions)

    p = sub.add_parser("check", help="are release/ and solutions/ in sync with source/?",
                       description="Exit non-zero if release/ or solutions/ is stale or edited by hand.")
    p.add_argument("assignment", nargs="*", help="assignment ids (default: all)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("gradescope", help="build a Gradescope autograder zip for an assignment",
                       description="Write gradescope/<id>.zip: setup.sh, run_autograder and the "
                                   "grading part of this repository (no source, no solutions).")
    p.add_argument("assignment", help="assignment id")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: gradescope/)")
    p.set_defaults(func=_cmd_gradescope)

    p = sub.add_parser("site", help="build the course website (static HTML) from the notebooks",
                       description="Write a static website: an index of the assignments (what "
                                   "each teaches, points, runtime) and one page per release "
                                   "notebook with a download link; works offline, from file:// "
                                   "or any static host.")
    p.add_argument("--solutions", action="store_true",
                   help="also add a page per executed solution (for instructors and TAs: "
                        "do not publish that build to students)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder, replaced on each build (default: site/); an existing "
                        "folder that is not a previous build is refused")
    p.set_defaults(func=_cmd_site)

    p = sub.add_parser("bench", help="measure the bundle against scikit-learn, a bare PyTorch "
                                     "loop and grading without the sandbox (ratios)",
                       description="Run the benchmark sections side by side and write "
                                   "bench/results.md (a table of ratios) and bench/results.png. "
                                   "Run it on an idle machine: the numbers are wall times.")
    p.add_argument("--only", nargs="+", metavar="SECTION", default=None,
                   help="sections to run (kmeans, training, tsne, grading, class; default: all)")
    p.add_argument("--assignment", nargs="+", default=[], metavar="ID",
                   help="assignments the grading section grades (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller runs")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the report goes (default: bench/)")
    p.set_defaults(func=_cmd_bench)

    from course.grading.cli import add_grade_parser

    add_grade_parser(sub, _cmd_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    skip_slow_imports()  # before any command imports nbformat (course.lean_imports)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as exc:
        print(f"course {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"course {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
