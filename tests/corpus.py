"""A corpus of broken and hostile submissions of 01_kmeans, 02_gradient_descent and
03_autoencoder, built from the current reference solutions and releases (so it stays valid as
the notebooks change), each with its expected outcome. ``python tests/corpus.py OUT`` writes
the notebooks to look at; the test suite grades them all in one run (tests/test_corpus.py).

Expected outcomes are stated against honest baselines graded in the same run: the reference
solution (full marks), the untouched release (zero) and honest-but-wrong versions (01's
``zeros``, 02's and 03's training loops that never step). A case "fails" tests when the named
hidden tests (and only those) lose their points; hostile cases must earn no point their code
did not, i.e. no more than the honest code they contain.
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
PWNED = "/tmp/corpus-grader-ran-student-code"
PAIRWISE = {"test_pairwise_matches_brute_force", "test_pairwise_never_negative",
            "test_pairwise_fast"}
ASSIGN = {"test_assign_nearest", "test_assign_ties"}
KMEANS = {"test_kmeans_outputs", "test_kmeans_inertia_never_increases",
          "test_kmeans_matches_sklearn", "test_kmeans_nmi",
          "test_kmeans_stops_early_and_is_deterministic", "test_kmeans_fast"}
PCA = {"test_pca_matches_sklearn", "test_pca_on_mnist", "test_pca_ratio_sane"}
TIMED = {"test_pairwise_fast", "test_kmeans_fast"}
TRAIN_CLF = {"test_train_classifier_returns_a_linear_model",
             "test_train_classifier_blobs_accuracy", "test_train_classifier_loss_falls",
             "test_train_classifier_moons_accuracy",
             "test_train_classifier_follows_the_sgd_recipe",
             "test_train_classifier_acc_log_is_test_accuracy_before_each_update"}
CIRCLE = {"test_circle_features_shape", "test_circle_features_separate_the_circles"}
TRAIN_AE = {"test_train_returns_step_losses", "test_train_loss_halves",
            "test_train_reconstructs_heldout_images", "test_train_latent_accuracy"}
AFTER_TRAIN_AE = {"test_linear_autoencoder_layout", "test_linear_autoencoder_forward",
                  "test_autoencoder_layout", "test_autoencoder_parameter_count",
                  "test_autoencoder_matches_specification", "test_autoencoder_act_func",
                  "test_conv_autoencoder_layout", "test_conv_autoencoder_learns"}
AE_FORWARD = {"test_autoencoder_layout", "test_autoencoder_matches_specification",
              "test_autoencoder_act_func"}


@dataclass
class Case:
    name: str
    kind: str  # "broken" or "hostile"
    build: Callable[[], bytes]
    fail: set[str] | None = None  # exactly these tests fail (None: see score)
    may_fail: set[str] = field(default_factory=set)
    score: str | None = None  # "zero", "full", or "at_most_zeros" (no better than zeros)
    message: str = ""  # a fragment some failing test's message (or the notes) contains
    needs: str = ""  # "cgroups", "pidns", "lockdown": only where that isolation exists
    assignment: str = ASSIGNMENT
    at_most: str = ""  # a baseline (same run) whose score this case may not exceed
    budget_s: float | None = None  # its own time budget (a case that hangs spends it all)


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
    def build() -> bytes:
        nb = base()
        nb["cells"].append({"cell_type": "code", "metadata": {}, "source": source,
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
        if name in ("results.json", "report.json"):
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
                if b"pytest" in fh.read() and pid != os.getpid():
                    os.kill(pid, signal.SIGSTOP)
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
             fail=ASSIGN, message="dtype"),
        Case("nan_results", "broken",
             _replace(reference, pairwise_sq_dists="def pairwise_sq_dists(X, C):\n"
                      "    return X.new_full((len(X), len(C)), float('nan'))\n"),
             fail={"test_pairwise_matches_brute_force", "test_pairwise_never_negative"},
             may_fail=ASSIGN),
        # -- hostile --------------------------------------------------------------------------
        Case("infinite_loop", "hostile", _append(release, "while True:\n    pass\n"),
             score="zero", message="longer than"),
        Case("memory_bomb", "hostile",
             _replace(reference, pca="def pca(X, n_components):\n"
                                     "    hog = bytearray(64 * 2**30)\n    return hog\n"),
             fail=PCA, message="MemoryError"),
        Case("fork_bomb", "hostile", _append(release, FORK_BOMB), score="zero",
             needs="cgroups"),
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
        Case("forge_results", "hostile", _append(release, FORGE_RESULTS), score="zero"),
        Case("steal_solutions", "hostile", _append(release, STEAL_SOLUTIONS), score="zero"),
        Case("locked_tests_edited", "hostile", _locked_tests_edited, score="zero",
             message="not implemented yet"),
        Case("detects_grading", "hostile", _append(release, DETECT_GRADING), score="zero"),
        # -- 01_kmeans: more of the same spirit -----------------------------------------------
        Case("wrong_device_meta", "broken", _replace(reference, pca=META_DEVICE), fail=PCA,
             message="meta device"),
        Case("fill_disk", "hostile", _append(reference, FILL_DISK), score="full",
             needs="lockdown"),
        Case("background_thread", "hostile", _append(reference, BACKGROUND_THREAD), fail=set(),
             may_fail=TIMED),
        Case("daemon_outlives_worker", "hostile", _append(reference, DAEMON), score="full"),
        Case("malicious_pickle", "hostile", _append(reference, EVIL_PICKLE), fail=PCA,
             message="not plain data"),
        Case("tensor_subclass", "hostile", _append(zeros, TENSOR_SUBCLASS),
             score="at_most_zeros"),
        Case("gigantic_result", "hostile", _replace(reference, pca=HUGE_VIEW), fail=PCA,
             message="cannot be sent back"),
        Case("oversized_result", "hostile", _replace(reference, pca=OVERSIZED), fail=PCA,
             message="cap on results"),
        Case("proc_snoop", "hostile", _append(release, PROC_SNOOP), score="zero"),
        Case("signal_parent", "hostile", _append(reference, SIGNAL_PARENT), fail=PCA,
             needs="pidns"),
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
             fail={"test_train_returns_step_losses", "test_train_loss_halves"},
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
    }


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")):
        print(p)
