"""The stability figure: a real PNG, one panel per non-empty metric."""

from __future__ import annotations

import math

import pytest
from recrl.pipelines.stability_plot import plot_stability

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_one_panel_per_metric_with_points(tmp_path):
    history = {
        "eval/hr_20_purchase": [(2000, 0.41), (0, 0.05), (1000, 0.32)],  # unsorted on purpose
        "eval/ndcg_20_purchase": [(0, 0.02), (1000, 0.18), (2000, 0.25)],
        "q/mean": [(0, 0.1), (1000, math.nan), (2000, 0.8)],  # a gap, not a crash
        "q/gap": [],  # skipped
        "loss/td": [(step, 1.0 / (1 + step)) for step in range(0, 2000, 50)],
    }
    plot = plot_stability(history, tmp_path / "figs" / "stability.png", title="sasrec seed 0")
    assert plot.path == tmp_path / "figs" / "stability.png"
    assert plot.panels == ("eval/hr_20_purchase", "eval/ndcg_20_purchase", "q/mean", "loss/td")
    data = plot.path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000  # four drawn panels, not an empty canvas
    # IHDR: width and height of a 3 x 2 grid of 4 x 3 in panels at 100 dpi
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 600)


def test_single_metric_gives_a_single_panel(tmp_path):
    plot = plot_stability({"eval/hr_5_click": [(0, 0.1)]}, tmp_path / "one.png", title="t")
    assert plot.panels == ("eval/hr_5_click",)
    data = plot.path.read_bytes()
    assert int.from_bytes(data[16:20], "big") == 400


def test_empty_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_stability({}, tmp_path / "none.png", title="empty")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_stability({"q/mean": []}, tmp_path / "none.png", title="empty")
    assert not (tmp_path / "none.png").exists()


def test_pyplot_state_is_untouched(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_stability({"loss/ce": [(0, 2.0), (10, 1.0)]}, tmp_path / "p.png", title="t")
    assert plt.get_fignums() == before
