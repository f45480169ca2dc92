"""The grading engine on small synthetic notebooks: cell planning, the worker protocol,
limits and failure messages. (Real assignments are graded in test_grading.py.)"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import torch

from course.grading import protocol
from course.grading.cgroups import WorkerCgroup
from course.grading.notebook import SubmissionError, plan_cells, read_notebook
from course.grading.sandbox import Limits, _isolation_prefix
from course.grading.session import Budget, StudentFailure, Submission
from course.paths import repo_root


def cell(src: str, gid: str | None, *, solution=False, grade=False, tags=()):
    c = nbformat.v4.new_code_cell(src)
    if gid:
        c.metadata["nbgrader"] = {"schema_version": 3, "grade_id": gid, "locked": not solution,
                                  "solution": solution, "grade": grade}
    if tags:
        c.metadata["tags"] = list(tags)
    return c


_CGROUPS = WorkerCgroup.available()
SETUP = cell("import torch\nSCALE = 2", "setup")
TEST = cell("assert double(torch.ones(1)).item() == 2", "test_double", grade=True)
EXPERIMENT = cell("import time\ntime.sleep(60)", "exp_slow", tags=["experiment"])
STUB = "def double(x):\n    # your code here\n    raise NotImplementedError"
GOOD = ("def double(x):\n    return x * SCALE\n\n"
        "class Net(torch.nn.Module):\n    def __init__(self, n):\n        super().__init__()\n"
        "        self.lin = torch.nn.Linear(n, 3)\n    def forward(self, x):\n"
        "        return self.lin(x)\n")


def notebook(path, *cells):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def release(tmp_path):
    return notebook(tmp_path / "release.ipynb", SETUP, cell(STUB, "double", solution=True),
                    TEST, EXPERIMENT)


def submission(tmp_path, release, body, *extra, **budget):
    nb = notebook(tmp_path / "sub.ipynb", SETUP, cell(body, "double", solution=True), TEST,
                  *extra, EXPERIMENT)
    return Submission(nb, release, budget=Budget(**{"call_s": 10, **budget}))


# -- planning ---------------------------------------------------------------------------------
def test_plan_skips_tests_and_experiments_and_keeps_added_cells(tmp_path, release):
    sub = notebook(tmp_path / "s.ipynb", SETUP, cell(GOOD, "double", solution=True), TEST,
                   cell("helper = 1", None), EXPERIMENT)
    plan = plan_cells(read_notebook(release), read_notebook(sub))
    assert [c["id"] for c in plan.cells] == ["setup", "double", "added after test_double #1"]
    assert plan.cells[1]["source"] == GOOD


def test_plan_restores_locked_cells_and_release_order(tmp_path, release):
    tampered = cell("import torch\nSCALE = 3", "setup")
    sub = notebook(tmp_path / "s.ipynb", cell(GOOD, "double", solution=True), tampered)
    plan = plan_cells(read_notebook(release), read_notebook(sub))
    assert [c["id"] for c in plan.cells] == ["setup", "double"]
    assert "SCALE = 2" in plan.cells[0]["source"]
    assert any("locked cell `setup` was edited" in n for n in plan.notes)


def test_plan_reports_missing_solution_cell(tmp_path, release):
    sub = notebook(tmp_path / "s.ipynb", SETUP)
    plan = plan_cells(read_notebook(release), read_notebook(sub))
    assert plan.missing == ["double"]


#: Cells IPython's kernel runs differently from plain Python (to_python translates them), and
#: what each must become.
IPYTHON_CELLS = {
    "line magic": ("%time x = 1\n", "get_ipython().run_line_magic('time', 'x = 1')\n"),
    "shell": ("!ls -l\n", "get_ipython().system('ls -l')\n"),
    "help": ("torch.randn?\n", "get_ipython().run_line_magic('pinfo', 'torch.randn')\n"),
    "pasted prompt": ("In [3]: x = 1\n", "x = 1\n"),  # valid Python: an annotation
    "pasted doctest": (">>> x = 1\n", "x = 1\n"),
}
#: Plain Python that looks like IPython to a search for "%" or "!": kept as it is.
PLAIN_CELLS = ('print(f"{S.profile!r} {x:.0%}")\n', "y = 7 % 3 != 1\n",
               "s = \"\"\"\n%not a magic\n!nor a command\n\"\"\"\n")


@pytest.mark.parametrize("name", sorted(IPYTHON_CELLS))
def test_to_python_translates_what_ipython_would(name):
    from course.grading.notebook import to_python

    source, want = IPYTHON_CELLS[name]
    assert to_python(source) == want


def test_to_python_keeps_plain_python_without_importing_ipython():
    """A cell that is Python already (``!=``, ``!r``, ``%`` in a string) is run as written, and
    IPython is not imported for it (0.04 s of the worker's first request, 0.05 s of the
    grader's first names_used)."""
    code = ("import sys\n"
            "from course.grading.notebook import to_python\n"
            f"cells = {PLAIN_CELLS!r}\n"
            "assert [to_python(c) for c in cells] == list(cells)\n"
            "assert not any(m.startswith('IPython') for m in sys.modules), 'IPython imported'\n"
            "assert to_python('%time x = 1\\n') != '%time x = 1\\n'\n"
            "assert 'IPython' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"cells": [], "nbformat": 3}'])
def test_unreadable_notebooks_are_rejected_in_one_line(tmp_path, content):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionError) as err:
        read_notebook(path)
    assert "\n" not in str(err.value) and "bad.ipynb" in str(err.value)


# -- protocol ---------------------------------------------------------------------------------
class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_frames_that_are_not_plain_data_are_refused():
    raw = io.BytesIO()
    pickle.dump({"value": Evil()}, raw)
    with pytest.raises(protocol.ProtocolError):
        protocol.loads(raw.getvalue())


def test_plain_data_round_trips():
    msg = {"a": (1, 2.5, "x", None), "t": torch.arange(3), "l": [torch.ones(2, 2)]}
    back = protocol.loads(protocol.dumps(msg))
    assert back["a"] == (1, 2.5, "x", None) and torch.equal(back["t"], torch.arange(3))


def test_a_large_frame_crosses_a_pipe_whole(tmp_path):
    """read_exact fills one buffer from many reads: a 31 MB tensor (MNIST's test images, as the
    k-means tests send them) arrives equal, through a pipe widened where the system allows."""
    X = torch.rand(10_000, 784, generator=torch.Generator().manual_seed(0))
    r, w = os.pipe()
    protocol.widen_pipe(w)
    got = {}
    reader = threading.Thread(target=lambda: got.update(v=protocol.read_frame(r)))
    reader.start()
    try:
        protocol.write_frame(w, {"X": X})
    finally:
        reader.join(30)
        os.close(r)
        os.close(w)
    assert torch.equal(got["v"]["X"], X)


# -- the worker -------------------------------------------------------------------------------
def test_calls_return_data_and_remote_objects(tmp_path, release):
    sub = submission(tmp_path, release, GOOD)
    try:
        assert torch.equal(sub.call("double", torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))
        net = sub.call("Net", 4)
        assert isinstance(net, protocol.Remote) and net.type == "Net"
        out = sub.method(net, "forward", torch.ones(5, 4))
        assert out.shape == (5, 3)
        state = sub.method(net, "state_dict")
        assert set(state) == {"lin.weight", "lin.bias"}
        assert isinstance(sub.attr(net, "lin"), protocol.Remote)
        assert sub.call_info("double", torch.ones(1)).devices == ["cpu"]
        sub.call(protocol.Ref("torch.manual_seed"), 5)
        first = sub.call(protocol.Ref("torch.rand"), 3)
        sub.call(protocol.Ref("torch.manual_seed"), 5)
        assert torch.equal(first, sub.call(protocol.Ref("torch.rand"), 3))
        with pytest.raises(StudentFailure, match="only torch names"):
            sub.call(protocol.Ref("os.system"), "true")
    finally:
        sub.close()


def test_repeated_calls_run_in_one_request(tmp_path, release):
    """call_repeated: n calls of the notebook's function in the worker, one round trip; the
    state they share moves on call by call, and a failure in any of them is the call's."""
    counter = ("import torch\nSEEN = []\ndef double(x):\n    SEEN.append(1)\n"
               "    if len(SEEN) > 7:\n        raise ValueError('eighth call')\n"
               "    return len(SEEN)\n")
    sub = submission(tmp_path, release, counter)
    try:
        sub.call("double", 0)
        requests = []
        real = sub._request
        sub._request = lambda *a, **k: requests.append(a[0]) or real(*a, **k)
        assert sub.call_repeated("double", 5, 0) == [2, 3, 4, 5, 6]
        assert len(requests) == 1
        with pytest.raises(StudentFailure, match="eighth call"):
            sub.call_repeated("double", 3, 0)
        with pytest.raises(ValueError):
            sub.call_repeated("double", 0, 0)
    finally:
        sub.close()


def test_stub_missing_name_and_exceptions_have_one_line_messages(tmp_path, release):
    sub = submission(tmp_path, release, STUB + "\n\ndef boom():\n    return 1 / 0\n")
    try:
        with pytest.raises(StudentFailure, match="not implemented yet"):
            sub.call("double", torch.ones(1))
        with pytest.raises(StudentFailure, match="`nothing` is not defined"):
            sub.call("nothing")
        with pytest.raises(StudentFailure, match=r"raised ZeroDivisionError.*cell double, line 6"):
            sub.call("boom")
    finally:
        sub.close()


def test_a_failing_cell_is_named_when_its_function_is_missing(tmp_path, release):
    sub = submission(tmp_path, release, "def double(x):\n    return x *\n")
    try:
        with pytest.raises(StudentFailure, match="cell `double` failed with SyntaxError"):
            sub.call("double", torch.ones(1))
    finally:
        sub.close()


def test_hang_is_killed_and_the_worker_restarts(tmp_path, release):
    body = GOOD + "\ndef hang():\n    while True:\n        pass\n"
    sub = submission(tmp_path, release, body, call_s=2)
    try:
        with pytest.raises(StudentFailure, match="did not finish within 2 s"):
            sub.call("hang")
        assert torch.equal(sub.call("double", torch.ones(1)), torch.tensor([2.0]))
        assert sub.starts == 2
    finally:
        sub.close()


@pytest.mark.parametrize("code, pattern", [
    ("import os\n    os._exit(0)", "exited with status 0"),
    ("import sys\n    sys.exit(3)", "raised SystemExit"),
    ("import ctypes\n    ctypes.string_at(0)", "segmentation fault"),
    ("return bytearray(50 * 2**30)", "MemoryError"),
])
def test_crashes_cost_only_the_call(tmp_path, release, code, pattern):
    body = GOOD + f"\ndef bad():\n    {code}\n"
    sub = submission(tmp_path, release, body)
    try:
        with pytest.raises(StudentFailure, match=pattern):
            sub.call("bad")
        assert torch.equal(sub.call("double", torch.ones(1)), torch.tensor([2.0]))
    finally:
        sub.close()


@pytest.mark.skipif(not _CGROUPS,
                    reason="cgroups are not writable here: a fork bomb would not be contained")
def test_fork_bomb_is_contained(tmp_path, release):
    body = GOOD + ("\ndef bomb():\n    import os\n    while True:\n        try:\n"
                   "            os.fork()\n        except OSError:\n            pass\n")
    sub = submission(tmp_path, release, body, call_s=3)
    try:
        with pytest.raises(StudentFailure, match="did not finish within 3 s"):
            sub.call("bomb")
        assert torch.equal(sub.call("double", torch.ones(1)), torch.tensor([2.0]))
    finally:
        sub.close()


PROBE = GOOD + """
def probe(read, write):
    import os
    out = {}
    for path in read:
        try:
            with open(path, "rb") as fh:
                fh.read(1)
            out[path] = "read"
        except Exception as exc:
            out[path] = type(exc).__name__
    for path in write:
        try:
            with open(path, "w") as fh:
                fh.write("forged")
            out[path] = "written"
        except Exception as exc:
            out[path] = type(exc).__name__
    out["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    return out
"""


@pytest.mark.skipif("--mount" not in _isolation_prefix(),
                    reason="no mount namespaces here: the filesystem is not locked down")
def test_worker_sees_no_hidden_files_and_writes_only_scratch(tmp_path, release):
    root = repo_root()
    secret = tmp_path / "grades" / "alice" / "results.json"
    secret.parent.mkdir(parents=True)
    secret.write_text("{}")
    read = [str(root / "autograder" / "test_01_kmeans.py"), str(root / "README.md"),
            str(root / "course" / "grading" / "worker.py")]
    write = [str(secret), str(root / "course" / "forged.py"), "/tmp/mine.txt",
             str(Path.home() / "forged.txt")]
    sub = submission(tmp_path, release, PROBE)
    try:
        seen = sub.call("probe", read, write)
    finally:
        sub.close()
    assert seen[read[0]] == "FileNotFoundError" and seen[read[1]] == "FileNotFoundError"
    assert seen[read[2]] == "read"  # the worker's own package stays visible
    assert seen[write[0]] == "FileNotFoundError"  # /tmp is a fresh tmpfs
    assert seen[write[1]] == "OSError" and seen[write[3]] == "OSError"  # read-only
    assert seen["/tmp/mine.txt"] == "written"
    assert seen["pids"] <= 3  # its own PID namespace: the grader is invisible
    assert secret.read_text() == "{}" and not (root / "course" / "forged.py").exists()
    assert not [e for e in sub.events if e.startswith("sandbox:")], sub.events


class _Options:
    """What the grading plugin reads of pytest's config, without a pytest run."""

    def __init__(self, **options) -> None:
        self.options = {"--device": "cpu", "--threads": 0, "--allow-weak-isolation": False,
                        "collectonly": False, **options}

    def getoption(self, name, default=None):
        return self.options.get(name, default)

    def addinivalue_line(self, *_) -> None:
        pass


def test_the_worker_boots_while_tests_are_collected_and_serves_the_submission(tmp_path, release):
    """The plugin starts the worker's process when pytest is configured (it imports torch,
    confined, while the hidden tests are collected); the submission's first call takes that
    worker instead of starting another; a launched worker nobody used is stopped."""
    from course.grading import plugin

    nb = notebook(tmp_path / "sub.ipynb", SETUP, cell(GOOD, "double", solution=True))
    config = _Options(**{"--submission": str(nb)})
    plugin.pytest_configure(config)
    launched = config._course_launched
    assert launched is not None and launched.alive() and not launched.greeted
    sub = Submission(nb, release, launched=launched)
    try:
        assert sub.call("double", torch.ones(1)).item() == 2
        assert sub.worker is launched and sub.starts == 1
    finally:
        sub.close()
    assert not launched.alive()

    unused = _Options(**{"--submission": str(nb)})
    plugin.pytest_configure(unused)
    worker = unused._course_launched
    scratch = worker.scratch
    plugin.pytest_unconfigure(unused)
    assert worker.proc is None and not scratch.exists()
    assert worker.worker_pid > 0  # learnt from the reaper, so its process group was killed
    stat = Path(f"/proc/{worker.worker_pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(") ", 1)[-1][0] in "ZX"  # gone or dead

    listing = _Options(**{"--submission": str(nb), "collectonly": True})
    plugin.pytest_configure(listing)  # --collect-only runs no test: nothing to boot
    assert listing._course_launched is None


def test_a_worker_launched_before_pytest_is_adopted_only_for_the_same_request(tmp_path, release):
    """course.grading.start launches the worker before pytest loads; the plugin takes that
    worker when the command line asks for the same one, stops it and launches its own when
    it asks for another, and stops it when the run grades nothing."""
    from course.grading import plugin, session

    nb = notebook(tmp_path / "sub.ipynb", SETUP, cell(GOOD, "double", solution=True))
    same = session.WorkerRequest("cpu", 0, False, str(release))
    session.prelaunch(same)
    early = session._prelaunched[1]
    config = _Options(**{"--submission": str(nb), "--release": str(release)})
    plugin.pytest_configure(config)
    assert config._course_launched is early and session._prelaunched is None
    plugin.pytest_unconfigure(config)

    session.prelaunch(session.WorkerRequest("cpu", 3, False, str(release)))  # other threads
    other = session._prelaunched[1]
    config = _Options(**{"--submission": str(nb), "--release": str(release)})
    plugin.pytest_configure(config)
    assert config._course_launched is not other and config._course_launched is not None
    assert other.proc is None  # stopped
    plugin.pytest_unconfigure(config)

    session.prelaunch(same)
    unused = session._prelaunched[1]
    plugin.pytest_configure(_Options(**{"--submission": str(nb), "collectonly": True}))
    assert unused.proc is None and session._prelaunched is None


def test_start_reads_the_plugins_worker_options_without_pytest() -> None:
    from course.grading.session import WorkerRequest
    from course.grading.start import worker_request

    argv = ["tests.py", "-p", "course.grading.plugin", "-o", "addopts=", "--rootdir", "r",
            "--submission", "s.ipynb", "--release", "r.ipynb", "--device", "cuda",
            "--budget", "900", "--threads", "2", "--report", "x.json"]
    assert worker_request(argv) == WorkerRequest("cuda", 2, False, "r.ipynb")
    assert worker_request([*argv, "--allow-weak-isolation"]).allow_weak_isolation
    assert worker_request([*argv, "--collect-only"]) is None
    assert worker_request(["tests.py", "-q"]) is None  # grades nothing
    assert worker_request([*argv, "--threads", "two"]) is None  # pytest says what is wrong


def test_a_started_grader_launches_its_worker_before_it_imports_pytest(tmp_path, release):
    """The runner starts graders with ``python -P -m course.grading.start``: the worker is
    launched before pytest is imported, once (the plugin adopts it), and the grading runs."""
    nb = notebook(tmp_path / "sub.ipynb", SETUP, cell(GOOD, "double", solution=True), TEST)
    (tmp_path / "test_hidden.py").write_text(
        "import torch\nfrom course.grading.checks import points\n"
        "@points(1, cell='test_double')\n"
        "def test_double(submission):\n"
        "    assert submission.call('double', torch.ones(1)).item() == 2\n")
    spy = ("import sys\nfrom course.grading import session, start\n"
           "real = session.WorkerRequest.launch\n"
           "def launch(self):\n"
           "    print('launch; pytest loaded:', 'pytest' in sys.modules, flush=True)\n"
           "    return real(self)\n"
           "session.WorkerRequest.launch = launch\n"
           "sys.exit(start.main(sys.argv[1:]))\n")
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-P", "-c", spy, str(tmp_path / "test_hidden.py"),
         "-p", "course.grading.plugin", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
         "--rootdir", str(tmp_path), "--submission", str(nb), "--release", str(release),
         "--threads", "1", "--report", str(report)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("launch; pytest loaded:") == 1, out[-3000:]
    assert "launch; pytest loaded: False" in out
    assert json.loads(report.read_text())["records"][0]["passed"]


def test_the_worker_ends_without_the_interpreters_teardown(tmp_path, release):
    """Told to exit, the worker leaves at once (the teardown of torch costs most of a second
    per grading): what the notebook printed is kept, its atexit handlers never run."""
    body = (GOOD + "\nimport atexit\natexit.register(print, 'the notebook ran at exit')\n"
            "print('printed while the cell ran', end='')\n")
    sub = Submission(notebook(tmp_path / "s.ipynb", SETUP, cell(body, "double", solution=True)),
                     release)
    try:
        assert sub.call("double", torch.ones(1)).item() == 2
    finally:
        sub.close()
    assert "printed while the cell ran" in sub.output()  # flushed before the quick exit
    assert "ran at exit" not in sub.output()


def test_a_worker_imports_what_the_release_uses_before_any_student_code(tmp_path):
    """torch.optim in the release's code: the worker imports torch._dynamo (which the first
    optimizer would import, 2 s) before its hello, so before any cell of the submission runs;
    a release that never names optim (or only says "optimal") preloads nothing of it, and the
    worker imports nothing outside notebook.PRELOADS whatever its spec says."""
    from course.grading import worker
    from course.grading.notebook import preloads

    probe = "import sys\nPRE = 'torch._dynamo' in sys.modules\ndef loaded():\n    return PRE\n"
    uses = notebook(tmp_path / "uses.ipynb", SETUP, cell("opt = torch.optim.SGD", "probe",
                                                         solution=True))
    says = notebook(tmp_path / "says.ipynb", SETUP, cell("# the optimal k\nimport matplotlib",
                                                         "probe", solution=True))
    assert preloads(uses) == ("torch._dynamo",)
    assert preloads(says) == ("matplotlib.pyplot",)
    assert preloads(tmp_path / "missing.ipynb") == ()
    for release, want in ((uses, True), (says, False)):
        sub = Submission(notebook(tmp_path / "s.ipynb", SETUP, cell(probe, "probe", solution=True)),
                         release)
        try:
            assert sub.call("loaded") is want
        finally:
            sub.close()
    worker.preload(["antigravity", "this_module_does_not_exist"])
    assert "antigravity" not in sys.modules


def test_output_is_capped(tmp_path, release):
    body = GOOD + "\nprint('x' * 5_000_000)\nprint('the end')\n"
    sub = Submission(notebook(tmp_path / "s.ipynb", SETUP, cell(body, "double", solution=True)),
                     release, limits=Limits(output_kb=4))
    try:
        sub.start()
        sub.call("double", torch.ones(1))
        sub.close()
        text = sub.output()
        assert len(text) < 10_000 and "the end" in text and "dropped" in text
    finally:
        sub.close()


def test_setup_that_hangs_costs_its_limit_once(tmp_path, release):
    """A notebook whose cells hang is given up after one setup limit: later calls fail at
    once with the same cause, and no new worker runs the cells again (restarts are left)."""
    import time

    body = GOOD + "\nwhile True:\n    pass\n"
    sub = submission(tmp_path, release, body, setup_s=2)
    try:
        with pytest.raises(StudentFailure, match="longer than 2 s"):
            sub.call("double", torch.ones(1))
        t0 = time.monotonic()
        for _ in range(3):
            with pytest.raises(StudentFailure, match="not run: .*longer than 2 s"):
                sub.call("double", torch.ones(1))
        assert time.monotonic() - t0 < 1.0
        assert sub.starts == 1 and sub.budget.max_restarts == 3
    finally:
        sub.close()


SPINNER = GOOD + """
import threading, time
COUNT = [0]

def spin():
    while True:
        COUNT[0] += 1

def start_spinning():
    threading.Thread(target=spin, daemon=True).start()
    return True

def count(sleep=0.0):
    time.sleep(sleep)
    return COUNT[0]
"""


def test_student_code_runs_only_inside_a_request(tmp_path, release):
    """A thread left running after a call is stopped while the grader works between calls."""
    import time

    sub = submission(tmp_path, release, SPINNER)
    try:
        sub.call("start_spinning")
        a = sub.call("count")
        b = sub.call("count", 0.3)  # 0.3 s inside a request: the thread runs
        time.sleep(1.0)  # 1 s between requests: it must not
        c = sub.call("count")
    finally:
        sub.close()
    assert b - a > 1000
    assert c - b < (b - a) / 2, (a, b, c)


def test_speed_bound_measures_the_reference_only_for_a_call_over_the_floor() -> None:
    """A speed test's bound is max(floor, factor * reference); a call within the floor passes
    whatever the reference is, so the reference is not run for it."""
    from course.grading.checks import speed_bound

    runs = []

    def reference() -> float:
        runs.append(1)
        return 0.2

    assert speed_bound(1.0, 1.5, 20, reference) == 1.5 and runs == []
    assert speed_bound(1.5, 1.5, 20, reference) == 1.5 and runs == []
    assert speed_bound(2.0, 1.5, 20, reference) == 4.0 and runs == [1]  # 20 x 0.2 s
    assert speed_bound(2.0, 1.5, 5, reference) == 1.5 and runs == [1, 1]  # never below the floor


def test_modules_imported_later_load_in_the_background(tmp_path, monkeypatch) -> None:
    """ImportedLater starts the imports at once, in a thread; a test that needs a module gets
    it whole; one whose import failed there gets the real error; a name it was not given is
    refused rather than imported unannounced."""
    from course.grading.checks import ImportedLater

    (tmp_path / "slow_mod.py").write_text("import time\ntime.sleep(0.5)\nDONE = True\n")
    (tmp_path / "broken_mod.py").write_text("raise ValueError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    later = ImportedLater("slow_mod", "broken_mod")
    threading.Event().wait(0.1)
    assert "slow_mod" in sys.modules  # started before anyone asked
    assert later["slow_mod"].DONE
    with pytest.raises(ValueError, match="broken on purpose"):
        later["broken_mod"]
    with pytest.raises(KeyError, match="not among"):
        later["json"]
    for name in ("slow_mod", "broken_mod"):
        sys.modules.pop(name, None)


def test_references_computed_later_are_computed_once_where_first_needed(monkeypatch) -> None:
    """A ComputedLater nobody started is computed by its first caller, once; one whose thread
    has not come to it yet is computed by the caller at once (not after the thread's earlier
    work); a computation that failed in the thread raises its real error where it is asked
    for; and the thread skips what a caller computed."""
    from course.grading import checks

    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    calls: list[str] = []
    release_slow = threading.Event()

    @checks.ComputedLater
    def slow() -> int:
        calls.append("slow")
        release_slow.wait(30)
        return 1

    @checks.ComputedLater
    def quick() -> int:
        calls.append(f"quick in {threading.current_thread().name}")
        return 2

    @checks.ComputedLater
    def broken() -> int:
        calls.append("broken")
        raise ValueError("broken on purpose")

    assert calls == [] and quick.__doc__ is None and slow.__name__ == "slow"
    checks.start_computing()
    assert checks._NOT_STARTED == []
    for _ in range(300):  # the thread takes up "slow" and blocks in it
        if calls:
            break
        threading.Event().wait(0.01)
    assert calls == ["slow"]
    assert quick() == 2 and calls == ["slow", "quick in MainThread"]  # not after "slow"
    release_slow.set()
    assert slow() == 1 and quick() == 2
    with pytest.raises(ValueError, match="broken on purpose"):
        broken()
    assert calls.count("slow") == 1 and calls.count("quick in MainThread") == 1
    assert calls.count("broken") == 2  # in the thread, then again for the test that asks

    @checks.ComputedLater
    def never_started() -> int:
        calls.append("inline")
        return 3

    assert never_started() == 3 and never_started() == 3 and calls.count("inline") == 1


def test_references_computed_later_wait_for_their_imports_and_never_beside_a_request(
        monkeypatch) -> None:
    """The background thread computes a reference only once what it needs is imported, and
    only while no request of the worker is running (a call whose time is judged keeps the
    cores): held by a request, the reference waits for it to end."""
    from course.grading import checks, session

    monkeypatch.setattr(checks, "_NOT_STARTED", [])
    imported = threading.Event()

    class Imports:  # stands in for an ImportedLater
        def wait(self) -> None:
            imported.wait(30)

    calls: list[str] = []

    @checks.computed_later(Imports())
    def reference() -> int:
        calls.append(threading.current_thread().name)
        return 7

    checks.start_computing()
    threading.Event().wait(0.3)
    assert calls == []  # the worker is free, but scikit-learn (say) is still importing
    with session.WORKER_BUSY:  # a request is running
        imported.set()
        threading.Event().wait(0.3)
        assert calls == []  # imported, but the worker is busy
    for _ in range(300):
        if calls:
            break
        threading.Event().wait(0.01)
    assert calls == ["computed-later"] and reference() == 7


def test_the_plugin_computes_references_after_collection(tmp_path) -> None:
    """A hidden-test file's ComputedLater is not started at import (collection runs beside
    the worker's start and must not be slowed) but in the background once the tests are
    collected, before any test asks for it; the imports' objects are frozen out of the
    garbage collector's full passes by then."""
    (tmp_path / "test_later.py").write_text(
        "import gc, threading\n"
        "from course.grading import checks\n"
        "seen = []\n"
        "@checks.ComputedLater\n"
        "def reference():\n"
        "    seen.append(threading.current_thread().name)\n"
        "    return 42\n"
        "AT_IMPORT = list(seen)\n"
        "@checks.points(1, cell='test_cell')\n"
        "def test_reference():\n"
        "    assert AT_IMPORT == []\n"
        "    assert reference() == 42\n"
        "    assert seen == ['computed-later'], seen\n"
        "    assert gc.get_freeze_count() > 0\n")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "course.grading.plugin", "-o", "addopts=",
                           str(tmp_path / "test_later.py")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_slice_crosses_to_the_worker_as_its_own_elements() -> None:
    """torch.save writes a view's whole storage: a contiguous slice is sent as a copy of its
    elements (same values, shape, strides and requires_grad); a non-contiguous view keeps its
    layout (storage and all), and a whole tensor is sent as it is."""
    X = torch.randn(1000, 10, generator=torch.Generator().manual_seed(0))
    rows = protocol.encode({"x": [X[:5]]})["x"][0]
    assert torch.equal(rows, X[:5]) and rows.stride() == X[:5].stride()
    assert rows.untyped_storage().nbytes() == 5 * 10 * 4
    assert len(protocol.dumps(rows)) < len(protocol.dumps(X[:5])) / 10
    assert protocol.encode(X) is X
    cols = X[:, :3]
    assert protocol.encode(cols) is cols  # its strides are part of the test's input
    w = torch.randn(100, 3, requires_grad=True)
    assert protocol.encode(w[:2]).requires_grad and protocol.encode(w[:2]).is_leaf


def test_the_reaper_ends_as_soon_as_its_worker_does(tmp_path) -> None:
    """The reaper is woken by its worker's exit (a pidfd), not found at its next look at the
    scratch folder: with looks 60 s apart it still ends within seconds of the worker (the
    grader waits for that at the end of every grading)."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd on this platform (the reaper looks every TICK_S instead)")
    lifeline_r, lifeline_w = os.pipe()
    status_r, status_w = os.pipe()
    spec = {"lifeline": lifeline_r, "status": status_w}
    code = ("import json, sys\nfrom course.grading import reaper\nreaper.TICK_S = 60\n"
            "reaper.main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec), "--",
                             sys.executable, "-c", "raise SystemExit(3)"],
                            pass_fds=(lifeline_r, status_w))
    os.close(lifeline_r)
    os.close(status_w)
    try:
        assert proc.wait(timeout=30) == 3  # the worker's status, long before a 60 s look
    finally:
        proc.kill()
        os.close(lifeline_w)
        os.close(status_r)


def test_waiting_for_a_worker_process_returns_its_status_or_times_out() -> None:
    from course.grading.sandbox import _wait

    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
    assert _wait(quick, 30) == 5 and _wait(quick, 1) == 5  # reaped: asked again
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            _wait(slow, 0.2)
    finally:
        slow.kill()
        slow.wait()


def test_expect_close_reports_counts_and_the_hint_never_the_reference() -> None:
    from course.grading.checks import expect_close

    reference = torch.tensor([0.123456, 2.5, 3.75])
    expect_close(reference + 1e-8, reference, "f(x)")  # close enough: no failure
    with pytest.raises(StudentFailure) as info:
        expect_close(torch.tensor([0.5, 2.5, 3.75]), reference, "f(x)", hint="use tau")
    message = str(info.value)
    assert message.startswith("f(x) is wrong in 1 of 3 entries") and message.endswith(": use tau")
    assert "0.123" not in message and "0.1235" not in message
    with pytest.raises(StudentFailure, match="has shape"):
        expect_close(torch.zeros(2), reference, "f(x)")


KILLABLE = GOOD + """
import os, signal, time

def slow(seconds):
    import ctypes
    # name the process (PR_SET_NAME) so that the test sees from outside that the call began
    ctypes.CDLL(None).prctl(15, b"in-slow", 0, 0, 0)
    time.sleep(seconds)
    return "done"

def suicide():
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _in_call(worker) -> bool:
    """Whether a process of ``worker`` runs KILLABLE's slow() (it renamed itself)."""
    from course.grading import reaper

    for pid in reaper.descendants(worker.proc.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "in-slow":
                return True
        except OSError:
            pass
    return False


def test_a_worker_killed_from_outside_gets_the_call_once_more(tmp_path, release):
    """SIGKILL from outside the grader (the OOM killer, an administrator) is not the student's
    doing the first time: the call runs again on a fresh worker and its value counts."""
    import os
    import signal
    import threading
    import time

    sub = submission(tmp_path, release, KILLABLE)
    try:
        sub.start()
        worker = sub.worker

        def kill_once() -> None:
            while not _in_call(worker):
                time.sleep(0.02)
            os.kill(worker.worker_pid, signal.SIGKILL)

        threading.Thread(target=kill_once, daemon=True).start()
        assert sub.call("slow", 2.0) == "done"
        assert sub.starts == 2
        assert any("run again on a fresh worker" in e for e in sub.events), sub.events
    finally:
        sub.close()


def test_a_call_whose_worker_is_killed_twice_fails(tmp_path, release):
    """Killed again on the fresh worker: that is a verdict (the submission can SIGKILL itself
    where it has no PID namespace of its own), so grading always ends."""
    import os
    import signal
    import threading
    import time

    sub = submission(tmp_path, release, KILLABLE)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while len(killed) < 2 and time.monotonic() < deadline:
            worker = sub.worker
            pid = worker.worker_pid if worker is not None else 0
            if pid and pid not in killed and worker.proc is not None and _in_call(worker):
                killed.append(pid)  # inside the call
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    try:
        sub.start()
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        with pytest.raises(StudentFailure, match=r"slow\(...\): the worker process died: killed"):
            sub.call("slow", 5.0)
        thread.join()
        assert len(killed) == 2 and sub.starts == 2
        assert torch.equal(sub.call("double", torch.ones(1)), torch.tensor([2.0]))
    finally:
        sub.close()


# -- stand-ins: a test of one function judged with the grader's reference for another ------
CALLER = cell(
    "def helper(x):\n    return x * 100\n\n"
    "def uses_helper(x, k=1):\n    return helper(x) + k\n\n"
    "def helper_twice(x):\n    return helper(helper(x))\n\n"
    "def rogue_callback():\n"
    "    import gc\n    from course.grading import protocol\n"
    "    w = [o for o in gc.get_objects() if type(o).__name__ == 'Worker'][0]\n"
    "    protocol.write_frame(w.fd_out, {'op': 'callback', 'name': 'helper', 'args': (1,),\n"
    "                                    'kwargs': {}})\n"
    "    return protocol.read_frame(w.fd_in)\n", "caller")


def test_a_stand_in_answers_for_the_notebooks_function_during_one_call(tmp_path, release):
    sub = submission(tmp_path, release, GOOD, CALLER)
    seen: list[torch.Tensor] = []

    def reference(x):
        seen.append(x)
        return x * 2

    try:
        t = torch.arange(3.0)
        assert torch.equal(sub.call("uses_helper", t), t * 100 + 1)
        assert torch.equal(sub.call("uses_helper", t, k=5, stand_in={"helper": reference}),
                           t * 2 + 5)
        assert torch.equal(sub.call("helper_twice", t, stand_in={"helper": reference}), t * 4)
        assert len(seen) == 3 and torch.equal(seen[0], t)
        # only during that call: the notebook's own function is back afterwards
        assert torch.equal(sub.call("uses_helper", t), t * 100 + 1)
        assert torch.equal(sub.call("helper", t), t * 100)
        # a reference that cannot take the student's arguments is an error in the student's call
        with pytest.raises(StudentFailure, match="grader's reference.*could not use"):
            sub.call("uses_helper", t, stand_in={"helper": lambda x: x @ torch.ones(7)})
        assert sub.starts == 1
    finally:
        sub.close()


def test_a_callback_the_grader_did_not_offer_breaks_the_protocol(tmp_path, release):
    """Student code that writes a callback frame itself (it can find the pipes) outside a call
    with stand-ins gets no reference answer: the worker is stopped, the call fails."""
    sub = submission(tmp_path, release, GOOD, CALLER)
    try:
        with pytest.raises(StudentFailure, match="broke the protocol.*did not offer"):
            sub.call("rogue_callback")
        with pytest.raises(StudentFailure, match="broke the protocol.*did not offer"):
            sub.call("rogue_callback", stand_in={"other": lambda x: x})
        assert torch.equal(sub.call("double", torch.ones(1)), torch.tensor([2.0]))
    finally:
        sub.close()


def test_call_grad_differentiates_through_the_students_function(tmp_path, release):
    body = GOOD + ("\ndef sq(t):\n    return (t * t).sum()\n\n"
                   "def sq_numpy(t):\n    return torch.tensor(float((t.detach().numpy() ** 2).sum()))\n")
    sub = submission(tmp_path, release, body)
    try:
        t = torch.tensor([1.0, -2.0, 3.0])
        value, grad = sub.call_grad("sq", t)
        assert float(value) == 14.0 and torch.equal(grad, 2 * t)
        value, grad = sub.call_grad("sq_numpy", t)  # right value, no graph: no gradient
        assert float(value) == 14.0 and grad is None
    finally:
        sub.close()


def test_call_grad_differentiates_through_a_models_method(tmp_path, release):
    body = GOOD + ("\nclass Scaler(torch.nn.Module):\n    def shift(self, a, b):\n"
                   "        return a * 3 + b.detach()\n")
    sub = submission(tmp_path, release, body)
    try:
        model = sub.call("Scaler")
        a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5])
        value, grad = sub.call_grad(model, a, b, wrt=0, method="shift")
        assert torch.equal(value, a * 3 + b) and torch.equal(grad, torch.full((2,), 3.0))
        _, grad = sub.call_grad(model, a, b, wrt=1, method="shift")  # detached: no gradient
        assert grad is None
    finally:
        sub.close()


def test_submissions_graded_together_share_the_cores(monkeypatch, tmp_path):
    """With threads=0, each of n submissions at once gets cores // n torch threads, and the
    grader process runs its own references with as many (two graders and two workers all on
    every core ran 05's grading 3.9 times slower). The cores are the usable ones (a container's
    quota), and one submission graded alone (Gradescope) gets them all, set explicitly."""
    from course.grading import runner

    seen = []
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 64)  # the host's, not ours
    monkeypatch.setattr(runner, "usable_cores", lambda: 8)
    monkeypatch.setattr(runner, "grade_job", lambda job, out, settings, pool=None: seen.append(
        settings.threads) or {"tests": []})
    jobs = [runner.Job(f"s{i}", tmp_path / f"s{i}.ipynb", "01_kmeans") for i in range(3)]
    runner.grade_jobs(jobs, tmp_path, runner.Settings(), jobs_in_parallel=2, progress=False)
    runner.grade_jobs(jobs[:1], tmp_path, runner.Settings(), jobs_in_parallel=1, progress=False)
    runner.grade_jobs(jobs[:1], tmp_path, runner.Settings(threads=3), jobs_in_parallel=2,
                      progress=False)
    assert seen == [4, 4, 4, 8, 3]
    envs = []
    monkeypatch.setattr(runner.subprocess, "run", lambda cmd, **kw: envs.append(kw["env"])
                        or type("P", (), {"returncode": 0, "stdout": "", "stderr": ""})())
    monkeypatch.setattr(runner, "release_notebook", lambda a, root=None: tmp_path / "r.ipynb")
    runner.run_hidden_tests(jobs[0], runner.Settings(threads=4), tmp_path / "report.json")
    assert envs[-1]["OMP_NUM_THREADS"] == "4"
    runner.run_hidden_tests(jobs[0], runner.Settings(), tmp_path / "report.json")
    assert envs[-1]["OMP_NUM_THREADS"] == envs[-1]["MKL_NUM_THREADS"] == "8"


def test_the_grader_starts_its_worker_before_it_imports_torch():
    """The plugin launches the worker in pytest_configure, before the hidden tests are
    collected: nothing the plugin loads may import torch (or numpy), so the worker's torch
    import (about 2 s here) runs beside the grader's instead of after it."""
    code = ("import sys, course.grading.plugin\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'sklearn', 'scipy', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]", out


def test_the_graders_pytest_takes_no_options_from_the_callers_shell(monkeypatch, tmp_path):
    """PYTEST_ADDOPTS set where the instructor grades does not reach the grader's pytest:
    "-x" there would leave the tests after a first failure without a verdict, so every
    imperfect submission would come back "not graded"."""
    from course.grading import runner

    monkeypatch.setenv("PYTEST_ADDOPTS", "-x --pdb")
    calls = []
    monkeypatch.setattr(runner.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw["env"]))
                        or type("P", (), {"returncode": 0, "stdout": "", "stderr": ""})())
    monkeypatch.setattr(runner, "release_notebook", lambda a, root=None: tmp_path / "r.ipynb")
    job = runner.Job("s", tmp_path / "s.ipynb", "01_kmeans")
    runner.run_hidden_tests(job, runner.Settings(), tmp_path / "report.json")
    cmd, env = calls[-1]
    assert "PYTEST_ADDOPTS" not in env and "-x" not in cmd and "--pdb" not in cmd
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"
    # nor pytest's own plugin that ends every run with a full garbage collection (0.15 s)
    assert "no:unraisableexception" in cmd
    # and its worker is launched before pytest loads
    assert cmd[1:4] == ["-P", "-m", "course.grading.start"]


def test_the_grader_can_drive_a_training_step_in_the_worker(tmp_path, release):
    """call_remote keeps results (even a loss tensor on its graph) in the worker, so the
    grader can run its own training loop on a student's model there; drop frees them."""
    sub = submission(tmp_path, release, GOOD)
    try:
        net = sub.call("Net", 4)
        state = sub.method(net, "state_dict")
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
        target = torch.zeros(8, 3)
        params = sub.method(net, "parameters")
        opt = sub.call(protocol.Ref("torch.optim.SGD"), params, lr=0.5)
        out = sub.call_remote(net, x)
        assert isinstance(out, protocol.Remote) and out.type == "Tensor"
        loss = sub.call_remote(protocol.Ref("torch.nn.functional.mse_loss"), out, target)
        sub.method(opt, "zero_grad")
        sub.method(loss, "backward")
        sub.method(opt, "step")
        assert isinstance(sub.method(loss, "item"), float)
        sub.drop(out, loss)
        with pytest.raises(StudentFailure):
            sub.method(loss, "item")  # forgotten
        # the same step here, from the same weights
        lin = torch.nn.Linear(4, 3)
        lin.load_state_dict({k.removeprefix("lin."): v for k, v in state.items()})
        torch.nn.functional.mse_loss(lin(x), target).backward()
        with torch.no_grad():
            want = lin.weight - 0.5 * lin.weight.grad
        assert torch.allclose(sub.method(net, "state_dict")["lin.weight"], want, atol=1e-6)
    finally:
        sub.close()


def test_a_differentiable_stand_in_passes_its_gradients_back(tmp_path, release):
    """A loss standing in for the notebook's keeps the student's backward() working: its
    answer carries d loss / d each tensor argument, tied to the argument's graph."""
    from course.grading.sandbox import differentiable

    body = GOOD + ("\ndef helper_loss(z, w):\n    return (z * 100).sum()\n\n"
                   "def grads_through(z, w):\n    z = z.clone().requires_grad_(True)\n"
                   "    loss = 3 * helper_loss(z * 2, w)\n    loss.backward()\n"
                   "    return loss.detach(), z.grad\n")
    sub = submission(tmp_path, release, body)
    try:
        z, w = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 1.0, 1.0])
        ref = differentiable(lambda z, w: (z * z * w).sum())
        value, grad = sub.call("grads_through", z, w, stand_in={"helper_loss": ref})
        # d/dz of 3 * sum((2z)^2 * w) = 24 z w
        assert torch.allclose(value, torch.tensor(3 * float(((2 * z) ** 2 * w).sum())))
        assert torch.allclose(grad, 24 * z * w)
        value, grad = sub.call("grads_through", z, w)  # the notebook's own again
        assert torch.allclose(grad, torch.full((3,), 600.0))
    finally:
        sub.close()


def test_running_out_of_memory_is_said_as_what_to_change(tmp_path, release):
    """The allocator's own message is replaced by one that says what to build instead."""
    body = GOOD + ("\ndef all_differences(X, C):\n"
                   "    return ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)\n")
    sub = submission(tmp_path, release, body)
    try:
        with pytest.raises(StudentFailure) as info:  # a 20,000 x 2,000 x 784 tensor: 125 GB
            sub.call("all_differences", torch.zeros(20_000, 784), torch.zeros(2000, 784))
        text = str(info.value)
        assert "ran out of memory" in text and "tried to allocate" in text, text
        assert "expanded form" in text and "DefaultCPUAllocator" not in text, text
        assert "125.4 GB" in text, text
    finally:
        sub.close()
