"""Animations (saved as GIF files, shown inline) and slider views with a static fallback.

Notebooks use two kinds of moving pictures:

* ``animate(fig, draw, n_frames, name)`` turns a drawing function into a GIF, writes it to
  ``figures/<name>.gif`` (``COURSE_FIGURES_DIR`` overrides the folder) and returns an object
  that shows the GIF inline in Jupyter, in Colab, in nbconvert's HTML and on the course site
  (an ``<img>`` with the GIF as a data URI: no JavaScript, nothing to trust).
* ``explore(draw, fallback, **controls)`` shows ``fallback()`` (a static figure every reader
  sees: nbval, the site, a notebook opened without a kernel), then, in a live kernel, sliders
  that call ``draw(**values)`` and redraw. Without ipywidgets only the fallback is shown.

For k-means there are ready-made pieces: ``lloyd_steps`` records Lloyd's iterations made by
the notebook's own ``assign`` and ``update`` functions, ``draw_kmeans_step`` draws one of them,
``kmeans_animation`` and ``kmeans_explorer`` put them in motion. ``align_2d`` keeps successive
2-D projections of a changing point cloud from flipping and turning between frames.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course.plotting import to_numpy

__all__ = [
    "Animation",
    "figures_dir",
    "animate",
    "explore",
    "lloyd_steps",
    "draw_kmeans_step",
    "kmeans_animation",
    "kmeans_steps_figure",
    "kmeans_explorer",
    "align_2d",
]

#: What a reader without a live kernel sees in place of the sliders.
NO_KERNEL_TEXT = "(interactive view: run this cell in Jupyter or Colab to move the sliders)"
#: GIFs above this size are refused: they would bloat the notebook and the site.
MAX_GIF_BYTES = 4 * 1024 * 1024


def figures_dir() -> Path:
    """Where animations are written: ``COURSE_FIGURES_DIR`` or ``./figures``."""
    return Path(os.environ.get("COURSE_FIGURES_DIR") or "figures")


class Animation:
    """A GIF written to ``path``; displays inline as an ``<img>`` holding the GIF's bytes."""

    def __init__(self, path: Path, data: bytes, caption: str = "") -> None:
        self.path, self.data, self.caption = path, data, caption

    def _repr_html_(self) -> str:
        src = "data:image/gif;base64," + base64.b64encode(self.data).decode("ascii")
        alt = html.escape(self.caption or self.path.stem, quote=True)
        return f'<img src="{src}" alt="{alt}" class="course-animation"/>'

    def __repr__(self) -> str:
        return f"animation ({len(self.data) / 1024:.0f} KiB) saved to {self.path}"


def animate(
    fig: Figure,
    draw: Callable[[int], Any],
    n_frames: int,
    name: str,
    fps: float = 3.0,
    dpi: int = 72,
    hold_last: int = 3,
    caption: str = "",
) -> Animation:
    """Record ``draw(i)`` for frames ``i = 0 .. n_frames - 1`` on ``fig`` as a looping GIF.

    ``draw`` redraws the figure for frame ``i`` (clear the axes first). The last frame is
    shown ``hold_last`` times longer so the end state can be read before the loop restarts.
    The GIF goes to ``figures_dir() / f"{name}.gif"``; the figure is closed afterwards.

    Each frame is drawn and rendered once (matplotlib's ``FuncAnimation`` with its
    ``PillowWriter`` renders every frame twice, and the held last frame again each time it
    repeats), with the same pixels as its writer grabs.
    """
    from io import BytesIO

    from PIL import Image

    if n_frames < 1:
        plt.close(fig)
        raise ValueError(f"animate: n_frames must be >= 1, got {n_frames}")
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        plt.close(fig)
        raise ValueError(f"animate: name must be a plain file name, got {name!r}")
    path = figures_dir() / f"{name}.gif"
    path.parent.mkdir(parents=True, exist_ok=True)
    size = tuple(int(inches * dpi) for inches in fig.get_size_inches())
    images = []
    try:
        for i in range(n_frames):
            draw(i)
            buf = BytesIO()
            fig.savefig(buf, format="rgba", dpi=dpi)
            image = Image.frombuffer("RGBA", size, buf.getbuffer(), "raw", "RGBA", 0, 1)
            # an opaque frame as RGB: Pillow picks a better palette for it than for RGBA
            images.append(image.convert("RGB") if image.getextrema()[3][0] == 255 else image)
    finally:
        plt.close(fig)
    frame_ms = 1000 / fps
    durations = [round(frame_ms)] * (n_frames - 1) + [round(frame_ms * (1 + max(0, hold_last)))]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    data = path.read_bytes()
    if len(data) > MAX_GIF_BYTES:
        raise ValueError(f"animate: {path} is {len(data) / 2**20:.1f} MiB (limit "
                         f"{MAX_GIF_BYTES / 2**20:.0f} MiB): use fewer frames or a lower dpi")
    return Animation(path, data, caption)


class _LiveOnly:
    """A widget that shows itself only to a live front end; other readers get a short note
    instead of the widget's Python repr."""

    def __init__(self, widget: Any) -> None:
        self.widget = widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = NO_KERNEL_TEXT
        return bundle

    def __repr__(self) -> str:
        return NO_KERNEL_TEXT


def explore(
    draw: Callable[..., Any],
    fallback: Callable[[], Any] | None = None,
    **controls: Any,
) -> None:
    """Static ``fallback()`` first (shown by ``plt.show()``), then sliders calling ``draw``.

    ``controls`` are ipywidgets (``IntSlider``, ``Dropdown``, ...) keyed by ``draw``'s
    argument names; every change calls ``draw(**values)`` inside an output area that is
    cleared first, so ``draw`` only draws and calls ``plt.show()``. Displays everything
    itself and returns None (a returned widget would be shown twice as a cell's last value).
    """
    if fallback is not None:
        fallback()
        plt.show()
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:  # a plain Python, or a kernel without ipywidgets: the fallback stays
        print("(install ipywidgets for the interactive version of this figure)")
        return
    out = widgets.interactive_output(draw, controls)
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(_LiveOnly(box))


# --- k-means ------------------------------------------------------------------------------


def lloyd_steps(
    X: torch.Tensor,
    k: int,
    assign: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    n_iters: int = 20,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(centres, labels) at the start and after each iteration of Lloyd's algorithm.

    Starts like the assignment's ``kmeans``: the rows ``randperm(N, generator)[:k]`` of a CPU
    generator seeded with ``seed`` are the first centres, ``assign(X, C)`` labels every point;
    then ``update(X, labels, C)`` and ``assign`` alternate until the labels stop changing or
    ``n_iters`` iterations have run. Entry 0 is the start, entry t the state after t updates.
    """
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"lloyd_steps: k must be between 1 and the number of points {n}, got {k}")
    g = torch.Generator().manual_seed(seed)
    C = X[torch.randperm(n, generator=g)[:k].to(X.device)].clone()
    labels = assign(X, C)
    steps = [(C, labels)]
    for _ in range(n_iters):
        C = update(X, labels, C)
        new = assign(X, C)
        steps.append((C, new))
        if torch.equal(new, labels):
            break
        labels = new
    return steps


def _inertia(X: torch.Tensor, C: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((X - C[labels]) ** 2).sum())


def draw_kmeans_step(
    ax: Axes,
    X: Any,
    steps: Sequence[tuple[Any, Any]],
    t: int,
    title: str | None = None,
    trails: bool = True,
    point_size: float = 8,
) -> Axes:
    """Draw state ``t`` of ``steps`` (from ``lloyd_steps``) of 2-D points ``X``: points
    coloured by cluster, the centres as crosses and, with ``trails``, the path each centre
    took so far. The title names the iteration and the inertia."""
    pts = to_numpy(X)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"draw_kmeans_step: X must have shape (N, 2), got {pts.shape}")
    C, labels = (to_numpy(v) for v in steps[t])
    k = len(C)
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    colours = cmap(np.arange(k) % cmap.N)
    ax.clear()
    ax.scatter(pts[:, 0], pts[:, 1], c=colours[labels], s=point_size, alpha=0.6, linewidths=0)
    if trails and t > 0:
        path = np.stack([to_numpy(s[0]) for s in steps[: t + 1]])  # (t+1, k, 2)
        for j in range(k):
            ax.plot(path[:, j, 0], path[:, j, 1], color="black", linewidth=1, alpha=0.7)
    ax.scatter(C[:, 0], C[:, 1], c=colours, marker="X", s=160, edgecolors="black",
               linewidths=1.2, zorder=3)
    inertia = _inertia(torch.as_tensor(pts), torch.as_tensor(C), torch.as_tensor(labels))
    last = len(steps) - 1
    state = "start" if t == 0 else f"iteration {t}" + (" (converged)" if t == last else "")
    ax.set_title(title if title is not None else f"{state}, inertia {inertia:,.0f}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    return ax


def kmeans_animation(
    X: Any, steps: Sequence[tuple[Any, Any]], name: str = "kmeans_lloyd", fps: float = 2.0
) -> Animation:
    """An animation of Lloyd's iterations ``steps`` on the 2-D points ``X``."""
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    k = len(steps[0][0])
    return animate(fig, lambda i: draw_kmeans_step(ax, X, steps, i), len(steps), name, fps=fps,
                   caption=f"k-means with k = {k}: centres and assignments over the iterations")


def kmeans_steps_figure(
    X: Any, steps: Sequence[tuple[Any, Any]], shown: Sequence[int] | None = None
) -> Figure:
    """Small multiples of chosen iterations (default: start, 1, 2, 3 and the last)."""
    last = len(steps) - 1
    shown = sorted({t for t in (shown or (0, 1, 2, 3, last)) if 0 <= t <= last})
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), layout="constrained",
                             squeeze=False)
    for ax, t in zip(axes[0], shown, strict=True):
        draw_kmeans_step(ax, X, steps, t, point_size=4)
    fig.suptitle(f"Lloyd's algorithm, k = {len(steps[0][0])}: the same run at a few iterations")
    return fig


def kmeans_explorer(
    X: torch.Tensor,
    assign: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    update: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ks: Sequence[int] = tuple(range(2, 11)),
    seeds: Sequence[int] = tuple(range(5)),
    k: int | None = None,
    seed: int | None = None,
    n_iters: int = 30,
) -> None:
    """Sliders over the iterations of k-means on 2-D points, with a choice of k and seed.

    The static fallback shows a few iterations of the starting (k, seed). Runs are computed
    when first asked for and kept, so moving the iteration slider only redraws.
    """
    k = ks[len(ks) // 2] if k is None else k
    seed = seeds[0] if seed is None else seed
    runs: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def steps_of(kk: int, ss: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if (kk, ss) not in runs:
            runs[(kk, ss)] = lloyd_steps(X, kk, assign, update, n_iters=n_iters, seed=ss)
        return runs[(kk, ss)]

    def draw(k: int, seed: int, iteration: int) -> None:
        steps = steps_of(k, seed)
        fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
        draw_kmeans_step(ax, X, steps, min(iteration, len(steps) - 1))
        plt.show()

    def fallback() -> None:
        kmeans_steps_figure(X, steps_of(k, seed))

    try:
        import ipywidgets as widgets
    except ImportError:
        explore(draw, fallback)
        return
    controls: Mapping[str, Any] = {
        "k": widgets.Dropdown(options=list(ks), value=k, description="k"),
        "seed": widgets.Dropdown(options=list(seeds), value=seed, description="seed"),
        "iteration": widgets.IntSlider(value=0, min=0, max=n_iters, description="iteration"),
    }
    explore(draw, fallback, **controls)


# --- projections --------------------------------------------------------------------------


def align_2d(points: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    """Rotate (or reflect) 2-D ``points`` to best match ``reference`` (same rows), so an
    animation of successive projections does not flip or spin between frames (orthogonal
    Procrustes: the 2 x 2 orthogonal map minimising the squared distance)."""
    if reference is None:
        return points
    a = points - points.mean(dim=0)
    b = reference - reference.mean(dim=0)
    u, _, vh = torch.linalg.svd(a.T @ b)
    return points @ (u @ vh)
