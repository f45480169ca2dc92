"""Benchmarks: how fast the bundle is, as ratios against what users would pick instead.

``course bench`` (``make bench``) measures pairs side by side in one run, on the same data, the
same threads and the same machine, and writes ``bench/results.md`` (a table) and
``bench/results.png`` (the ratios as bars). A ratio above 1 means the bundle is faster (for
times: their seconds / ours; for throughputs: ours / theirs). Sections:

* ``kmeans``: the reference ``kmeans`` of 01 against scikit-learn's ``KMeans`` from the same
  starting centres for the same iterations (and on CUDA when there is a GPU);
* ``training``: 03's MLP autoencoder trained by the reference ``train_autoencoder`` against a
  bare PyTorch loop, and both against the machine's matmul roofline;
* ``tsne``: ``course.training.tsne`` (openTSNE, as the notebooks use it) against scikit-learn's
  ``TSNE`` with the same perplexity and iterations, with the trustworthiness of each;
* ``grading``: seconds per submission of ``course grade`` for each assignment's reference
  against the same hidden tests with every isolation layer switched off (a ratio just under 1:
  what the sandbox costs), and against stock ``nbgrader autograde`` of the same submission
  (nbgrader as it comes: it executes every cell in a kernel, at the full scale a student's run
  has, or the ci scale with ``--quick``, then scores the visible tests; the note gives
  nbgrader's score); then per submission of a class of four copies (one at a time per core,
  the graders forked from a server) against nbgrader's autograde of the same class;
* ``class``: submissions per hour for a class of each assignment, of two and four submissions
  (two with ``--quick``), graded on every usable core (one submission per core at once, as
  ``course grade`` does) and pinned to one core: how the rate grows with the class and with
  the cores; and the largest class with each grader started as a process of its own
  (``--no-prestart``): what forking them from a server saves.

Numbers are medians of a few repeats after a warm-up; nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from course.cores import usable_cores
from course.errors import CourseError
from course.paths import repo_root

SECTIONS = ("kmeans", "training", "tsne", "grading", "class")


@dataclass
class Row:
    """One comparison: what ran on each side, the measured values and their ratio."""

    section: str
    case: str
    ours: str
    ours_value: float
    theirs: str
    theirs_value: float
    unit: str  # "s" (lower is better) or a throughput such as "samples/s" (higher is better)
    note: str = ""
    target: float | None = None  # the ratio issue 18 asks of this comparison, if any

    @property
    def met(self) -> bool | None:
        """Whether the ratio reaches the target (None: no target)."""
        return None if self.target is None else self.ratio >= self.target

    @property
    def ratio(self) -> float:
        """How many times faster the bundle is (> 1: faster)."""
        if self.unit == "s":
            return self.theirs_value / self.ours_value if self.ours_value else float("nan")
        return self.ours_value / self.theirs_value if self.theirs_value else float("nan")


def median_time(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def _quiet() -> Any:
    """Silence stdout and stderr (printouts and progress bars of the code measured)."""
    with open(os.devnull, "w") as null:
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = null
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old


@contextmanager
def _env(name: str, value: str) -> Any:
    """``os.environ[name] = value`` for the block, then as it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def reference_namespace(assignment: str, root: Path | None = None) -> dict[str, Any]:
    """The reference solution's definitions: the notebook's setup cell (at ``ci`` scale, so
    it loads little) and every solution cell, run in a fresh namespace; no tests, no
    experiments."""
    from course import generate
    from course.grading.notebook import to_python

    nb = generate.solved_notebook(assignment, root)
    ns: dict[str, Any] = {"__name__": f"bench_{assignment}"}
    with _env("COURSE_SCALE", "ci"), _quiet():
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "code" and (meta.get("solution") or
                                             meta.get("grade_id") in ("setup", "given")):
                exec(compile(to_python(cell.source), meta.get("grade_id", "?"), "exec"), ns)
    return ns


def _mnist(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from course import data

    return data.load_mnist(split, n=n, flatten=True)


# --- k-means --------------------------------------------------------------------------------


def bench_kmeans(quick: bool = False) -> list[Row]:
    """The reference ``kmeans`` against scikit-learn's Lloyd from the same start."""
    from sklearn.cluster import KMeans

    ns = reference_namespace("01_kmeans")
    X, _ = _mnist("test", 10_000)
    # 15 repeats of under 0.1 s each: a fresh 31 MB allocation sometimes page-faults on
    # every page (tens of ms on a VM), so a median of 5 could still land on one
    k, n_iters, repeat = 10, 20, 5 if quick else 15
    start = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))[:k]
    Xn, init = X.numpy(), X[start].numpy()
    _, _, hist = ns["kmeans"](X, k, n_iters=n_iters, seed=0)  # also the warm-up
    iters = len(hist)
    ours = median_time(lambda: ns["kmeans"](X, k, n_iters=n_iters, seed=0), repeat, warmup=0)

    def sklearn_run() -> Any:
        return KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=0.0,
                      algorithm="lloyd").fit(Xn)

    reference_inertia = sklearn_run().inertia_  # also the warm-up
    theirs = median_time(sklearn_run, repeat, warmup=0)
    gap = abs(hist[-1] - reference_inertia) / reference_inertia
    rows = [Row("kmeans", f"MNIST test 10,000 x 784, k = {k}, {iters} iterations, CPU",
                "reference kmeans", ours, "scikit-learn KMeans (lloyd)", theirs, "s",
                f"final inertia differs by {gap:.1e}", target=1.0)]
    if torch.cuda.is_available():
        Xc = X.cuda()

        def cuda_run() -> Any:
            out = ns["kmeans"](Xc, k, n_iters=n_iters, seed=0)
            torch.cuda.synchronize()
            return out

        rows.append(Row("kmeans", "the same on CUDA", "reference kmeans (CUDA)",
                        median_time(cuda_run, repeat), "scikit-learn KMeans (CPU)", theirs, "s"))
    return rows


# --- training -------------------------------------------------------------------------------


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """The machine's float32 matmul speed in GFLOP/s (n x n times n x n), all threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_time(lambda: a @ b, repeat) / 1e9


def bench_training(quick: bool = False) -> list[Row]:
    """03's MLP autoencoder: the reference loop against a bare loop, and the roofline."""
    ns = reference_namespace("03_autoencoder")
    n, batch, epochs = (10_000, 1024, 1) if quick else (30_000, 1024, 2)
    X, _ = _mnist("train", n)
    samples = n * epochs

    def ours() -> None:
        torch.manual_seed(0)
        model = ns["AutoEncoder"](784)
        with _quiet():
            ns["train_autoencoder"](model, X, epochs, batch_size=batch)

    def bare() -> None:  # what one would write without the course: shuffle, slice, step
        torch.manual_seed(0)
        model = ns["AutoEncoder"](784)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-8)
        loss_fn = torch.nn.MSELoss()
        g = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=g).split(batch):
                xb = X[idx]
                loss = loss_fn(model(xb), xb)
                opt.zero_grad()
                loss.backward()
                opt.step()

    repeat = 2 if quick else 3
    t_ours, t_bare = median_time(ours, repeat), median_time(bare, repeat)
    params = sum(p.numel() for p in ns["AutoEncoder"](784).parameters())
    flops_per_sample = 6 * params  # forward 2 per weight, backward 4
    peak = matmul_gflops()
    achieved = samples * flops_per_sample / t_ours / 1e9
    return [
        Row("training", f"MLP autoencoder ({params / 1e6:.1f} M parameters), batch {batch}, "
            f"{samples:,} samples", "reference train_autoencoder", samples / t_ours,
            "bare PyTorch loop", samples / t_bare, "samples/s", target=0.9),
        Row("training", "the same against the matmul roofline", "reference train_autoencoder",
            achieved, f"matmul peak ({peak:.0f} GFLOP/s)", peak, "GFLOP/s",
            f"{100 * achieved / peak:.0f} % of the peak (6 FLOPs per weight per sample)"),
    ]


# --- t-SNE ----------------------------------------------------------------------------------


def bench_tsne(quick: bool = False) -> list[Row]:
    """``course.training.tsne`` against scikit-learn's TSNE, same perplexity and iterations."""
    from sklearn.manifold import TSNE, trustworthiness

    from course.training import tsne

    n = 1_000 if quick else 2_000
    X, _ = _mnist("test", n)
    Xc = X - X.mean(dim=0)
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)
    Z = Xc @ Vh[:50].T  # 50 numbers per image, like the notebooks' codes
    emb: dict[str, Any] = {}

    def ours() -> None:
        emb["ours"] = tsne(Z, seed=0).numpy()

    def theirs() -> None:
        emb["theirs"] = TSNE(n_components=2, perplexity=30.0, max_iter=750, random_state=0,
                             init="pca", method="barnes_hut", n_jobs=torch.get_num_threads()
                             ).fit_transform(Z.numpy())

    repeat = 1 if quick else 3
    t_ours, t_theirs = median_time(ours, repeat, warmup=0), median_time(theirs, repeat, 0)
    quality = (f"trustworthiness (10 neighbours) {trustworthiness(Z.numpy(), emb['ours']):.3f} "
               f"vs {trustworthiness(Z.numpy(), emb['theirs']):.3f}")
    return [Row("tsne", f"{n:,} MNIST images as 50 PCA numbers, perplexity 30, 750 iterations",
                "course.training.tsne (openTSNE)", t_ours, "scikit-learn TSNE", t_theirs, "s",
                quality)]


# --- grading --------------------------------------------------------------------------------


def _grade_seconds(assignment: str, folder: Path, disabled: str = "",
                   n: int = 1, parallel: int = 1, prestart: bool = True) -> float:
    """Wall time of grading ``n`` copies of the reference with ``parallel`` at a time (two or
    more: graders forked from a server, unless ``prestart`` is off)."""
    from course.grading import runner
    from course.submissions import reference_submission, write_notebook

    nb = reference_submission(assignment)
    jobs = [runner.Job(f"s{i}", write_notebook(nb, folder / "in" / f"s{i}" / f"{assignment}.ipynb"),
                       assignment) for i in range(n)]
    with _env("COURSE_SANDBOX_DISABLE", disabled):
        start = time.perf_counter()
        # references kept on both sides, the isolation off or not (where it is off, `course
        # grade` would keep none: a worker could plant them), so that the rows compare the
        # same work
        graded = runner.grade_jobs(jobs, folder / "out", runner.Settings(
            force=True, allow_weak_isolation=bool(disabled), prestart=prestart,
            kept_references=True),
            jobs_in_parallel=parallel, progress=False)
        seconds = time.perf_counter() - start
    bad = [job.name for job, res in graded if res.get("score") != res.get("max_score")
           or res.get("max_score") is None]
    if bad:
        raise CourseError(f"bench: the {assignment} reference did not score full marks ({bad})")
    return seconds


OFF = "unshare,cgroups,landlock,seccomp,uid"

#: nbgrader as it comes (no course configuration): ``autograde`` executes every cell of a
#: submission in a Jupyter kernel, then scores the visible test cells.
STOCK_NBGRADER = '''c = get_config()  # noqa: F821 (nbgrader injects it)
c.CourseDirectory.course_id = "bench"
c.IncludeHeaderFooter.header = "source/header.ipynb"
c.ExecutePreprocessor.timeout = 3600
'''


def _nbgrader_seconds(assignment: str, folder: Path, scale: str,
                      n: int = 1) -> tuple[float, float, float]:
    """Wall time of stock ``nbgrader autograde`` of ``n`` copies of the reference (one
    autograde run, as for a class), the notebook run at ``scale``, and the score and maximum
    nbgrader's gradebook holds for the first (stock nbgrader counts a test cell that writes to
    stderr, such as a progress bar, as failed)."""
    from nbgrader.api import Gradebook

    from course.paths import data_dir
    from course.submissions import reference_submission, write_notebook

    root, course = repo_root(), folder / "nbgrader-course"
    shutil.copytree(root / "source" / assignment, course / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(root / "source" / "header.ipynb", course / "source" / "header.ipynb")
    (course / "nbgrader_config.py").write_text(STOCK_NBGRADER)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "COURSE_SCALE": scale, "COURSE_DATA": str(data_dir()),
           "COURSE_FIGURES_DIR": str(folder / "figures"), "MPLBACKEND": "Agg",
           "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}

    def nbgrader(*args: str) -> None:
        proc = subprocess.run([str(bin_dir / "nbgrader"), *args], cwd=course, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise CourseError(f"bench: nbgrader {' '.join(args)} failed: "
                              f"{(proc.stdout + proc.stderr)[-800:]}")

    nbgrader("generate_assignment", assignment, "--force")
    for i in range(n):
        write_notebook(reference_submission(assignment),
                       course / "submitted" / f"s{i}" / assignment / f"{assignment}.ipynb")
    start = time.perf_counter()
    nbgrader("autograde", assignment, "--force")
    seconds = time.perf_counter() - start
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        sub = gb.find_submission(assignment, "s0")
        if not sub.max_score:
            raise CourseError(f"bench: nbgrader graded no cell of {assignment}")
        return seconds, float(sub.score), float(sub.max_score)


#: The class of the grading section's per-submission comparison with nbgrader, and the
#: longest one nbgrader submission may take for nbgrader to grade that class too (04's take
#: about 10 minutes each at full scale: there its one-submission time stands in).
CLASS = 4
NBGRADER_CLASS_UNDER_S = 90.0
#: One submission graded alone: runs of each side (the median reported) when stock nbgrader
#: grades it in under NBGRADER_REPEAT_UNDER_S (01, 02; 03-05 take minutes at full scale).
ALONE_REPEATS = 3
NBGRADER_REPEAT_UNDER_S = 60.0


def bench_grading(assignments: list[str], quick: bool = False) -> list[Row]:
    """``course grade`` of each reference: with the sandbox, with every layer off, and
    against stock ``nbgrader autograde`` of the same notebook; then per submission of a
    class of :data:`CLASS` copies (``course grade``'s default: one at a time per core, the
    graders forked) against nbgrader's autograde of the same class (it grades one at a
    time)."""
    rows = []
    parallel = min(usable_cores(), CLASS)
    for a in assignments:
        with tempfile.TemporaryDirectory(prefix=f"course-bench-{a}-") as tmp:
            scale = "ci" if quick else "full"
            stock, score, top = _nbgrader_seconds(a, Path(tmp) / "nbgrader", scale)
            # one grading alone moves by +-0.5 s from run to run here: where nbgrader is
            # quick enough, each side is the median of ALONE_REPEATS runs, interleaved
            repeats = ALONE_REPEATS if stock < NBGRADER_REPEAT_UNDER_S else 1
            # a first grading on a machine: nothing kept yet (course.grading.kept's
            # references, course.grading.fonts' font list), in a cache of its own
            with _env("XDG_CACHE_HOME", str(Path(tmp) / "first-cache")):
                first = _grade_seconds(a, Path(tmp) / "first")
            ons, offs, stocks = [], [], [stock]
            for i in range(repeats):
                ons.append(_grade_seconds(a, Path(tmp) / f"on{i}"))
                offs.append(_grade_seconds(a, Path(tmp) / f"off{i}", disabled=OFF))
                if i:
                    stocks.append(_nbgrader_seconds(a, Path(tmp) / f"nbgrader{i}", scale)[0])
            on, off = statistics.median(ons), statistics.median(offs)
            stock = statistics.median(stocks)
            runs = f"median of {repeats} runs each; " if repeats > 1 else ""
            ours_class = _grade_seconds(a, Path(tmp) / "class", n=CLASS,
                                        parallel=parallel) / CLASS
            if stock < NBGRADER_CLASS_UNDER_S:
                theirs_class = _nbgrader_seconds(a, Path(tmp) / "nbgrader-class", scale,
                                                 n=CLASS)[0] / CLASS
                how = f"stock nbgrader autograde of the same {CLASS}"
            else:
                theirs_class = stock
                how = (f"stock nbgrader autograde, one submission (its {CLASS} would take "
                       f"{CLASS * stock / 60:.0f} min)")
        rows.append(Row("grading", f"{a}: one reference submission", "course grade, sandboxed",
                        on, "the same, every isolation layer off", off, "s",
                        f"{runs}the sandbox costs {on - off:+.1f} s per submission"))
        rows.append(Row("grading", f"{a}: the same submission",
                        "course grade (hidden tests, experiments skipped)", on,
                        f"stock nbgrader autograde (every cell at {scale} scale, visible tests)",
                        stock, "s", f"{runs}nbgrader's score {score:g} / {top:g} (course grade: "
                        f"full marks); the first grading on a machine took {first:.1f} s "
                        "(references and font list not kept yet)", target=3.0))
        rows.append(Row("grading", f"{a}: a class of {CLASS}, per submission",
                        f"course grade, {parallel} at a time, graders forked", ours_class,
                        how, theirs_class, "s",
                        f"nbgrader grades one at a time; {usable_cores()} cores", target=3.0))
    return rows


@contextmanager
def _on_cores(k: int) -> Any:
    """Run the block (and every thread and process it starts) on ``k`` of the usable cores,
    as ``taskset`` would; yields whether that was possible (no CPU affinity on macOS)."""
    try:
        before = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        yield False
        return
    os.sched_setaffinity(0, sorted(before)[:k])
    try:
        yield True
    finally:
        os.sched_setaffinity(0, before)


def bench_class(assignments: list[str], sizes: tuple[int, ...] = (2, 4),
                quick: bool = False) -> list[Row]:
    """Submissions per hour for a class of each assignment and each of ``sizes``: graded on
    every usable core (as many at once, ``course grade``'s default) against one core; and the
    largest class on every core with its graders forked (the default) against each started
    as a process of its own (``--no-prestart``)."""
    rows = []
    cores = usable_cores()
    for a in assignments:
        for n in sizes[:1] if quick else sizes:
            seconds = {}
            for k in sorted({1, cores}):
                with _on_cores(k) as pinned, \
                        tempfile.TemporaryDirectory(prefix="course-bench-class-") as tmp:
                    if k < cores and not pinned:
                        continue
                    seconds[k] = _grade_seconds(a, Path(tmp), n=n, parallel=min(k, n))
            one = seconds.get(1, seconds[cores])
            if n == (sizes[:1] if quick else sizes)[-1]:  # the largest class: what forking saves
                with tempfile.TemporaryDirectory(prefix="course-bench-class-") as tmp:
                    plain = _grade_seconds(a, Path(tmp), n=n, parallel=min(cores, n),
                                           prestart=False)
                rows.append(Row(
                    "class", f"{a}: a class of {n}, graders forked or not",
                    "graders forked from a server", 3600 * n / seconds[cores],
                    "each grader its own process (--no-prestart)", 3600 * n / plain,
                    "submissions/h", f"{seconds[cores] / n:.1f} s against {plain / n:.1f} s "
                    f"per submission on {cores} cores"))
            rows.append(Row(
                "class", f"{a}: a class of {n}",
                f"on {cores} core{'s' * (cores > 1)}, {min(cores, n)} at a time",
                3600 * n / seconds[cores], "on 1 core" if 1 in seconds else
                "on 1 core: not measured (no CPU affinity here)", 3600 * n / one,
                "submissions/h", f"{seconds[cores] / n:.1f} s per submission on {cores} cores, "
                f"{one / n:.1f} s on 1"))
    return rows


# --- report ---------------------------------------------------------------------------------


def _value(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.2f} {unit}"


def markdown(rows: list[Row], context: dict[str, Any]) -> str:
    """The results as a Markdown table with the machine it ran on."""
    lines = [f"Measured {context['date']} on {context['machine']} (torch {context['torch']}, "
             f"{context['threads']} threads); ratio > 1: the bundle is faster; target: the "
             "ratio issue 18 asks for.", "",
             "| section | case | ours | theirs | ratio | target | note |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "" if r.target is None else f"{r.target:g}x: {'met' if r.met else 'NOT met'}"
        lines.append(f"| {r.section} | {r.case} | {r.ours}: {_value(r.ours_value, r.unit)} | "
                     f"{r.theirs}: {_value(r.theirs_value, r.unit)} | **{r.ratio:.2f}x** | "
                     f"{target} | {r.note} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> None:
    """The ratios as horizontal bars on a logarithmic axis, each drawn from 1 (as fast as the
    alternative) to its ratio: right when the bundle is faster, left when it is slower, so
    0.9x and 31x both read at a glance; each row's target is a black mark (the bar red when
    it falls short of it)."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.4), layout="constrained")
    labels = ["\n".join(textwrap.wrap(f"{r.section}: {r.case} ({r.ours} vs {r.theirs})", 60))
              for r in rows]
    ratios = [r.ratio for r in rows]
    colours = ["tab:red" if r.met is False else "tab:green" if r.met or r.ratio >= 1
               else "tab:orange" if r.ratio >= 0.9 else "tab:red" for r in rows]
    ax.set_xscale("log")
    ax.barh(range(len(rows)), [v - 1.0 for v in ratios], left=1.0, color=colours)
    for i, (v, r) in enumerate(zip(ratios, rows, strict=True)):
        # right of the bar, of the target mark when the bar stops short of it, and of the
        # line at 1 when the bar goes left
        ax.text(max(v, r.target or 0.0, 1.0), i, f" {v:.2f}x", va="center", fontsize=9)
    ax.axvline(1.0, color="black", lw=1)
    right = max([*ratios, *(r.target for r in rows if r.target is not None), 1.0])
    left = min([*ratios, 1.0])
    ax.set_xlim(min(0.5, left / 1.25), right * 1.9)  # room for the last label
    ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500)
             if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(axis="x", color="0.85", lw=0.6, zorder=0)
    ax.set_axisbelow(True)
    marked = [(i, r.target) for i, r in enumerate(rows) if r.target is not None]
    if marked:
        ax.scatter([t for _, t in marked], [i for i, _ in marked], marker="|", s=700,
                   color="black", linewidths=2.5, zorder=3, label="target (issue 18)")
        # above the bars, beside the title: it hides none of them
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
                  markerscale=0.4)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, no empty band above or below
    ax.set_xlabel("how many times faster the bundle is (log scale; right of 1: faster, "
                  "left: slower)")
    ax.set_title("course bench")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(sections: list[str] | None = None, out: Path | None = None, quick: bool = False,
        assignments: list[str] | None = None, say: Callable[[str], None] = print) -> list[Row]:
    """Run the chosen sections (default: all), write the report, return the rows."""
    from course.paths import assignment_ids

    chosen = list(sections or SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise CourseError(f"unknown bench section(s) {unknown}; choose from {list(SECTIONS)}")
    out = out or repo_root() / "bench"
    graded = assignments or assignment_ids(repo_root())
    steps: dict[str, Callable[[], list[Row]]] = {
        "kmeans": lambda: bench_kmeans(quick),
        "training": lambda: bench_training(quick),
        "tsne": lambda: bench_tsne(quick),
        "grading": lambda: bench_grading(graded, quick),
        "class": lambda: bench_class(graded, quick=quick),
    }
    rows: list[Row] = []
    for name in chosen:
        start = time.perf_counter()
        say(f"bench {name} ...")
        new = steps[name]()
        rows += new
        for r in new:
            say(f"  {r.case}: {r.ratio:.2f}x ({r.ours} {_value(r.ours_value, r.unit)}, "
                f"{r.theirs} {_value(r.theirs_value, r.unit)})")
        say(f"bench {name}: {time.perf_counter() - start:.0f} s")
    context = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(rows, context))
    table = [{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows]
    (out / "results.json").write_text(json.dumps({"context": context, "rows": table}, indent=1))
    plot(rows, out / "results.png")
    say(f"wrote {out / 'results.md'} and {out / 'results.png'}")
    return rows


def _machine() -> str:
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    usable = usable_cores()
    limit = f" ({usable} usable)" if usable != os.cpu_count() else ""
    return f"{os.cpu_count()} cores{limit}{(' ' + name) if name else ''}{gpu}"
