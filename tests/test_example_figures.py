"""The examples' figures say what they show: axis labels and ticks, titles, legends that cover no curve,
a loss axis that separates the rules, and an AdamW panel that differs from Adam's (or says why)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import batchnorm_compare  # noqa: E402
import hyperparameter_search  # noqa: E402
import optimizer_compare  # noqa: E402
import optimizer_paths  # noqa: E402

import gpunn  # noqa: E402


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, laid out as saved but kept open (and closed at the end)."""
    kept = []

    def keep(fig, path, dpi=100, rect=None):
        fig.tight_layout(rect=rect)
        fig.canvas.draw()
        kept.append(fig)
        return path

    for module in (batchnorm_compare, hyperparameter_search, optimizer_compare):
        monkeypatch.setattr(module, "save_figure", keep)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def curves(n, epochs=10, seed=0):
    rng = np.random.default_rng(seed)
    return [np.sort(rng.uniform(0.1, 0.95, epochs)) for _ in range(n)]


def test_hyperparameter_panels_have_ticks_and_labels(figures):
    ranked = [
        (1e-3 * (k + 1), 1e-6, {"val": list(v), "train": list(v * 1.02)}) for k, v in enumerate(curves(20))
    ]
    hyperparameter_search.plot(ranked, "unused.png")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 20
    for ax in panels:
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()], "an x axis without tick labels"
        assert len(ax.get_yticks()) >= 2 and ax.get_title().startswith("best-")
    left = [ax for ax in panels if ax.get_subplotspec().is_first_col()]
    for ax in left:
        assert [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert fig.get_supxlabel() == "epoch" and fig.get_supylabel() == "accuracy"
    assert fig.get_suptitle()


def test_batchnorm_legend_covers_no_panel_and_there_is_a_title(figures):
    results = {
        float(s): {"batchnorm": list(a), "plain": list(b)}
        for s, a, b in zip(np.logspace(0, -4, 16), curves(16), curves(16, seed=1), strict=True)
    }
    batchnorm_compare.plot(results, "unused.png", title="BatchNorm vs. none")
    (fig,) = figures
    assert fig.get_suptitle() == "BatchNorm vs. none"
    assert not any(ax.get_legend() for ax in fig.axes)
    (legend,) = fig.legends
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert [t.get_text() for t in legend.get_texts()] == ["with BatchNorm", "without BatchNorm"]
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers a panel"
    assert not box.overlaps(fig._suptitle.get_window_extent(renderer)), "the legend covers the title"
    assert box.y1 <= fig.bbox.y1


def test_optimizer_compare_loss_axis_separates_the_curves(figures):
    smoothed = {
        "SGD": np.geomspace(2.3, 0.35, 50),
        "Adam": np.geomspace(2.2, 0.02, 50),
        "AdaGrad": np.geomspace(2.1, 0.03, 50),
    }
    assert optimizer_compare.loss_axis_range(smoothed.values()) == pytest.approx((0.016, 2.875))
    optimizer_compare.plot(smoothed, {k: 0.9 for k in smoothed}, "unused.png", "t")
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    low, high = ax.get_ylim()
    assert low <= 0.02 and high >= 2.3 and high < 3  # every curve inside, the bottom not wasted
    # the ends of Adam (0.02) and AdaGrad (0.03) lie far apart: >= 5 % of the axis height
    frac = np.log(0.03 / 0.02) / np.log(high / low)
    assert frac > 0.05


def test_adamw_panel_differs_from_adam_and_says_why():
    dev = gpunn.device("cpu")
    kwargs = dict(optimizer_paths.BOWL_RULES)[gpunn.optim.AdamW]
    assert "AdamW" in optimizer_paths.AS_WEIGHTS and kwargs["weight_decay"] > 0
    adam = optimizer_paths.run_path(dev, gpunn.optim.Adam, {"lr": kwargs["lr"]}, optimizer_paths.bowl, 20)
    as_bias = optimizer_paths.run_path(dev, gpunn.optim.AdamW, kwargs, optimizer_paths.bowl, 20)
    as_weight = optimizer_paths.run_path(
        dev, gpunn.optim.AdamW, kwargs, optimizer_paths.bowl, 20, shape=(1, 1)
    )
    np.testing.assert_array_equal(as_bias, adam)  # decay skips 1-D arrays: why the panel used to match
    assert np.abs(as_weight - adam).max() > 0.3  # as weights, the decay shows
