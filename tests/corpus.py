"""A corpus of broken and hostile submissions of 01_kmeans, built from the current reference
solution and release (so it stays valid as the notebook changes), each with its expected
outcome. ``python tests/corpus.py OUT`` writes the notebooks to look at; the test suite grades
them all in one run (tests/test_corpus.py).

Expected outcomes are stated against the two honest baselines: the reference solution (full
marks) and the untouched release (zero). A case "fails" tests when the named hidden tests
(and only those) lose their points; hostile cases must earn no point their code did not.
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
PAIRWISE = {"test_pairwise_matches_brute_force", "test_pairwise_never_negative",
            "test_pairwise_fast"}
ASSIGN = {"test_assign_nearest", "test_assign_ties"}
KMEANS = {"test_kmeans_outputs", "test_kmeans_inertia_never_increases",
          "test_kmeans_matches_sklearn", "test_kmeans_nmi",
          "test_kmeans_stops_early_and_is_deterministic", "test_kmeans_fast"}
PCA = {"test_pca_matches_sklearn", "test_pca_on_mnist", "test_pca_ratio_sane"}


@dataclass
class Case:
    name: str
    kind: str  # "broken" or "hostile"
    build: Callable[[], bytes]
    fail: set[str] | None = None  # exactly these tests fail (None: see score)
    may_fail: set[str] = field(default_factory=set)
    score: str | None = None  # "zero", "full", or "at_most_zeros" (no better than zeros)
    message: str = ""  # a fragment every failing test's message (or the notes) contains
    needs: str = ""  # "cgroups": only where process caps exist


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


def reference() -> dict[str, Any]:
    return reference_submission(ASSIGNMENT)


def release() -> dict[str, Any]:
    return read_notebook(release_path(ASSIGNMENT))


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
    ]


def write(out: Path) -> list[Path]:
    """Write every case to ``out/<case>/01_kmeans.ipynb`` (nbgrader's submitted layout)."""
    paths = []
    for case in cases():
        path = out / case.name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.build())
        paths.append(path)
    return paths


def baselines() -> dict[str, bytes]:
    """Honest submissions graded in the same run as the corpus (their scores must not move)."""
    return {"baseline_reference": _dump(reference()), "baseline_zeros": _dump(zeros())}


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")):
        print(p)
