"""The stability figures: a real PNG, one panel per non-empty metric, every logged point."""

from __future__ import annotations

import math

import pytest
from recrl.pipelines.stability_plot import (
    StepMarker,
    mean_std,
    plot_stability,
    plot_sweep_stability,
    smooth,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_one_panel_per_metric_with_points(tmp_path):
    history = {
        "eval/hr_20_purchase": [(2000, 0.41), (0, 0.05), (1000, 0.32)],  # unsorted on purpose
        "eval/ndcg_20_purchase": [(0, 0.02), (1000, 0.18), (2000, 0.25)],
        "q/mean": [(0, 0.1), (1000, math.nan), (2000, 0.8)],  # a gap, not a crash
        "q/gap": [],  # skipped
        "loss/td": [(step, 1.0 / (1 + step)) for step in range(0, 2000, 50)],
    }
    markers = [StepMarker(500, "phase 2 (sac)"), StepMarker(1950, "diverged", diverged=True)]
    plot = plot_stability(history, tmp_path / "figs" / "stability.png", title="sasrec seed 0",
                          markers=markers)  # fmt: skip
    assert plot.path == tmp_path / "figs" / "stability.png"
    # evaluations first, then losses, then Q statistics
    assert plot.panels == ("eval/hr_20_purchase", "eval/ndcg_20_purchase", "loss/td", "q/mean")
    # every logged point is drawn: 40 loss steps, not the 3 evaluation steps
    assert plot.points == {"eval/hr_20_purchase": 3, "eval/ndcg_20_purchase": 3,
                           "loss/td": 40, "q/mean": 3}  # fmt: skip
    assert plot.markers == ("phase 2 (sac)", "diverged")
    data = plot.path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000  # four drawn panels, not an empty canvas
    # IHDR: width and height of a 4 x 1 grid of 4 x 3 in panels at 100 dpi
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1600, 300)


def test_smoothing_starts_at_the_first_value_and_skips_gaps():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no ramp
    # w = 0.5: s1 = 0.5·1 / 0.5 = 1; s2 = (0.25 + 0.5·3) / 0.75 = 7/3
    out = smooth([1.0, math.nan, 3.0], weight=0.5)
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1])
    assert out[2] == pytest.approx(7 / 3)
    assert smooth([1.0, 5.0], weight=0.0) == [1.0, 5.0]


def test_mean_std_over_seeds_on_shared_steps():
    seed0 = [(100, 1.0), (200, 2.0), (300, 4.0)]
    seed1 = [(100, 3.0), (200, 2.0), (200, 6.0)]  # stopped at 200; 200 retried: last counts
    steps, mean, std = mean_std([seed0, seed1])
    assert steps == [100, 200]
    assert mean == pytest.approx([2.0, 4.0]) and std == pytest.approx([1.0, 2.0])
    assert mean_std([]) == ([], [], [])


def test_sweep_figure_has_a_band_per_setting(tmp_path):
    def run(offset: float) -> dict:
        return {"eval/hr_20_purchase": [(100, 0.1 + offset), (200, 0.2 + offset)],
                "loss/ce": [(s, 5.0 - s / 100 + offset) for s in range(10, 210, 10)]}  # fmt: skip

    groups = {"snqn n_neg=5": [run(0.0), run(0.02)], "snqn n_neg=20": [run(0.01)]}
    plot = plot_sweep_stability(groups, tmp_path / "sweep.png", title="negatives",
                                markers=[StepMarker(150, "diverged", diverged=True)])  # fmt: skip
    assert plot.panels == ("eval/hr_20_purchase", "loss/ce")
    # the mean curve of each setting: 2 evaluations and 20 loss points, two settings
    assert plot.points == {"eval/hr_20_purchase": 4, "loss/ce": 40}
    assert plot.path.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_sweep_stability({"a": [{"loss/ce": [(1, 1.0)]}, {"loss/ce": [(2, 1.0)]}]},
                             tmp_path / "none.png", title="disjoint")  # fmt: skip


def test_single_metric_gives_a_single_panel(tmp_path):
    plot = plot_stability({"eval/hr_5_click": [(0, 0.1)]}, tmp_path / "one.png", title="t")
    assert plot.panels == ("eval/hr_5_click",) and plot.points == {"eval/hr_5_click": 1}
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
