"""References kept between gradings (course.grading.kept, checks.ComputedLater(kept=True)):
found again only by the grader that kept them, for the same tests, package and libraries;
a kept reference spares its imports and its computation; 01's NMI, computed in torch so that
a grading with its references kept never imports scikit-learn, equals scikit-learn's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import torch

from course.grading import checks, kept, session
from course.paths import repo_root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder and a grader key of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "config" / "key"))
    return tmp_path / "cache" / "course" / "kept-references"


def _tests_file(tmp_path: Path, text: str = "# hidden tests, version 1\n") -> Path:
    path = tmp_path / "test_hidden.py"
    path.write_text(text)
    return path


VALUE = (torch.arange(6, dtype=torch.float64).reshape(2, 3), 1.5)


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and a[1] == b[1]


def test_a_kept_value_is_found_again_by_the_grader_that_kept_it(cache, tmp_path) -> None:
    defined_in = _tests_file(tmp_path)
    assert kept.load("t.ref", defined_in) is kept.MISSING
    assert kept.store("t.ref", defined_in, VALUE)
    assert _same(kept.load("t.ref", defined_in), VALUE)
    assert kept.load("t.other", defined_in) is kept.MISSING
    entries = list(cache.iterdir())
    assert len(entries) == 1 and (cache.stat().st_mode & 0o077) == 0


def test_an_entry_changed_or_written_with_another_key_is_not_trusted(cache, tmp_path,
                                                                     monkeypatch) -> None:
    defined_in = _tests_file(tmp_path)
    kept.store("t.ref", defined_in, VALUE)
    (entry,) = cache.iterdir()
    raw = bytearray(entry.read_bytes())
    raw[-40] ^= 0x01  # one bit of the payload
    entry.write_bytes(bytes(raw))
    assert kept.load("t.ref", defined_in) is kept.MISSING
    # a well-formed entry signed with a key the grader does not hold (the student's own)
    monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "student" / "key"))
    assert kept.store("t.ref", defined_in, (torch.zeros(2, 3, dtype=torch.float64), 0.0))
    monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "config" / "key"))
    assert kept.load("t.ref", defined_in) is kept.MISSING


def test_a_signed_entry_that_is_not_plain_data_is_not_loaded(cache, tmp_path) -> None:
    """Entries are read as data only (torch.load weights_only): even a correctly signed one
    holding an object of some class is ignored, never unpickled into code."""
    defined_in = _tests_file(tmp_path)
    assert kept.store("t.ref", defined_in, {"x": PurePosixPath("/etc/passwd")})
    assert kept.load("t.ref", defined_in) is kept.MISSING
    assert kept.store("t.ref", defined_in, {"x": [1.0, VALUE[0]]})  # plain data: loaded
    assert kept.load("t.ref", defined_in)["x"][0] == 1.0


def test_editing_the_tests_makes_a_new_entry_and_removes_the_old(cache, tmp_path) -> None:
    defined_in = _tests_file(tmp_path)
    kept.store("t.ref", defined_in, VALUE)
    defined_in.write_text("# hidden tests, version 2: another reference\n")
    assert kept.load("t.ref", defined_in) is kept.MISSING
    kept.store("t.ref", defined_in, (VALUE[0] * 2, 3.0))
    assert len(list(cache.iterdir())) == 1
    assert kept.load("t.ref", defined_in)[1] == 3.0


def test_the_fingerprint_covers_the_course_package_and_the_libraries(tmp_path,
                                                                    monkeypatch) -> None:
    defined_in = _tests_file(tmp_path)
    package = tmp_path / "course"
    (package / "grading").mkdir(parents=True)
    (package / "data.py").write_text("SCALE = 255.0\n")
    (package / "grading" / "checks.py").write_text("RTOL = 1e-3\n")
    monkeypatch.setattr(kept, "PACKAGE_DIR", package)
    kept._environment.cache_clear()
    try:
        before = kept.fingerprint(defined_in)
        kept._environment.cache_clear()
        assert kept.fingerprint(defined_in) == before
        (package / "data.py").write_text("SCALE = 256.0\n")  # how the data is loaded
        kept._environment.cache_clear()
        changed_package = kept.fingerprint(defined_in)
        assert changed_package != before
        monkeypatch.setattr(kept, "LIBRARIES", (*kept.LIBRARIES, "a_library_not_installed"))
        kept._environment.cache_clear()
        assert kept.fingerprint(defined_in) not in (before, changed_package)
    finally:
        kept._environment.cache_clear()


def test_nothing_is_kept_where_the_cache_cannot_be_written(tmp_path, monkeypatch) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    monkeypatch.setenv("COURSE_GRADER_KEY_FILE", str(tmp_path / "config" / "key"))
    defined_in = _tests_file(tmp_path)
    assert kept.store("t.ref", defined_in, VALUE) is False
    assert kept.load("t.ref", defined_in) is kept.MISSING


def _reference(calls: list[str], after=()):
    def sklearn_reference():
        calls.append(threading.current_thread().name)
        return VALUE
    return checks.ComputedLater(sklearn_reference, after, kept=True)


def test_a_kept_reference_skips_its_imports_its_computation_and_the_worker_lock(
        cache, monkeypatch) -> None:
    """The first grading computes the reference and keeps it; the next one finds it in the
    thread at once: without waiting for its imports (never started) or for the worker to be
    free, and without computing it."""
    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    calls: list[str] = []
    first = _reference(calls)
    assert _same(first(), VALUE) and calls == ["MainThread"]

    class Imports:  # an ImportedLater that would block forever
        waited = False

        def wait(self) -> None:
            Imports.waited = True
            threading.Event().wait(3600)

    second = _reference(calls, (Imports(),))
    assert second.key == first.key == "test_kept._reference._locals_.sklearn_reference"
    with session.WORKER_BUSY:  # a request is running all along
        checks.start_computing()
        assert second._done.wait(30)
        assert _same(second(), VALUE)
    assert calls == ["MainThread"] and not Imports.waited


def test_a_reference_not_kept_yet_is_computed_in_the_thread_and_kept(cache, monkeypatch) -> None:
    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    calls: list[str] = []
    ref = _reference(calls)
    checks.start_computing()
    assert ref._done.wait(30) and calls == ["computed-later"]
    assert _same(kept.load(ref.key, ref.defined_in), VALUE)


def test_modules_imported_when_needed_wait_to_be_asked() -> None:
    """ImportedLater(when_needed=True) imports nothing until something asks for its modules
    (a grading whose references were all kept never imports scikit-learn)."""
    code = ("import sys, time\n"
            "from course.grading.checks import ImportedLater\n"
            "later = ImportedLater('colorsys', when_needed=True)\n"
            "time.sleep(0.3)\n"
            "assert 'colorsys' not in sys.modules\n"
            "assert later['colorsys'].__name__ == 'colorsys'\n"
            "eager = ImportedLater('wave')\n"
            "eager.wait()\n"
            "assert 'wave' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _hidden_01(monkeypatch):
    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    path = repo_root() / "autograder" / "test_01_kmeans.py"
    spec = importlib.util.spec_from_file_location("hidden_01_for_nmi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nmi_of_01_equals_scikit_learns(monkeypatch) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    nmi = _hidden_01(monkeypatch).normalized_mutual_info
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (10_000,), generator=g)
    noisy = torch.where(torch.rand(10_000, generator=g) < 0.6, y,
                        torch.randint(0, 10, (10_000,), generator=g))
    cases = {
        "noisy labels": (y, noisy),
        "relabelled": (y, (y * 7 + 3) % 10),
        "independent": (y, torch.randint(0, 10, (10_000,), generator=g)),
        "one cluster": (y, torch.zeros(10_000, dtype=torch.int64)),
        "both one cluster": (torch.zeros(50, dtype=torch.int64), torch.full((50,), 4)),
        "float and negative labels": (y, noisy.double() - 5.5),
        "unused cluster ids": (y, noisy * 3),
        "two points": (torch.tensor([0, 1]), torch.tensor([1, 0])),
    }
    for name, (a, b) in cases.items():
        want = metrics.normalized_mutual_info_score(a.numpy(), b.numpy())
        assert nmi(a, b) == pytest.approx(want, abs=1e-12), name
    assert nmi(y, noisy) > 0.3 and nmi(y, y) == pytest.approx(1.0)


def test_01_keeps_its_scikit_learn_references(monkeypatch) -> None:
    """Every reference of 01 computed by scikit-learn is kept, and no test imports
    scikit-learn outside them (so a grading with them kept never imports it)."""
    module = _hidden_01(monkeypatch)
    refs = [v for v in vars(module).values() if isinstance(v, checks.ComputedLater)]
    assert {r.__name__ for r in refs} == {"sklearn_kmeans_mnist", "sklearn_pca_mnist",
                                         "sklearn_pca_random"}
    assert all(r.kept and module.SKLEARN in r.after for r in refs)
    source = (repo_root() / "autograder" / "test_01_kmeans.py").read_text()
    uses = [line for line in source.splitlines() if 'SKLEARN["' in line]
    assert len(uses) == 2 and all("KMeans" in u or "PCA(" in u for u in uses), uses
    assert os.path.basename(refs[0].defined_in) == "test_01_kmeans.py"


def test_warm_keeps_every_kept_reference_of_a_tests_file(cache, tmp_path, monkeypatch) -> None:
    """What Gradescope's setup.sh runs (course.gradescope prepare): every kept reference the
    file defines is computed and kept; one that fails is left to the grading (which reports
    the real error); the others are kept all the same."""
    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    tests_file = tmp_path / "test_warm.py"
    tests_file.write_text(
        "import torch\n"
        "from course.grading.checks import ComputedLater, computed_later\n"
        "@computed_later(kept=True)\n"
        "def reference():\n"
        "    return torch.ones(3)\n"
        "@computed_later(kept=True)\n"
        "def broken():\n"
        "    raise ValueError('left to the grading')\n"
        "@ComputedLater\n"
        "def not_kept():\n"
        "    return 1\n")
    assert kept.warm(tests_file) == ["test_warm.reference"]
    assert torch.equal(kept.load("test_warm.reference", tests_file), torch.ones(3))
    assert kept.load("test_warm.not_kept", tests_file) is kept.MISSING


def test_a_run_that_allows_weak_isolation_keeps_no_reference(cache, tmp_path, monkeypatch) -> None:
    """Where weak isolation is allowed a worker may write the cache and read the key, so such
    a grader neither reads nor keeps references: the runner says so on the grader's command
    line, the plugin switches kept references off before any test."""
    from course.grading import runner

    calls = []
    monkeypatch.setattr(runner.subprocess, "run", lambda cmd, **kw: calls.append(cmd)
                        or type("P", (), {"returncode": 0, "stdout": "", "stderr": ""})())
    monkeypatch.setattr(runner, "release_notebook", lambda a, root=None: tmp_path / "r.ipynb")
    job = runner.Job("s", tmp_path / "s.ipynb", "01_kmeans")
    for settings, off in ((runner.Settings(), False),
                          (runner.Settings(allow_weak_isolation=True), True),
                          (runner.Settings(allow_weak_isolation=True, kept_references=True),
                           False)):
        runner.run_hidden_tests(job, settings, tmp_path / "report.json")
        assert ("--no-kept-references" in calls[-1]) is off, settings

    defined_in = _tests_file(tmp_path)
    kept.store("t.ref", defined_in, VALUE)
    monkeypatch.setattr(kept, "ENABLED", False)
    assert kept.load("t.ref", defined_in) is kept.MISSING
    assert kept.store("t.other", defined_in, VALUE) is False
    monkeypatch.setattr(kept, "ENABLED", True)
    assert kept.load("t.other", defined_in) is kept.MISSING

    (tmp_path / "test_switch.py").write_text(
        "from course.grading import kept\n"
        "def test_switched_off():\n"
        "    assert kept.ENABLED is False\n")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "course.grading.plugin", "-o", "addopts=",
                           "--no-kept-references", str(tmp_path / "test_switch.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
