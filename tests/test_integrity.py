"""The grader trusts only itself: it checks its code, the hidden tests, the release notebook
and the gradebook before writing each result, signs what it writes, and reuses only results it
signed. The protections are exercised on a copy of the installation (the repository's own
files are never modified here) with a cheap stand-in for the hidden-test run, plus one real
grading of the 01_kmeans reference."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from course.errors import CourseError
from course.grading import integrity, runner
from course.paths import PACKAGE_DIR, data_dir, repo_root
from course.submissions import reference_submission, release_path, write_notebook

A = "01_kmeans"
RECORDS = [
    {"test": "test_kmeans", "name": "k-means", "cell": "test_kmeans", "max_score": 6.0,
     "passed": True, "message": "", "seconds": 0.1},
    {"test": "test_pca", "name": "pca", "cell": "test_pca", "max_score": 3.0,
     "passed": False, "message": "wrong shape", "seconds": 0.1},
]


@pytest.fixture(autouse=True)
def key_file(tmp_path, monkeypatch) -> Path:
    """A grader key of this test only (never the machine's)."""
    path = tmp_path / "config" / "course-grader" / "key"
    monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(path))
    yield path
    integrity.end_run()


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """A copy of the installation: the course package, the hidden tests, the release."""
    root = tmp_path / "install"
    shutil.copytree(PACKAGE_DIR, root / "course", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "autograder").mkdir()
    shutil.copy(repo_root() / "autograder" / f"test_{A}.py", root / "autograder")
    (root / "release" / A).mkdir(parents=True)
    shutil.copy(release_path(A), root / "release" / A)
    monkeypatch.setenv("COURSE_ROOT", str(root))  # hidden tests and release come from here
    return root


@pytest.fixture
def manifest(tree) -> integrity.Manifest:
    return integrity.Manifest.take([A], package_dir=tree / "course")


@pytest.fixture
def fake_tests(monkeypatch):
    """Replace the pytest run by one that writes a small report; ``calls`` counts runs and
    ``during`` (if set) runs while the 'tests' run, as student code would."""
    state = {"calls": 0, "during": None, "report": None}

    def run(job, settings, report, skip=(), pool=None):
        state["calls"] += 1
        folder = report.parent.stat()
        assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.geteuid()
        if state["during"]:
            state["during"](job)
        data = state["report"] or {"records": RECORDS, "notes": [], "cells": [], "events": [],
                                   "output": f"{job.name} printed this\n", "complete": True,
                                   "collected": [r["test"] for r in RECORDS]}
        report.write_text(json.dumps(data))
        return 0, ""

    monkeypatch.setattr(runner, "run_hidden_tests", run)
    return state


def job(tmp_path: Path, name: str) -> runner.Job:
    nb = tmp_path / "submitted" / name / A / f"{A}.ipynb"
    nb.parent.mkdir(parents=True, exist_ok=True)
    nb.write_text(json.dumps({"cells": [], "student": name}))
    return runner.Job(name, nb, A)


def planted(results: dict, name: str, nb: Path) -> dict:
    """What an attacker writes for ``name``: genuine-looking results with the fingerprints
    recomputed from the public files (full marks)."""
    forged = json.loads(json.dumps(results))
    forged["score"] = forged["max_score"]
    forged["extra_data"].update(submission=name, submission_sha256=runner.sha256_file(nb))
    return forged


# -- signed results and reuse -------------------------------------------------------------------
def test_genuine_signed_results_are_reused(tmp_path, manifest, fake_tests):
    out = tmp_path / "grades"
    alice = job(tmp_path, "alice")
    first = runner.grade_job(alice, out, runner.Settings(), manifest)
    assert integrity.is_signed(json.loads((out / "alice" / "results.json").read_text()))
    assert first["score"] == 6.0 and first["max_score"] == 9.0
    again = runner.grade_job(alice, out, runner.Settings(), manifest)
    assert again["extra_data"]["reused"] is True and fake_tests["calls"] == 1
    assert again["score"] == 6.0


@pytest.mark.parametrize("forgery", ["unsigned", "bad signature", "other machine", "edited"])
def test_planted_results_are_not_reused(tmp_path, manifest, fake_tests, forgery, monkeypatch,
                                        capsys):
    out = tmp_path / "grades"
    real = runner.grade_job(job(tmp_path, "alice"), out, runner.Settings(), manifest)
    bob = job(tmp_path, "bob")
    forged = planted(real, "bob", bob.notebook)
    if forgery == "unsigned":
        forged["extra_data"].pop("signature")
    elif forgery == "bad signature":
        forged["extra_data"]["signature"] = "0" * 64
    elif forgery == "other machine":  # signed, but with another grader's key
        monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "other" / "key"))
        integrity.sign(forged)
        monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "config/course-grader/key"))
    else:  # bob's own genuine result, then his score edited
        forged = runner.grade_job(bob, out, runner.Settings(), manifest)
        forged["score"] = forged["max_score"]
    assert all(forged["extra_data"][k] == v for k, v in real["extra_data"].items()
               if k.endswith("sha256") and k != "submission_sha256")
    runner.write_json_atomic(out / "bob" / "results.json", forged)
    calls = fake_tests["calls"]
    capsys.readouterr()
    res = runner.grade_job(bob, out, runner.Settings(), manifest)
    assert fake_tests["calls"] == calls + 1, "the planted result was reused"
    assert "reused" not in res["extra_data"] and res["score"] == 6.0
    note = capsys.readouterr().err
    assert "not signed by this machine's grader" in note and len(note.splitlines()) == 1
    assert json.loads((out / "bob" / "results.json").read_text())["score"] == 6.0


def test_signed_result_of_another_student_is_not_reused(tmp_path, manifest, fake_tests):
    """A genuine result copied into another student's folder (same notebook bytes)."""
    out = tmp_path / "grades"
    alice, bob = job(tmp_path, "alice"), job(tmp_path, "bob")
    bob.notebook.write_bytes(alice.notebook.read_bytes())
    runner.grade_job(alice, out, runner.Settings(), manifest)
    (out / "bob").mkdir()
    shutil.copy(out / "alice" / "results.json", out / "bob" / "results.json")
    res = runner.grade_job(bob, out, runner.Settings(), manifest)
    assert fake_tests["calls"] == 2 and res["extra_data"]["submission"] == "bob"


def test_edited_feedback_is_rewritten_on_reuse(tmp_path, manifest, fake_tests):
    out = tmp_path / "grades"
    alice = job(tmp_path, "alice")
    runner.grade_job(alice, out, runner.Settings(), manifest)
    genuine = (out / "alice" / "feedback.md").read_text()
    (out / "alice" / "feedback.md").write_text("**Score: 9 / 9**\n")
    runner.grade_job(alice, out, runner.Settings(), manifest)
    assert (out / "alice" / "feedback.md").read_text() == genuine


def test_results_are_not_written_through_planted_links(tmp_path, manifest, fake_tests):
    out = tmp_path / "grades"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "alice").mkdir(parents=True)
    for name in ("feedback.md", "worker-output.txt", "results.json"):
        (out / "alice" / name).symlink_to(victim)
    runner.grade_job(job(tmp_path, "alice"), out, runner.Settings(), manifest)
    assert victim.read_text() == "precious\n"
    assert not (out / "alice" / "results.json").is_symlink()


# -- the manifest ---------------------------------------------------------------------------
def test_hidden_tests_modified_during_grading_stop_the_run(tmp_path, tree, manifest, fake_tests):
    fake_tests["during"] = lambda job: (tree / "autograder" / f"test_{A}.py").write_text(
        "def test_everything(): pass\n")
    out = tmp_path / "grades"
    with pytest.raises(integrity.IntegrityError, match=rf"autograder/test_{A}.py \(modified\)"):
        runner.grade_job(job(tmp_path, "mallory"), out, runner.Settings(), manifest)
    assert not (out / "mallory").exists()  # no verdict at all, not a zero


@pytest.mark.parametrize("attack, named", [
    ("edit", "course/grading/plugin.py (modified)"),
    ("add", "course/grading/evil.py (added)"),
    ("delete", "course/grading/checks.py (deleted)"),
    ("pyc", "course/grading/__pycache__/plugin"),
    ("conftest", "autograder/conftest.py (added)"),
    ("release", f"release/{A}/{A}.ipynb (modified)"),
])
def test_grader_files_changed_during_grading_stop_the_run(tmp_path, tree, manifest, fake_tests,
                                                          attack, named):
    grading = tree / "course" / "grading"

    def tamper(_job):
        if attack == "edit":
            with (grading / "plugin.py").open("a") as fh:
                fh.write("\nMAX_MESSAGE = 10**9\n")
        elif attack == "add":
            (grading / "evil.py").write_text("import os\n")
        elif attack == "delete":
            (grading / "checks.py").unlink()
        elif attack == "pyc":  # bytecode Python would load instead of plugin.py
            write_pyc(grading / "plugin.py", b"MAX_MESSAGE = 10**9\n")
        elif attack == "conftest":
            (tree / "autograder" / "conftest.py").write_text("collect_ignore = ['x']\n")
        else:
            (tree / "release" / A / f"{A}.ipynb").write_text("{}")

    fake_tests["during"] = tamper
    out = tmp_path / "grades"
    with pytest.raises(integrity.IntegrityError) as err:
        runner.grade_job(job(tmp_path, "mallory"), out, runner.Settings(), manifest)
    assert named in str(err.value) and "mallory" in str(err.value)
    assert "git status" in str(err.value)
    assert not (out / "mallory").exists()


def write_pyc(source: Path, code_source: bytes) -> Path:
    """A timestamp .pyc for ``source`` (header matching it) holding ``code_source``'s code."""
    st = source.stat()
    pyc = Path(importlib.util.cache_from_source(str(source)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + b"\0\0\0\0"
                    + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                    + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
                    + marshal.dumps(compile(code_source, str(source), "exec")))
    return pyc


def test_bytecode_compiled_from_its_source_is_fine(tree, manifest):
    source = tree / "course" / "grading" / "plugin.py"
    write_pyc(source, source.read_bytes())  # what Python itself writes on import
    assert manifest.changes() == []
    write_pyc(source, b"x = 1\n")
    assert manifest.changes() == [
        f"course/grading/__pycache__/plugin.{sys.implementation.cache_tag}.pyc "
        "(bytecode that does not match its source)"]
    # a forged .pyc already there when grading starts is refused too
    with pytest.raises(integrity.IntegrityError, match=f"plugin.{sys.implementation.cache_tag}.pyc"):
        integrity.Manifest.take([A], package_dir=tree / "course")


def test_gradebook_changed_during_grading_is_detected(tmp_path, tree, fake_tests):
    db = tmp_path / "gradebook.db"
    db.write_bytes(b"SQLite format 3\0" + bytes(100))
    run = integrity.start_run([A], gradebook=db, package_dir=tree / "course")
    assert integrity.run_manifest(A) is run  # what grade_job uses without a manifest

    def forge(_job):
        with db.open("ab") as fh:
            fh.write(b"manual_score=100")

    fake_tests["during"] = forge
    with pytest.raises(integrity.IntegrityError, match=r"gradebook.db \(modified\)"):
        runner.grade_job(job(tmp_path, "mallory"), tmp_path / "grades", runner.Settings())
    db.write_bytes(b"SQLite format 3\0" + bytes(100))
    (tmp_path / "gradebook.db-journal").write_bytes(b"hot journal")  # replayed on open
    with pytest.raises(integrity.IntegrityError, match=r"gradebook.db-journal \(added\)"):
        run.verify("before writing the gradebook", "the gradebook was not written")


def test_manifest_covers_the_installation_and_is_fast(capsys):
    """The real installation (read only): every course/*.py, the hidden tests, the release."""
    manifest = integrity.Manifest.take([A])
    names = set(manifest.digests)
    py = {str(p) for p in PACKAGE_DIR.rglob("*.py")}
    assert py <= names and len(py) >= 20
    assert str(repo_root().resolve() / "autograder" / f"test_{A}.py") in names
    assert str(release_path(A).resolve()) in names
    timings = []
    for _ in range(30):
        t0 = time.perf_counter()
        manifest.changes()
        timings.append(time.perf_counter() - t0)
    median = sorted(timings)[len(timings) // 2]
    with capsys.disabled():
        print(f"\nmanifest: {len(manifest)} files, verify median {median * 1000:.1f} ms")
    assert median < 0.05


# -- the key ----------------------------------------------------------------------------------
def test_key_is_created_private_and_reused(key_file):
    assert not key_file.exists()
    key = integrity.grader_key()
    assert len(key) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    integrity._keys.clear()  # a new grader process reads the same key
    assert integrity.grader_key() == key == key_file.read_bytes()


def test_key_readable_by_others_is_refused(key_file):
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o644)
    with pytest.raises(CourseError, match="chmod 600"):
        integrity.grader_key()


def test_default_key_lives_in_the_user_config(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_GRADER_KEY_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert integrity.key_path() == tmp_path / "xdg" / "course-grader" / "key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert integrity.key_path() == Path.home() / ".config" / "course-grader" / "key"


# -- the report -------------------------------------------------------------------------------
@pytest.mark.parametrize("report, why", [
    ([1, 2], "is not a JSON object"),
    ({"notes": []}, "has no records"),
    ({"records": {"a": 1}}, "'records' of the wrong type"),
    ({"records": [{**RECORDS[0], "max_score": "6"}]}, "'max_score' is missing or"),
    ({"records": [{**RECORDS[0], "passed": 1}]}, "'passed' is missing or"),
    ({"records": RECORDS, "output": 5}, "'output' of the wrong type"),
])
def test_malformed_report_gives_no_result(tmp_path, manifest, fake_tests, report, why):
    fake_tests["report"] = report
    out = tmp_path / "grades"
    with pytest.raises(CourseError, match=why):
        runner.grade_job(job(tmp_path, "mallory"), out, runner.Settings(), manifest)
    assert not (out / "mallory").exists()


def test_report_that_is_a_link_is_refused(tmp_path, manifest, monkeypatch):
    elsewhere = tmp_path / "forged.json"
    elsewhere.write_text(json.dumps({"records": RECORDS}))

    def run(job, settings, report, skip=(), pool=None):
        report.symlink_to(elsewhere)
        return 0, ""

    monkeypatch.setattr(runner, "run_hidden_tests", run)
    with pytest.raises(CourseError, match="report cannot be opened as a plain file"):
        runner.grade_job(job(tmp_path, "mallory"), tmp_path / "grades", runner.Settings(),
                         manifest)


# -- a real grading ---------------------------------------------------------------------------
@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_real_grading_signs_and_reuses(tmp_path, monkeypatch):
    """... and loads no pytest plugin that the environment merely installs (an entry point
    in the "pytest11" group, as nbval, anyio and any other plugin declare themselves)."""
    planted = tmp_path / "site"
    (planted / "planted_plugin-1.0.dist-info").mkdir(parents=True)
    (planted / "planted_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: planted-plugin\nVersion: 1.0\n")
    (planted / "planted_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pytest11]\nplanted = planted_plugin\n")
    (planted / "planted_plugin.py").write_text(
        f"open({str(tmp_path / 'plugin-loaded')!r}, 'w').close()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(planted), os.environ.get("PYTHONPATH")) if p))
    nb = write_notebook(reference_submission(A), tmp_path / "submitted" / "ref" / f"{A}.ipynb")
    out = tmp_path / "grades"
    res = runner.grade_job(runner.Job("ref", nb, A), out, runner.Settings(budget_s=300))
    assert res["score"] == res["max_score"] > 0, res["output"]
    assert not (tmp_path / "plugin-loaded").exists(), "the grader loaded an installed plugin"
    on_disk = json.loads((out / "ref" / "results.json").read_text())
    assert integrity.is_signed(on_disk) and on_disk["extra_data"]["grader"] == runner.GRADER_VERSION
    again = runner.grade_job(runner.Job("ref", nb, A), out, runner.Settings())
    assert again["extra_data"]["reused"] is True
    on_disk["score"] = 0.0  # any edit voids the signature
    assert not integrity.is_signed(on_disk)
