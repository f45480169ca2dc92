"""course.plotting: the options the notebooks' figures rely on."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course import plotting  # noqa: E402


def test_curves_keep_their_colour_and_a_noisy_run_is_smoothed() -> None:
    rng = np.random.default_rng(0)
    noisy = 1 + rng.normal(0, 0.5, 400)
    smooth = np.linspace(2, 1, 400)
    colors = {"noisy": "tab:orange", "smooth": "tab:green"}
    ax = plotting.plot_curves_per_epoch({"noisy": (noisy, 100), "smooth": (smooth, 100)},
                                        colors=colors, smooth=25, legend=False, logy=False)
    lines = ax.get_lines()
    assert len(lines) == 4  # a faint line of the steps and a running mean, per run
    labelled = {ln.get_label(): ln for ln in lines if not ln.get_label().startswith("_")}
    assert set(labelled) == {"noisy", "smooth"}
    assert matplotlib.colors.same_color(labelled["noisy"].get_color(), "tab:orange")
    mean = labelled["noisy"].get_ydata()
    assert len(mean) == 400 - 24 and mean.std() < noisy.std() / 3  # the mean is calm
    assert ax.get_legend() is None
    faint = [ln for ln in lines if ln.get_label().startswith("_")]
    assert all(ln.get_alpha() < 0.5 for ln in faint)
    assert np.allclose(labelled["smooth"].get_xdata()[-1], 4.0)  # epochs on the x axis
    plt.close("all")


def test_curves_default_is_one_line_per_run_with_a_legend() -> None:
    ax = plotting.plot_curves_per_epoch({"a": (torch.ones(10), 5), "b": ([2.0] * 10, 5)})
    assert len(ax.get_lines()) == 2 and ax.get_legend() is not None
    with pytest.raises(ValueError, match="smooth"):
        plotting.plot_curves_per_epoch({"a": ([1.0], 1)}, smooth=0)
    plt.close("all")


def test_decision_boundary_legend_is_readable() -> None:
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    ax = plotting.plot_decision_boundary(lambda p: p[:, 0], x, (x[:, 0] > 0).long())
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["class 0", "class 1",
                                                          "boundary (p = 0.5)"]
    assert all(t.get_fontsize() >= 10 for t in legend.get_texts())
    plt.close("all")
