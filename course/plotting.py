"""Plotting helpers shared by the assignment notebooks.

Every helper accepts tensors on any device (and NumPy arrays or lists), copies what it needs
to the CPU, draws with matplotlib only, returns what it drew on and never calls
``plt.show()``: the notebook cell decides when a figure is displayed. Importing this module
changes no global matplotlib state (no style, no rcParams).

Used by: 01_kmeans (all helpers); 03_autoencoder, 04_contrastive and 05_vae reuse
``show_images``, ``plot_curve`` and ``scatter_2d``; 03_autoencoder reuses
``plot_explained_variance``; 02_gradient_descent uses ``plot_curve`` and
``plot_decision_boundary``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

__all__ = [
    "to_numpy",
    "as_images",
    "show_images",
    "image_strip",
    "plot_curve",
    "plot_explained_variance",
    "scatter_2d",
    "plot_decision_boundary",
    "plot_curves_per_epoch",
]


def to_numpy(values: Any) -> np.ndarray:
    """A NumPy copy of ``values`` on the CPU (tensor on any device, array, list or scalar).

    Floating tensors of any precision (bfloat16, float16, ...) come back as float32 or
    float64; gradients are dropped. Used by every helper here.
    """
    if isinstance(values, torch.Tensor):
        t = values.detach()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(values)


def as_images(images: Any, side: int | None = None) -> np.ndarray:
    """Images as a float array of shape (N, H, W).

    Accepts (N, H*W) with square images (MNIST: (N, 784)), (N, H, W), (N, 1, H, W) or a single
    image ((H, W) or (H*W,)). ``side`` fixes the side length of flat images when they are not
    square. Used by ``show_images`` and ``image_strip`` (01, 03, 04, 05).
    """
    a = to_numpy(images).astype(np.float32, copy=False)
    if a.ndim == 1:
        a = a[None]
    if a.ndim == 2 and side is None and a.shape[0] == a.shape[1] and a.shape[0] != 784:
        a = a[None]  # one square image, e.g. (28, 28)
    if a.ndim == 2:
        n, d = a.shape
        s = side or int(round(d**0.5))
        if s * s != d:
            raise ValueError(f"cannot reshape flat images of length {d} to squares; pass side=")
        return a.reshape(n, s, d // s)
    if a.ndim == 4:
        if a.shape[1] != 1:
            raise ValueError(f"expected one channel in (N, 1, H, W), got shape {a.shape}")
        return a[:, 0]
    if a.ndim == 3:
        return a
    raise ValueError(f"expected images shaped (N, D), (N, H, W) or (N, 1, H, W); got {a.shape}")


def _image_axes(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def show_images(
    images: Any,
    nrow: int = 10,
    titles: Sequence[str] | None = None,
    ax: Axes | None = None,
    cmap: str = "gray",
    suptitle: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    size: float = 1.2,
) -> Figure:
    """Show a batch of images in a grid, ``nrow`` images per row.

    ``images``: (N, 784), (N, 28, 28) or (N, 1, 28, 28), on any device. ``titles``: one short
    string per image (``\\n`` for a second line). Without ``ax`` each image gets its own small
    axes in a new figure (``size`` inches per image); with ``ax`` the grid is drawn as one
    mosaic into that axes (titles are then written above the tiles). ``vmin``/``vmax`` fix the
    grey scale (default: each image scaled on its own in the grid, the mosaic as a whole).
    Returns the figure. Used by 01 (cluster centres, principal components), 03, 04 and 05
    (reconstructions, samples).
    """
    imgs = as_images(images)
    n = len(imgs)
    if n == 0:
        raise ValueError("show_images: no images to show")
    if titles is not None and len(titles) != n:
        raise ValueError(f"show_images: {n} images but {len(titles)} titles")
    cols = max(1, min(nrow, n))
    rows = -(-n // cols)
    if ax is not None:
        return _mosaic(imgs, cols, rows, titles, ax, cmap, suptitle, vmin, vmax)

    title_h = 0.0 if titles is None else 0.18 * (1 + max(t.count("\n") for t in titles))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * size, rows * (size + title_h) + (0.4 if suptitle else 0)),
        squeeze=False, layout="constrained",
    )
    for i, a in enumerate(axes.flat):
        _image_axes(a)
        if i >= n:
            a.set_visible(False)
            continue
        a.imshow(imgs[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            a.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _mosaic(imgs: np.ndarray, cols: int, rows: int, titles: Sequence[str] | None, ax: Axes,
            cmap: str, suptitle: str | None, vmin: float | None, vmax: float | None) -> Figure:
    n, h, w = imgs.shape
    pad = 2 if titles is None else 8
    lo = float(imgs.min()) if vmin is None else vmin
    canvas = np.full((rows * (h + pad) + pad, cols * (w + 2) + 2), lo, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = pad + r * (h + pad), 2 + c * (w + 2)
        canvas[y0:y0 + h, x0:x0 + w] = imgs[i]
        if titles is not None:
            ax.text(x0 + w / 2, y0 - 1, titles[i], ha="center", va="bottom", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.85})
    ax.imshow(canvas, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _image_axes(ax)
    if suptitle:
        ax.set_title(suptitle)
    return ax.figure


def image_strip(
    snapshots: Any,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cmap: str = "gray",
    suptitle: str | None = None,
    size: float = 1.0,
) -> Figure:
    """Show how a set of images changes over time: one row per snapshot, one column per image.

    ``snapshots``: a sequence of T batches, each (K, 784), (K, 28, 28) or (K, 1, 28, 28), or
    one tensor (T, K, ...). Row labels (e.g. ``"iteration 3"``) go on the left, column labels
    (e.g. ``"cluster 0"``) on top. Returns the figure. Used by 01 (k-means centres over
    iterations); handy for any "images during training" strip (03, 05).
    """
    frames = [as_images(s) for s in snapshots]
    if not frames:
        raise ValueError("image_strip: no snapshots")
    k = len(frames[0])
    if any(len(f) != k for f in frames):
        raise ValueError("image_strip: every snapshot needs the same number of images")
    t = len(frames)
    if row_labels is not None and len(row_labels) != t:
        raise ValueError(f"image_strip: {t} snapshots but {len(row_labels)} row labels")
    if col_labels is not None and len(col_labels) != k:
        raise ValueError(f"image_strip: {k} images per snapshot but {len(col_labels)} column labels")
    left = 0.0 if row_labels is None else 0.9
    fig, axes = plt.subplots(
        t, k, figsize=(k * size + left, t * size + (0.3 if col_labels else 0)
                       + (0.4 if suptitle else 0)),
        squeeze=False, layout="constrained",
    )
    for r, frame in enumerate(frames):
        for c in range(k):
            a = axes[r, c]
            a.imshow(frame[c], cmap=cmap, interpolation="nearest")
            _image_axes(a)
            if r == 0 and col_labels is not None:
                a.set_title(col_labels[c], fontsize=9)
            if c == 0 and row_labels is not None:
                a.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_curve(
    values: Any | Mapping[str, Any],
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "value",
    logy: bool = False,
    ax: Axes | None = None,
    start: int = 1,
    marker: str | None = None,
) -> Axes:
    """Plot one curve, or several from a dict ``{name: values}`` (with a legend).

    ``values``: a list of numbers or a 1-D tensor on any device; x runs from ``start``
    (default 1: "iteration 1" is the first entry). ``logy`` uses a log scale for y. Returns the
    axes. Used by 01 (inertia per iteration), 02 (loss and accuracy), 03, 04, 05 (training
    curves).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    series = values if isinstance(values, Mapping) else {None: values}
    for name, v in series.items():
        y = to_numpy(v).astype(np.float64).ravel()
        x = np.arange(start, start + len(y))
        ax.plot(x, y, marker=marker, label=name)
    if logy:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if isinstance(values, Mapping):
        ax.legend()
    return ax


def plot_explained_variance(ratio: Any, ax: Axes | None = None,
                            title: str = "PCA: explained variance") -> Axes:
    """Bars: the explained variance ratio of each principal component; line: the cumulative sum.

    ``ratio``: (n_components,) tensor or array, largest first. Returns the axes (the bars'
    axes; the cumulative curve shares the x axis and has its own scale on the right). Used by
    01 and 03.
    """
    r = to_numpy(ratio).astype(np.float64).ravel()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    x = np.arange(1, len(r) + 1)
    ax.bar(x, r, color="tab:blue", alpha=0.8, label="per component")
    ax.set_xlabel("principal component")
    ax.set_ylabel("explained variance ratio", color="tab:blue")
    ax.set_xlim(0.3, len(r) + 0.7)
    ax.set_title(title)
    ax2 = ax.twinx()
    ax2.plot(x, np.cumsum(r), color="tab:red", marker=".", label="cumulative")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("cumulative ratio", color="tab:red")
    ax2.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right")
    return ax


def scatter_2d(
    Z: Any,
    labels: Any,
    title: str = "",
    ax: Axes | None = None,
    legend: bool = True,
    cmap: str = "tab10",
    legend_title: str | None = None,
    names: Mapping[int, str] | None = None,
    s: float = 6.0,
    alpha: float = 0.7,
    xlabel: str = "component 1",
    ylabel: str = "component 2",
) -> Axes:
    """Scatter the first two columns of ``Z`` coloured by integer ``labels``.

    ``Z``: (N, >=2), ``labels``: (N,) integers (cluster ids or digit labels), both on any
    device. Points are drawn in one call in their given order, so no class is painted on top
    of all the others. With at most 20 distinct labels, non-negative integers below the
    colour map's size get the colour of their value (digit 3 is always the fourth colour of
    ``tab10``) and a legend goes outside the axes on the right, titled ``legend_title``, with
    ``names[label]`` as the entry text when given (default: the label itself). More labels
    get a colour bar instead. Returns the axes. Used by 01 (PCA projections), 03 and 04
    (t-SNE of latent spaces).
    """
    z = to_numpy(Z).astype(np.float64)
    lab = to_numpy(labels).ravel()
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(lab):
        raise ValueError(f"scatter_2d: need Z (N, >=2) and labels (N,); got {z.shape}, {lab.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
    classes = np.unique(lab)
    colours = plt.get_cmap(cmap)
    n_col = getattr(colours, "N", 256)
    if len(classes) <= 20:
        by_value = (np.issubdtype(lab.dtype, np.integer) and classes.min() >= 0
                    and classes.max() < min(n_col, 20))
        index = {c: (int(c) if by_value else i) for i, c in enumerate(classes)}

        def colour(c: Any) -> Any:
            return colours(index[c] % n_col) if n_col <= 20 else colours(
                index[c] / max(len(classes) - 1, 1))

        point_colours = np.array([colour(c) for c in classes])[np.searchsorted(classes, lab)]
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=alpha, c=point_colours, linewidths=0,
                   rasterized=True)
        if legend:
            handles = [Line2D([], [], linestyle="", marker="o", markersize=7, color=colour(c),
                              label=(names or {}).get(int(c) if by_value else c, str(c)))
                       for c in classes]
            ax.legend(handles=handles, title=legend_title, loc="center left",
                      bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    else:
        sc = ax.scatter(z[:, 0], z[:, 1], c=lab, s=s, alpha=alpha, cmap=cmap, linewidths=0,
                        rasterized=True)
        if legend:
            ax.figure.colorbar(sc, ax=ax, label=legend_title)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_decision_boundary(
    predict: Any,
    x: Any,
    y: Any,
    ax: Axes | None = None,
    title: str = "",
    resolution: int = 200,
    margin: float = 0.5,
    xlabel: str = "$x_1$",
    ylabel: str = "$x_2$",
    legend: bool = True,
) -> Axes:
    """Draw a binary classifier's view of the plane: shaded probability, boundary, points.

    ``predict`` maps an (M, 2) float tensor of points to logits, shape (M,) or (M, 1), where
    a positive logit means class 1: an ``nn.Module`` such as ``nn.Linear(2, 1)``, or any
    function (``lambda p: model(features(p))``). It is evaluated under ``torch.no_grad()`` on
    a ``resolution`` x ``resolution`` grid that covers ``x`` plus ``margin`` on every side,
    built with the dtype and on the device of ``x`` (a tensor on any device), so the model
    may live on a GPU. The background shows sigmoid(logit), the predicted probability of
    class 1 (blue 0, red 1); the black line is the decision boundary (probability 0.5, logit
    0). The points ``x`` (N, 2) are drawn coloured by their true label ``y`` ((N,) or (N, 1),
    0 or 1); the legend goes below the axes, clear of the points. Returns the axes. Used by
    02_gradient_descent.
    """
    pts = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"plot_decision_boundary: x must have shape (N, 2), got {tuple(pts.shape)}")
    if not pts.is_floating_point():
        pts = pts.float()
    lab = to_numpy(y).ravel()
    if len(lab) != len(pts):
        raise ValueError(f"plot_decision_boundary: {len(pts)} points but {len(lab)} labels")
    xy = to_numpy(pts).astype(np.float64)
    lo, hi = xy.min(axis=0) - margin, xy.max(axis=0) + margin
    g0 = np.linspace(lo[0], hi[0], resolution)
    g1 = np.linspace(lo[1], hi[1], resolution)
    mesh0, mesh1 = np.meshgrid(g0, g1)
    grid = torch.from_numpy(np.stack([mesh0.ravel(), mesh1.ravel()], axis=1))
    grid = grid.to(device=pts.device, dtype=pts.dtype)
    with torch.no_grad():
        logits = torch.as_tensor(predict(grid))
    if logits.numel() != grid.shape[0]:
        raise ValueError("plot_decision_boundary: predict must return one logit per point, "
                         f"got shape {tuple(logits.shape)} for {grid.shape[0]} points")
    logit = to_numpy(logits.reshape(-1)).astype(np.float64).reshape(mesh0.shape)
    prob = 1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.4), layout="constrained")
    ax.contourf(mesh0, mesh1, prob, levels=np.linspace(0.0, 1.0, 11), cmap="RdBu_r",
                alpha=0.35, antialiased=True)
    if logit.min() < 0 < logit.max():
        ax.contour(mesh0, mesh1, logit, levels=[0.0], colors="black", linewidths=1.5)
    colours = {0: "#2166ac", 1: "#b2182b"}
    markers = {0: "o", 1: "^"}
    for c in (0, 1):
        keep = lab == c
        ax.scatter(xy[keep, 0], xy[keep, 1], s=14, c=colours[c], marker=markers[c],
                   edgecolors="white", linewidths=0.4, label=f"class {c}")
    if legend:
        handles = ax.get_legend_handles_labels()[0]
        handles.append(Line2D([], [], color="black", linewidth=1.5, label="boundary (p = 0.5)"))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3,
                  fontsize=10, markerscale=1.6, frameon=False)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_curves_per_epoch(
    curves: Mapping[str, tuple[Any, int]],
    title: str = "",
    ylabel: str = "loss",
    logy: bool = True,
    ax: Axes | None = None,
    colors: Mapping[str, Any] | None = None,
    smooth: int = 1,
    legend: bool = True,
) -> Axes:
    """Per-step training losses of several runs on one axis measured in epochs.

    ``curves``: ``{name: (losses, steps_per_epoch)}``; step ``i`` (from 0) of a run is drawn at
    ``(i + 1) / steps_per_epoch`` epochs, so runs with different batch sizes line up. A log
    scale (``logy``) suits reconstruction losses. ``colors[name]`` fixes a run's colour (the
    same run in the same colour on every panel). With ``smooth`` > 1 each run is a faint line
    of its steps under the running mean of ``smooth`` steps, so a noisy run does not hide the
    others. ``legend=False`` leaves the legend to the caller (one for a whole figure). Returns
    the axes. Used by 03 (and 04, 05: any comparison of training runs).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    if smooth < 1:
        raise ValueError(f"plot_curves_per_epoch: smooth must be >= 1, got {smooth}")
    for name, (losses, steps_per_epoch) in curves.items():
        if steps_per_epoch < 1:
            raise ValueError(f"plot_curves_per_epoch: steps_per_epoch of {name!r} must be >= 1")
        y = to_numpy(losses).astype(np.float64).ravel()
        x = np.arange(1, len(y) + 1) / steps_per_epoch
        colour = (colors or {}).get(name)
        if smooth > 1 and len(y) >= smooth:
            (faint,) = ax.plot(x, y, color=colour, linewidth=0.6, alpha=0.25)
            mean = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(x[smooth - 1:], mean, color=faint.get_color(), linewidth=1.6, label=name)
        else:
            ax.plot(x, y, color=colour, label=name, linewidth=1.2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    if legend:
        ax.legend()
    return ax
