"""course.interactive: animations written as GIFs and shown inline, slider views with a static
fallback, Lloyd's steps made by the notebook's own functions; and the executed solutions carry
the animations and fallbacks the site and a reader without a kernel see."""

from __future__ import annotations

import base64
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from course import interactive  # noqa: E402
from course.paths import repo_root  # noqa: E402


def _assign(X, C):
    return torch.cdist(X, C).argmin(dim=1)


def _update(X, labels, C):
    sums = torch.zeros_like(C).index_add_(0, labels, X)
    counts = torch.bincount(labels, minlength=len(C))
    return torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], C)


def _blobs(n=300, seed=0, width=0.7):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    which = torch.randint(0, 3, (n,), generator=g)
    return centres[which] + width * torch.randn(n, 2, generator=g)


# --- lloyd_steps ----------------------------------------------------------------------------


def test_lloyd_steps_start_like_kmeans_and_use_the_given_functions():
    X = _blobs()
    calls = {"assign": 0, "update": 0}

    def assign(X, C):
        calls["assign"] += 1
        return _assign(X, C)

    def update(X, labels, C):
        calls["update"] += 1
        return _update(X, labels, C)

    steps = interactive.lloyd_steps(X, 3, assign, update, n_iters=50, seed=4)
    start = torch.randperm(len(X), generator=torch.Generator().manual_seed(4))[:3]
    assert torch.equal(steps[0][0], X[start])
    assert torch.equal(steps[0][1], _assign(X, X[start]))
    assert calls == {"assign": len(steps), "update": len(steps) - 1}
    # stops at the first iteration whose labels equal the previous ones, and not before
    assert torch.equal(steps[-1][1], steps[-2][1])
    assert all(not torch.equal(a[1], b[1]) for a, b in zip(steps[:-2], steps[1:-1], strict=True))
    inertia = [interactive._inertia(X, C, lab) for C, lab in steps]
    assert all(b <= a + 1e-3 for a, b in zip(inertia, inertia[1:], strict=False))


def test_lloyd_steps_stop_after_n_iters_and_refuse_a_bad_k():
    X = _blobs()
    assert len(interactive.lloyd_steps(X, 3, _assign, _update, n_iters=1, seed=1)) == 2
    for k in (0, len(X) + 1):
        with pytest.raises(ValueError, match="k must be between 1"):
            interactive.lloyd_steps(X, k, _assign, _update)


# --- animate --------------------------------------------------------------------------------


def test_animate_writes_a_gif_of_every_frame_and_shows_it_inline(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path / "figs"))
    fig, ax = plt.subplots(figsize=(2, 2))
    drawn = []

    def draw(i):
        drawn.append(i)
        ax.clear()
        ax.plot([0, 1], [0, i])
        ax.set_ylim(0, 5)

    anim = interactive.animate(fig, draw, 5, "line", hold_last=2, caption="a <line>")
    path = tmp_path / "figs" / "line.gif"
    assert anim.path == path and path.read_bytes() == anim.data
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames >= 5
    assert set(drawn) == set(range(5))
    html = anim._repr_html_()
    src = re.search(r'src="data:image/gif;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(src) == path.read_bytes()
    assert 'alt="a &lt;line&gt;"' in html  # the caption cannot add markup
    assert not plt.fignum_exists(fig.number)  # closed: the notebook shows only the GIF


def test_animate_draws_and_renders_each_frame_once_and_holds_the_last(tmp_path, monkeypatch):
    """Rendering is nearly all of an animation's time (02's boundary movie: 15 s with every
    frame rendered twice by FuncAnimation, 6.6 s once): each frame is drawn and rendered
    once, and the held last frame is one frame that lasts longer, not repeated renders."""
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path))
    fig, ax = plt.subplots(figsize=(2, 2))
    drawn, renders = [], []
    fig.canvas.mpl_connect("draw_event", lambda event: renders.append(len(drawn)))

    def draw(i):
        drawn.append(i)
        ax.clear()
        ax.bar([0, 1], [1, i + 1], color="tab:blue")
        ax.set_ylim(0, 5)

    interactive.animate(fig, draw, 4, "bars", fps=4, hold_last=3)
    assert drawn == [0, 1, 2, 3]
    assert renders == [1, 2, 3, 4]  # one render after each draw
    with Image.open(tmp_path / "bars.gif") as im:
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
    assert durations == [250, 250, 250, 1000]


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden"])
def test_animate_refuses_names_that_are_not_plain_file_names(tmp_path, monkeypatch, name):
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path))
    fig = plt.figure()
    with pytest.raises(ValueError, match="plain file name"):
        interactive.animate(fig, lambda i: None, 2, name)
    assert not plt.fignum_exists(fig.number)


def test_animate_refuses_no_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_FIGURES_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="n_frames"):
        interactive.animate(plt.figure(), lambda i: None, 0, "empty")


def test_figures_go_to_figures_by_default(monkeypatch):
    monkeypatch.delenv("COURSE_FIGURES_DIR", raising=False)
    assert str(interactive.figures_dir()) == "figures"


# --- explore --------------------------------------------------------------------------------


def test_explore_shows_the_fallback_then_sliders_that_redraw(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    shown, displayed, calls = [], [], []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.get_fignums()))
    monkeypatch.setattr("IPython.display.display", lambda obj, **k: displayed.append(obj))

    def fallback():
        plt.figure()
        calls.append("fallback")

    slider = widgets.IntSlider(value=1, min=0, max=5)
    interactive.explore(lambda n: calls.append(n), fallback, n=slider)
    assert calls[0] == "fallback" and shown  # the static figure first, whatever the reader
    slider.value = 4
    assert calls[-1] == 4  # moving the slider calls draw with its value
    (view,) = displayed
    data = view._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert data["text/plain"] == interactive.NO_KERNEL_TEXT  # not "VBox(children=...)"
    assert "application/vnd.jupyter.widget-view+json" in data


def test_explore_without_ipywidgets_keeps_the_fallback(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    calls = []
    interactive.explore(lambda n: calls.append(n), lambda: calls.append("fallback"))
    assert calls == ["fallback"]
    assert "install ipywidgets" in capsys.readouterr().out


def test_kmeans_explorer_draws_the_chosen_run(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    titles, displayed = [], []
    monkeypatch.setattr(plt, "show", lambda *a, **k: titles.append(
        [ax.get_title() for n in plt.get_fignums() for ax in plt.figure(n).axes]) or
        plt.close("all"))
    monkeypatch.setattr("IPython.display.display", lambda obj, **k: displayed.append(obj))
    X = _blobs(width=2.0)  # overlapping: several iterations
    interactive.kmeans_explorer(X, _assign, _update, ks=(2, 3, 4), seeds=(0, 1), k=3, seed=1)
    assert titles[0][0].startswith("start") and len(titles[0]) >= 3  # small multiples
    box = displayed[0].widget
    controls = {w.description: w for w in box.children[0].children}
    assert isinstance(controls["iteration"], widgets.IntSlider)
    controls["iteration"].value = 1
    assert titles[-1] == [titles[-1][0]] and titles[-1][0].startswith("iteration 1")
    controls["k"].value = 4
    steps = interactive.lloyd_steps(X, 4, _assign, _update, n_iters=30, seed=1)
    inertia = interactive._inertia(X, *steps[1])
    assert f"{inertia:,.0f}" in titles[-1][0]


# --- align_2d -------------------------------------------------------------------------------


@pytest.mark.parametrize("reflect", [False, True])
def test_align_2d_undoes_a_turn_or_a_flip(reflect):
    ref = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    a = torch.tensor(1.1)
    R = torch.stack([torch.stack([a.cos(), -a.sin()]), torch.stack([a.sin(), a.cos()])])
    if reflect:
        R = R @ torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    moved = ref @ R
    assert torch.allclose(interactive.align_2d(moved, ref), ref, atol=1e-5)
    assert interactive.align_2d(moved, None) is moved


def test_draw_kmeans_step_needs_points_in_the_plane():
    X = torch.randn(10, 3)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        interactive.draw_kmeans_step(ax, X, [(X[:2], torch.zeros(10, dtype=torch.long))], 0)
    plt.close(fig)


# --- the executed solutions -----------------------------------------------------------------

ANIMATED = {"01_kmeans": ["exp_kmeans_watch"], "02_gradient_descent": ["exp_boundary_movie"],
            "04_contrastive": ["exp_latent_movie"]}
EXPLORERS = {"01_kmeans": ["exp_kmeans_explore"], "02_gradient_descent": ["exp_lr_explore"]}


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


@pytest.mark.parametrize("assignment", sorted(ANIMATED))
def test_solutions_show_their_animations_inline(assignment):
    nb = nbformat.read(repo_root() / "solutions" / assignment / f"{assignment}.ipynb",
                       as_version=4)
    for gid in ANIMATED[assignment]:
        html = "".join(o.get("data", {}).get("text/html", "") for o in _cell(nb, gid).outputs)
        gifs = re.findall(r'src="data:image/gif;base64,([^"]+)"', html)
        assert len(gifs) == 1, f"{assignment} {gid}: no inline animation"
        assert base64.b64decode(gifs[0])[:6] in (b"GIF89a", b"GIF87a")


@pytest.mark.parametrize("assignment", sorted(EXPLORERS))
def test_solutions_show_a_static_fallback_where_sliders_need_a_kernel(assignment):
    nb = nbformat.read(repo_root() / "solutions" / assignment / f"{assignment}.ipynb",
                       as_version=4)
    for gid in EXPLORERS[assignment]:
        outputs = _cell(nb, gid).outputs
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{gid}: no fallback"
        texts = [o["data"].get("text/plain", "") for o in outputs if "data" in o]
        assert interactive.NO_KERNEL_TEXT in texts, f"{gid}: the widget's repr shows instead"
        assert not any("VBox(" in t or "IntSlider(" in t for t in texts)
