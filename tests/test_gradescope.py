"""`course gradescope` builds a Gradescope autograder zip that grades like `course grade`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from course import gradescope
from course.paths import data_dir
from course.submissions import reference_submission, write_notebook

ASSIGNMENT = "01_kmeans"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return gradescope.build(ASSIGNMENT, out_dir=tmp_path_factory.mktemp("gs"))


def test_zip_holds_the_grader_and_no_solutions(bundle):
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        release = zf.read(f"course-bundle/release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb").decode()
    assert {"setup.sh", "run_autograder"} <= names
    assert f"course-bundle/autograder/test_{ASSIGNMENT}.py" in names
    assert f"course-bundle/release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb" in names
    assert "course-bundle/course/grading/worker.py" in names
    assert not [n for n in names if "/source/" in n or "/solutions/" in n or "/tests/" in n]
    assert "# your code here" in release and "BEGIN SOLUTION" not in release


def test_zip_is_reproducible(bundle, tmp_path):
    again = gradescope.build(ASSIGNMENT, out_dir=tmp_path)
    assert again.read_bytes() == bundle.read_bytes()


def run_autograder(root: Path, cwd: Path | None = None, **extra_env: str) -> dict:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_DATA": str(data_dir()),
           **extra_env}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, check=True,
                   capture_output=True, timeout=600, cwd=cwd)
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture
def autograder_root(bundle, tmp_path) -> Path:
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(root / "source")
    (root / "venv").symlink_to(Path(sys.prefix))  # stands in for setup.sh's venv
    (root / "submission").mkdir()
    return root


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_run_autograder_grades_an_upload(autograder_root):
    write_notebook(reference_submission(ASSIGNMENT),
                   autograder_root / "submission" / "my homework.ipynb")
    res = run_autograder(autograder_root)
    assert res["score"] == res["max_score"] > 0
    assert {"name", "score", "max_score", "output"} <= set(res["tests"][0])


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_run_autograder_without_unshare_or_cgroups_is_contained(autograder_root):
    """Gradescope's containers have neither: the worker must still be contained there."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    res = run_autograder(autograder_root, COURSE_SANDBOX_DISABLE="unshare,cgroups")
    isolation = res["extra_data"]["isolation"]
    assert isolation["level"] == "contained", isolation
    assert res["score"] == res["max_score"] > 0
    assert oct((autograder_root / "results").stat().st_mode & 0o777) == "0o700"


def test_setup_installs_cpu_torch_and_hides_the_grader_from_student_code(bundle):
    with zipfile.ZipFile(bundle) as zf:
        setup = zf.read("setup.sh").decode()
        run = zf.read("run_autograder").decode()
    subprocess.run(["bash", "-n"], input=setup, text=True, check=True)
    subprocess.run(["bash", "-n"], input=run, text=True, check=True)
    assert "download.pytorch.org/whl/cpu" in setup  # not the CUDA wheels
    assert "-e ./" not in setup  # the package lives in the venv, not in the hidden bundle
    assert '[grader]"' in setup  # the hidden tests need pytest, not in the student runtime
    assert 'useradd --system --no-create-home --shell /usr/sbin/nologin "$STUDENT"' in setup
    assert f'STUDENT="${{COURSE_STUDENT_USER:-{gradescope.STUDENT_USER}}}"' in setup
    assert 'chmod -R go-rwx "$ROOT/source"' in setup
    assert "COURSE_WORKER_UID" in run


def test_run_autograder_explains_a_missing_notebook(autograder_root):
    (autograder_root / "submission" / "notes.txt").write_text("forgot the notebook")
    res = run_autograder(autograder_root)
    assert res["score"] == 0 and "upload 01_kmeans.ipynb" in res["output"]


def test_run_autograder_without_a_sandbox_fails_the_run_instead_of_a_zero(autograder_root):
    """A container without Landlock and unshare: no verdict is written (Gradescope shows a
    failed autograder run the instructor can rerun), never a zero."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    env = {**os.environ, "AUTOGRADER_ROOT": str(autograder_root), "COURSE_DATA": str(data_dir()),
           "COURSE_SANDBOX_DISABLE": "unshare,landlock"}
    proc = subprocess.run(["bash", str(autograder_root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "refusing to run student code" in proc.stderr
    assert not (autograder_root / "results" / "results.json").exists()


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_a_grader_killed_on_gradescope_writes_no_zero(autograder_root):
    """The grader process SIGKILLed half way (the OOM killer, say): the run fails with the
    reason and writes no results.json, so Gradescope shows a failed run, never a zero."""
    write_notebook(reference_submission(ASSIGNMENT), autograder_root / "submission" / "a.ipynb")
    tests_dir = str(Path(__file__).resolve().parent)
    env = {**os.environ, "AUTOGRADER_ROOT": str(autograder_root), "COURSE_DATA": str(data_dir()),
           "PYTEST_PLUGINS": "fault_plugin", "COURSE_FAULT_KILL_AFTER": "3",
           "PYTHONPATH": os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH"))
                                         if p)}
    proc = subprocess.run(["bash", str(autograder_root / "source" / "run_autograder")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout
    assert "not graded" in proc.stderr and "killed by SIGKILL after 3 of" in proc.stderr, \
        proc.stderr[-2000:]
    assert not (autograder_root / "results" / "results.json").exists()


# --- Gradescope's layout, emulated with the worker on its own uid -------------------------
# The checks above run the grader from this repository's venv (under /root here), which a
# second user cannot read, so the worker keeps the grader's uid there. This emulation builds
# what setup.sh builds: a world-readable venv (the system's Python 3.11, this venv's packages
# hard-linked, the bundle installed not editable), the data beside it, then runs setup.sh
# itself (hardening only: the installs need download.pytorch.org) and run_autograder.

SYSTEM_PYTHON = Path("/usr/bin/python3.11")
GRADE_ONE = r"""
import json, sys
from pathlib import Path
from course.grading import runner
job = runner.Job("s", Path(sys.argv[1]), sys.argv[2])
res = runner.grade_job(job, Path(sys.argv[3]),
                       runner.Settings(allow_weak_isolation=True, force=True))
print(json.dumps(res))
"""


def _uid_emulation_skip() -> str:
    if os.geteuid() != 0:
        return "needs root: the grader hands the worker a uid of its own only as root"
    if not SYSTEM_PYTHON.is_file() or sys.version_info[:2] != (3, 11):
        return f"needs {SYSTEM_PYTHON} of this venv's minor version to host its packages"
    if not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        return "MNIST is not staged: run `make data`"
    return ""


def _link_tree(src: Path, dst: Path, ignore=None) -> None:
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:  # another file system
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link, ignore=ignore, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def gradescope_root(bundle):
    reason = _uid_emulation_skip()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="course-gradescope-emulation-"))
    try:
        os.chmod(root, 0o755)
        venv = root / "venv"
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)],
                       check=True)
        site = next(p for p in map(Path, __import__("site").getsitepackages())
                    if p.name == "site-packages")
        _link_tree(site, venv / "lib" / "python3.11" / "site-packages",
                   ignore=shutil.ignore_patterns("__editable__*", "course-*.dist-info",
                                                 "a1_coverage.pth"))
        with zipfile.ZipFile(bundle) as zf:
            zf.extractall(root / "source")
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--no-index", "--no-deps", "--no-build-isolation",
                        str(root / "source" / gradescope.BUNDLE)],
                       check=True, capture_output=True, cwd=root)
        _link_tree(data_dir(), root / "data")
        (venv / "canary.txt").write_text("trusted")
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "COURSE_STUDENT_USER": "nobody",
               "COURSE_SETUP_SKIP_INSTALL": "1", "XDG_CACHE_HOME": str(root / "cache")}
        subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, check=True,
                       capture_output=True, timeout=120)
        (root / "submission").mkdir()
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _hostile_reference(root: Path) -> dict:
    """The reference solution plus a cell that tries to read the hidden tests, to write into
    the venv, and to plant a result; what it reads comes back through an error message."""
    nb = reference_submission(ASSIGNMENT)
    hidden = root / "source" / gradescope.BUNDLE / "autograder" / f"test_{ASSIGNMENT}.py"
    probe = f'''
from pathlib import Path as _P
LEAK = ""
try:
    LEAK = _P({str(hidden)!r}).read_text()[:80]
except OSError:
    pass
for _target, _text in (({str(root / "venv" / "canary.txt")!r}, "tampered"),
                       ({str(root / "results" / "results.json")!r}, '{{"score": 99}}')):
    try:
        _P(_target).write_text(_text)
    except OSError:
        pass
if LEAK:
    def pca(*args, **kwargs):
        raise RuntimeError("LEAK " + " ".join(LEAK.split()))
'''
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None,
                        "outputs": [], "source": probe})
    return nb


def test_setup_hardens_the_layout(gradescope_root):
    mode = lambda p: oct(p.stat().st_mode & 0o777)  # noqa: E731
    assert mode(gradescope_root / "source") == "0o700"
    assert mode(gradescope_root / "source" / gradescope.BUNDLE / "autograder") == "0o700"
    assert mode(gradescope_root / "results") == "0o700"
    assert mode(gradescope_root / "venv") == "0o755"
    course_pkg = next((gradescope_root / "venv").rglob("course/grading/worker.py"))
    assert mode(course_pkg) == "0o644"


def test_setup_keeps_what_every_grading_would_compute_again(gradescope_root):
    """setup.sh builds the workers' font list and keeps 01's scikit-learn references in the
    image; a grading in a container of that image finds them (it keeps nothing anew)."""
    cache = gradescope_root / "cache" / "course"
    kept = {p.name: p.stat().st_mtime_ns
            for p in (cache / "kept-references").glob(f"test_{ASSIGNMENT}.*.pt")}
    assert len(kept) == 3, kept
    assert len(list((cache / "matplotlib-fonts").glob("fontlist-v*.json"))) == 1
    write_notebook(reference_submission(ASSIGNMENT),
                   gradescope_root / "submission" / f"{ASSIGNMENT}.ipynb")
    res = run_autograder(gradescope_root, COURSE_SANDBOX_DISABLE="unshare,cgroups",
                         COURSE_STUDENT_USER="nobody", COURSE_DATA=str(gradescope_root / "data"),
                         XDG_CACHE_HOME=str(gradescope_root / "cache"))
    assert res["score"] == res["max_score"] > 0, res["output"]
    assert {p.name: p.stat().st_mtime_ns
            for p in (cache / "kept-references").glob(f"test_{ASSIGNMENT}.*.pt")} == kept


def test_run_autograder_hands_student_code_its_own_uid(gradescope_root):
    """No unshare, no writable cgroups, as on Gradescope: the worker runs as `nobody`, under
    Landlock and seccomp; the hostile cell reads, writes and plants nothing, and the honest
    part of the notebook gets full marks."""
    sub = gradescope_root / "submission"
    write_notebook(_hostile_reference(gradescope_root), sub / f"{ASSIGNMENT}.ipynb")
    # started from inside the bundle (Gradescope does not say from where): its `course` folder,
    # unreadable to the student's uid, must not be the package the grader imports
    res = run_autograder(gradescope_root, cwd=gradescope_root / "source" / gradescope.BUNDLE,
                         COURSE_SANDBOX_DISABLE="unshare,cgroups",
                         COURSE_STUDENT_USER="nobody", COURSE_DATA=str(gradescope_root / "data"))
    layers = res["extra_data"]["isolation"]["layers"]
    nobody = subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert f"own uid {nobody}" in layers, layers
    assert res["score"] == res["max_score"] > 0, res["output"]
    assert "LEAK" not in json.dumps(res)
    assert (gradescope_root / "venv" / "canary.txt").read_text() == "trusted"


@pytest.mark.parametrize("disabled, contained", [
    ("unshare,cgroups,landlock,seccomp", True),        # the uid alone
    ("unshare,cgroups,landlock,seccomp,uid", False),   # nothing: the probe itself works
])
def test_the_uid_alone_keeps_the_bundle_and_the_venv_from_student_code(gradescope_root,
                                                                       disabled, contained,
                                                                       tmp_path):
    """Where Landlock is missing the uid is all that stands between student code and the
    hidden tests: graded with every other layer off, the leak and the write must fail; with
    the uid off too they succeed (so this test can fail)."""
    nb = write_notebook(_hostile_reference(gradescope_root), tmp_path / "hostile.ipynb")
    os.chmod(tmp_path, 0o755)
    os.chmod(nb, 0o644)
    (gradescope_root / "venv" / "canary.txt").write_text("trusted")
    env = {**os.environ, "COURSE_ROOT": str(gradescope_root / "source" / gradescope.BUNDLE),
           "COURSE_DATA": str(gradescope_root / "data"), "COURSE_SANDBOX_DISABLE": disabled,
           "COURSE_WORKER_UID": subprocess.run(["id", "-u", "nobody"], capture_output=True,
                                               text=True, check=True).stdout.strip()}
    out = tmp_path / "out"
    proc = subprocess.run([str(gradescope_root / "venv" / "bin" / "python"), "-P", "-c",
                           GRADE_ONE, str(nb), ASSIGNMENT, str(out)], env=env,
                          capture_output=True, text=True, timeout=600,
                          cwd=gradescope_root / "source" / gradescope.BUNDLE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.splitlines()[-1])
    leaked = "LEAK" in json.dumps(res)
    tampered = (gradescope_root / "venv" / "canary.txt").read_text() != "trusted"
    assert (leaked, tampered) == (not contained, not contained), res["output"]
    if contained:
        assert res["score"] == res["max_score"] > 0, res["output"]
