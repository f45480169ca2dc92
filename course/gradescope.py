"""Gradescope autograder bundles: ``course gradescope <id>`` writes ``gradescope/<id>.zip``.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once when it builds
the image, then ``run_autograder`` for every submission (files in ``/autograder/submission``,
results expected in ``/autograder/results/results.json``). The zip holds the grading part of
this repository only: the ``course`` package, the pins, the release notebook, the hidden tests
of that one assignment and the toy data. No source notebook and no solution goes in.
``run_autograder`` calls ``python -m course.gradescope run``, which grades with the same
sandboxed worker as ``course grade`` and writes Gradescope's results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

from course.errors import CourseError
from course.paths import check_assignment, repo_root

BUNDLE = "course-bundle"

#: The unprivileged user student code runs as on Gradescope (its uid goes to the worker).
STUDENT_USER = "course-student"

SETUP_SH = """#!/usr/bin/env bash
# Runs once while Gradescope builds the autograder image (Ubuntu, as root). AUTOGRADER_ROOT
# defaults to Gradescope's /autograder; COURSE_STUDENT_USER names the user student code runs
# as; COURSE_SETUP_SKIP_INSTALL=1 keeps a venv and data already in place (an image rebuilt
# from a cached venv, or the emulation in tests/test_gradescope.py) and only hardens.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
STUDENT="${{COURSE_STUDENT_USER:-{user}}}"
cd "$ROOT/source"
if [ -z "${{COURSE_SETUP_SKIP_INSTALL:-}}" ]; then
    if ! command -v python3.11 >/dev/null; then
        apt-get update
        apt-get install -y software-properties-common
        add-apt-repository -y ppa:deadsnakes/ppa
        apt-get update
        apt-get install -y python3.11 python3.11-venv
    fi
    python3.11 -m venv "$ROOT/venv"
    "$ROOT/venv/bin/python" -m pip install --upgrade pip
    # The CPU build of torch first: the default wheel pulls gigabytes of CUDA libraries.
    "$ROOT/venv/bin/python" -m pip install --index-url https://download.pytorch.org/whl/cpu \\
        "torch==$(sed -n 's/^torch==//p' {bundle}/requirements.lock)"
    # Not editable: the package lives in the venv, which student code may read; the bundle
    # (hidden tests) does not.
    # The grader extra: the hidden tests run under pytest, which the student runtime lacks.
    "$ROOT/venv/bin/python" -m pip install -c {bundle}/requirements.lock "./{bundle}[grader]"
    mkdir -p "$ROOT/data"  # MNIST; the toy data ships inside the package
    COURSE_DATA="$ROOT/data" "$ROOT/venv/bin/course" data fetch mnist
fi
# Student code runs as this user (Gradescope's advice): it can read the venv and the data,
# and nothing of $ROOT/source or $ROOT/results.
id -u "$STUDENT" >/dev/null 2>&1 || \\
    useradd --system --no-create-home --shell /usr/sbin/nologin "$STUDENT"
chmod a+rx "$ROOT"
chmod -R a+rX "$ROOT/venv/" "$ROOT/data"
chmod -R go-rwx "$ROOT/source"
mkdir -p "$ROOT/results" && chmod 700 "$ROOT/results"
# What each submission's grading would otherwise compute again, kept in the image: the
# workers' matplotlib font list and the hidden tests' scikit-learn references (signed with
# the grader key this creates; run_autograder runs as this same user and finds both)
COURSE_ROOT="$ROOT/source/{bundle}" COURSE_DATA="${{COURSE_DATA:-$ROOT/data}}" \\
    "$ROOT/venv/bin/python" -P -m course.gradescope prepare {assignment}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Runs for every submission. AUTOGRADER_ROOT defaults to Gradescope's /autograder.
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
STUDENT="${{COURSE_STUDENT_USER:-{user}}}"
export COURSE_ROOT="$ROOT/source/{bundle}"
export COURSE_DATA="${{COURSE_DATA:-$ROOT/data}}"
mkdir -p "$ROOT/results" && chmod 700 "$ROOT/results"
if [ "$(id -u)" = 0 ] && id -u "$STUDENT" >/dev/null 2>&1; then
    export COURSE_WORKER_UID="$(id -u "$STUDENT")"
fi
# -P: the installed package, never a `course` folder that happens to be the working directory
exec "$ROOT/venv/bin/python" -P -m course.gradescope run {assignment} --root "$ROOT"
"""


def _bundle_files(assignment: str, root: Path) -> dict[str, Path]:
    """Archive name -> file, for everything the grader needs and nothing more."""
    files: dict[str, Path] = {}
    for name in ("pyproject.toml", "requirements.lock", "README.md"):
        files[name] = root / name
    for path in sorted((root / "course").rglob("*.py")):
        files[path.relative_to(root).as_posix()] = path
    tests = root / "autograder" / f"test_{assignment}.py"
    release = root / "release" / assignment / f"{assignment}.ipynb"
    for path in (tests, release):
        if not path.is_file():
            raise CourseError(f"{path} is missing; run `course release {assignment}` and check "
                              "the hidden tests exist")
        files[path.relative_to(root).as_posix()] = path
    conftest = root / "autograder" / "conftest.py"
    if conftest.is_file():
        files["autograder/conftest.py"] = conftest
    return files


def build(assignment: str, out_dir: Path | None = None, root: Path | None = None) -> Path:
    """Write ``<out_dir>/<assignment>.zip`` (default ``gradescope/``) and return its path."""
    root = root or repo_root()
    check_assignment(assignment, root)
    out_dir = out_dir or root / "gradescope"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{assignment}.zip"
    with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".zip.part", delete=False) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _add_script(zf, "setup.sh", SETUP_SH.format(bundle=BUNDLE, user=STUDENT_USER,
                                                        assignment=assignment))
            _add_script(zf, "run_autograder",
                        RUN_AUTOGRADER.format(bundle=BUNDLE, assignment=assignment,
                                                  user=STUDENT_USER))
            for name, path in _bundle_files(assignment, root).items():
                info = zipfile.ZipInfo(f"{BUNDLE}/{name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    Path(tmp.name).replace(target)
    return target


def _add_script(zf: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, text)


def find_submission(folder: Path, assignment: str) -> Path:
    """The notebook a student uploaded: ``<id>.ipynb`` if present, else the only .ipynb."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    exact = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
    if exact:
        return exact[0]
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        raise CourseError(f"no .ipynb file in the submission: upload {assignment}.ipynb")
    raise CourseError(f"{len(notebooks)} notebooks in the submission and none is named "
                      f"{assignment}.ipynb: upload only {assignment}.ipynb")


def run(assignment: str, autograder_root: Path) -> dict:
    """Grade ``<root>/submission`` and write ``<root>/results/results.json``. When the grader
    cannot give a verdict (sandbox too weak, its own files changed) nothing is written and the
    error propagates: Gradescope then reports a failed autograder run, which the instructor can
    rerun, instead of a zero."""
    from course.grading import runner
    from course.runtime import device

    results_path = autograder_root / "results" / "results.json"
    try:
        notebook = find_submission(autograder_root / "submission", assignment)
    except CourseError as exc:  # the upload itself is wrong (no notebook): its verdict
        results = {"score": 0.0, "output": str(exc), "tests": [], "visibility": "visible"}
        runner.write_json_atomic(results_path, results)
        return results
    # from here on every error is the grader's (NotGraded, IntegrityError, a report it
    # cannot read): it propagates and nothing is written, never a zero
    with tempfile.TemporaryDirectory(prefix="course-gradescope-") as tmp:
        job = runner.Job("submission", notebook, assignment)
        results = runner.grade_job(job, Path(tmp), runner.Settings(device=str(device())))
    runner.write_json_atomic(results_path, results)
    return results


def prepare(assignment: str) -> list[str]:
    """Done once while the image is built (setup.sh): what each submission's grading would
    otherwise compute again, kept in this user's caches: the workers' matplotlib font list
    (:mod:`course.grading.fonts`) and the hidden tests' kept references
    (:mod:`course.grading.kept`). Returns the names of the references kept."""
    from course.grading import fonts, kept, runner

    fonts.ensure()
    return kept.warm(runner.hidden_tests(assignment))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.gradescope")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="grade a Gradescope submission (used by run_autograder)")
    p.add_argument("assignment")
    p.add_argument("--root", type=Path, default=Path("/autograder"))
    p = sub.add_parser("prepare", help="keep what every grading would compute again "
                                       "(used by setup.sh)")
    p.add_argument("assignment")
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        kept = prepare(args.assignment)
        print(f"kept: {', '.join(kept) or 'nothing'}")
        return 0
    try:
        results = run(args.assignment, args.root)
    except CourseError as exc:
        print(f"not graded: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"score": results.get("score"), "max_score": results.get("max_score")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
