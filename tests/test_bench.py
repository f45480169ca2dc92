"""course bench: ratios point the right way, the report is written, a section really runs.

The benchmark's numbers are not asserted (they are the machine's); these tests check that the
table says what it measured."""

from __future__ import annotations

import json
import os

import pytest

from course import bench
from course.errors import CourseError
from course.paths import data_dir


def test_ratio_is_above_one_when_the_bundle_is_faster():
    assert bench.Row("s", "c", "ours", 1.0, "theirs", 3.0, "s").ratio == 3.0  # 3x less time
    assert bench.Row("s", "c", "ours", 300.0, "theirs", 100.0, "samples/s").ratio == 3.0
    assert bench.Row("s", "c", "ours", 2.0, "theirs", 1.0, "s").ratio == 0.5


def test_median_time_runs_warmup_then_repeats():
    calls = []
    bench.median_time(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(calls) == 5


def test_report_table_and_plot(tmp_path, monkeypatch):
    rows = [bench.Row("kmeans", "case A", "ours", 0.1, "sklearn", 0.2, "s", "note A", target=1.0),
            bench.Row("training", "case B", "ours", 900.0, "bare", 1000.0, "samples/s",
                      target=0.95)]
    monkeypatch.setattr(bench, "bench_kmeans", lambda quick: rows[:1])
    monkeypatch.setattr(bench, "bench_training", lambda quick: rows[1:])
    lines = []
    bench.run(["kmeans", "training"], out=tmp_path, say=lines.append)
    table = (tmp_path / "results.md").read_text()
    assert ("| kmeans | case A | ours: 0.100 s | sklearn: 0.200 s | **2.00x** | 1x: met | "
            "note A |") in table
    assert "**0.90x** | 0.95x: NOT met |" in table
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["ratio"] for r in data["rows"]] == [2.0, 0.9]
    assert [r["met"] for r in data["rows"]] == [True, False]
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert any("case A: 2.00x" in line for line in lines)


def test_the_plot_hides_no_bar_label_or_target(tmp_path, monkeypatch):
    """Each ratio's label sits right of its bar and of its target mark, inside the axes; the
    legend sits above the axes (inside them, it covered the longest bar's end)."""
    import matplotlib.pyplot as plt

    rows = [bench.Row("grading", "short of it", "ours", 1.0, "theirs", 2.83, "s", target=3.0),
            bench.Row("grading", "the longest", "ours", 1.0, "theirs", 5.0, "s", target=3.0),
            bench.Row("grading", "no target", "ours", 1.0, "theirs", 0.98, "s")]
    shown, close = {}, plt.close
    monkeypatch.setattr(plt, "close", lambda fig: shown.setdefault("fig", fig))
    bench.plot(rows, tmp_path / "p.png")
    monkeypatch.setattr(plt, "close", close)
    fig = shown["fig"]
    ax = fig.axes[0]
    fig.canvas.draw()
    right = ax.get_xlim()[1]
    labels = {t.get_text().strip(): t.get_position()[0] for t in ax.texts}
    assert labels["2.83x"] >= 3.0  # not on the target mark it falls short of
    assert labels["5.00x"] == 5.0
    assert labels["0.98x"] == 1.0  # a bar going left: its label right of the line at 1
    # bars run from 1 to the ratio on a log axis: a slower row's bar goes left of 1
    assert ax.get_xscale() == "log"
    spans = sorted(tuple(sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6))))
                   for p in ax.patches)
    assert spans == [(0.98, 1.0), (1.0, 2.83), (1.0, 5.0)]
    assert ax.get_xlim()[0] < 0.98
    renderer = fig.canvas.get_renderer()
    for text in ax.texts:  # whole, inside the axes
        assert text.get_window_extent(renderer).x1 <= ax.get_window_extent(renderer).x1
    assert right > 5.0
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # above the bars
    plt.close(fig)


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(CourseError, match="unknown bench section"):
        bench.run(["speed"], out=tmp_path, say=lambda s: None)


@pytest.mark.extended
@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_kmeans_section_compares_the_same_clustering():
    """The reference and scikit-learn run the same iterations from the same start: their
    final inertias agree (the comparison is fair), whatever the times."""
    (row,) = bench.bench_kmeans(quick=True)
    assert row.ours_value > 0 and row.theirs_value > 0
    gap = float(row.note.split("by ")[1])
    assert gap < 1e-3, row.note


@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_reference_kmeans_gives_the_same_clustering_on_every_product_path(monkeypatch):
    """The reference kmeans sends X @ C.T to oneDNN for float32 on the CPU and keeps its
    cluster sums up to date with the points that moved only (what makes it faster than
    scikit-learn): the same labels and inertias as the plain product (oneDNN switched off),
    as float64 and as a textbook Lloyd loop that sums every cluster again each iteration."""
    import torch

    ns = bench.reference_namespace("01_kmeans")
    X, _ = bench._mnist("test", 2000)
    onednn = ns["kmeans"](X, 10, n_iters=15, seed=0)
    with monkeypatch.context() as m:  # what a machine without oneDNN (or a GPU) runs
        m.setattr(torch.backends.mkldnn, "is_available", lambda: False)
        plain = ns["kmeans"](X, 10, n_iters=15, seed=0)
    double = ns["kmeans"](X.double(), 10, n_iters=15, seed=0)

    C = X[torch.randperm(len(X), generator=torch.Generator().manual_seed(0))[:10]].double()
    Xd = X.double()
    labels = torch.cdist(Xd, C).argmin(1)
    history = []
    for _ in range(15):  # Lloyd as the textbook writes it, in float64
        C = ns["update_centroids"](Xd, labels, C)
        D = torch.cdist(Xd, C).square()
        new = D.argmin(1)
        history.append(float(D.min(1).values.sum()))
        if torch.equal(new, labels):
            break
        labels = new
    for name, (C_out, labels_out, hist) in {"oneDNN": onednn, "plain": plain,
                                             "float64": double}.items():
        assert len(hist) == len(history), name
        assert torch.equal(labels_out, new), name
        assert torch.allclose(C_out.double(), C, rtol=1e-4, atol=1e-4), name
        assert max(abs(a - b) / b for a, b in zip(hist, history, strict=True)) < 1e-5, name


@pytest.mark.extended
@pytest.mark.skipif(not (data_dir() / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file(),
                    reason="MNIST is not staged: run `make data`")
def test_stock_nbgrader_side_runs_and_gives_full_marks(tmp_path):
    """The other side of the grading comparison is nbgrader as it comes (its configuration
    names nothing of the course) and really grades: it executes 01's reference and its
    gradebook holds full marks."""
    assert "course" not in bench.STOCK_NBGRADER.replace('course_id = "bench"', "")
    seconds, score, top = bench._nbgrader_seconds("01_kmeans", tmp_path, "ci")
    assert seconds > 0 and score == top == 17
    assert (tmp_path / "nbgrader-course" / "autograded" / "s0" / "01_kmeans"
            / "01_kmeans.ipynb").is_file()


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity")
def test_class_section_grades_each_assignment_on_one_core_and_on_all(monkeypatch):
    """The class rows: every assignment asked for, each class size, graded on every usable core
    (one submission per core at once) and pinned to one core, where the grader's defaults see
    one core too; the pin is undone afterwards. Rates are submissions per hour."""
    import os

    from course.grading import runner

    before = os.sched_getaffinity(0)
    seen = []

    def fake(assignment, folder, n=1, parallel=1, disabled="", prestart=True):
        cores = len(os.sched_getaffinity(0))
        seen.append((assignment, n, parallel, cores, runner.thread_share(parallel), prestart))
        return 10.0 * n / cores * (1 if prestart else 1.5)  # twice the cores: half the time

    monkeypatch.setattr(bench, "_grade_seconds", fake)
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    if len(before) < 2:
        pytest.skip("one core: nothing to pin")
    rows = bench.bench_class(["01_kmeans", "05_vae"], sizes=(2, 4))
    assert os.sched_getaffinity(0) == before
    # each class on one core and on both; the largest also without forked graders
    assert seen == [x for a in ("01_kmeans", "05_vae") for x in (
        (a, 2, 1, 1, 1, True), (a, 2, 2, 2, 1, True),
        (a, 4, 1, 1, 1, True), (a, 4, 2, 2, 1, True), (a, 4, 2, 2, 1, False))]
    cases = [(r.case, r.ours_value, r.theirs_value, r.ratio) for r in rows]
    assert cases == [x for a in ("01_kmeans", "05_vae") for x in (
        (f"{a}: a class of 2", 720.0, 360.0, 2.0),
        (f"{a}: a class of 4, graders forked or not", 720.0, 480.0, 1.5),
        (f"{a}: a class of 4", 720.0, 360.0, 2.0))]
    assert rows[0].ours == "on 2 cores, 2 at a time" and rows[0].theirs == "on 1 core"
    assert rows[1].theirs == "each grader its own process (--no-prestart)"
    assert [r.case for r in bench.bench_class(["02_gradient_descent"], quick=True)] == [
        "02_gradient_descent: a class of 2, graders forked or not",
        "02_gradient_descent: a class of 2"]


def test_grading_section_compares_a_class_per_submission_with_nbgraders(monkeypatch):
    """Per assignment: one submission sandboxed and not, against nbgrader; then a class of
    bench.CLASS per submission (graders forked, one per core at once) against nbgrader's
    autograde of the same class, or of one submission where that one took too long."""
    graded, stock = [], []

    def fake_grade(assignment, folder, disabled="", n=1, parallel=1, prestart=True):
        graded.append((assignment, disabled, n, parallel, prestart))
        return 8.0 * n / parallel

    def fake_nbgrader(assignment, folder, scale, n=1):
        stock.append((assignment, scale, n))
        return (20.0 if assignment == "01_kmeans" else 400.0) * n, 17.0, 17.0

    monkeypatch.setattr(bench, "_grade_seconds", fake_grade)
    monkeypatch.setattr(bench, "_nbgrader_seconds", fake_nbgrader)
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    rows = bench.bench_grading(["01_kmeans", "04_contrastive"])
    assert stock == [("01_kmeans", "full", 1), *[("01_kmeans", "full", 1)] * (
        bench.ALONE_REPEATS - 1), ("01_kmeans", "full", bench.CLASS), ("04_contrastive", "full", 1)]
    assert ("01_kmeans", "", bench.CLASS, 2, True) in graded
    klass = [r for r in rows if "class" in r.case]
    assert [(r.case, r.ours_value, r.theirs_value, r.target) for r in klass] == [
        (f"01_kmeans: a class of {bench.CLASS}, per submission", 4.0, 20.0, 3.0),
        (f"04_contrastive: a class of {bench.CLASS}, per submission", 4.0, 400.0, 3.0)]
    assert klass[0].theirs == f"stock nbgrader autograde of the same {bench.CLASS}"
    assert "one submission" in klass[1].theirs


def test_one_submission_alone_is_the_median_of_interleaved_runs(monkeypatch):
    """Where nbgrader grades one submission quickly, each side of the one-submission rows is
    the median of ALONE_REPEATS runs, taken in turn (ours, ours without the sandbox, nbgrader),
    so that a slow spell of the machine falls on all of them; a slow nbgrader (minutes at full
    scale) runs once."""
    order: list[str] = []
    ours = iter([9.0, 3.0, 4.0, 6.0, 5.0, 5.0])  # on, off, on, off, on, off
    theirs = iter([12.0, 30.0, 11.0])

    def fake_grade(assignment, folder, disabled="", n=1, parallel=1, prestart=True):
        if n > 1:
            return 1.0
        if os.environ.get("XDG_CACHE_HOME", "").endswith("first-cache"):
            order.append("first")  # nothing kept: a cache of its own
            return 21.0
        order.append("off" if disabled else "on")
        return next(ours)

    def fake_nbgrader(assignment, folder, scale, n=1):
        if n > 1:
            return 1.0, 17.0, 17.0
        order.append("nbgrader")
        return next(theirs), 17.0, 17.0

    monkeypatch.setattr(bench, "_grade_seconds", fake_grade)
    monkeypatch.setattr(bench, "_nbgrader_seconds", fake_nbgrader)
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    monkeypatch.setattr(bench, "ALONE_REPEATS", 3)
    rows = bench.bench_grading(["01_kmeans"])
    assert order == ["nbgrader", "first", "on", "off", "on", "off", "nbgrader", "on", "off",
                     "nbgrader"]
    alone = {r.case: r for r in rows}
    sandbox, same = alone["01_kmeans: one reference submission"], alone["01_kmeans: the same submission"]
    assert (sandbox.ours_value, sandbox.theirs_value) == (5.0, 5.0)  # medians of 9,4,5 and 3,6,5
    assert (same.ours_value, same.theirs_value) == (5.0, 12.0)  # nbgrader: median of 12,30,11
    assert same.note.startswith("median of 3 runs each")
    assert "the first grading on a machine took 21.0 s" in same.note

    order.clear()
    ours, theirs = iter([9.0, 3.0]), iter([400.0])
    bench.bench_grading(["04_contrastive"])
    assert order == ["nbgrader", "first", "on", "off"]
