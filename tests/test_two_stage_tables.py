"""The two-stage tables benchmark: its summary paired by seed (hand values), its budgeted
runs and its scaling part on a small catalogue."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmarks.two_stage_tables import (
    TimedRun,
    run_config,
    scaling_topics,
    select_scaling,
    summarise,
)


def _run(policy: str, seed: int, ctr: float, select: float, total: float) -> TimedRun:
    seconds = {"select": select, "context": 0.1, "total": total, "wall": total}
    return TimedRun(policy, 100, seed, ctr, seconds, scores_per_round=100.0)


def test_summary_pairs_the_two_forms_by_seed():
    runs = [
        _run("n-greedy", 0, 500.0, 1.0, 10.0), _run("2-n-greedy", 0, 600.0, 2.0, 20.0),
        _run("n-greedy", 1, 700.0, 3.0, 30.0), _run("2-n-greedy", 1, 650.0, 1.0, 10.0),
        _run("random", 0, 300.0, 1.0, 1.0),  # no 2- form: no row
    ]  # fmt: skip
    (row,) = summarise(runs)
    assert (row["policy"], row["budget"], row["seeds"]) == ("n-greedy", 100, [0, 1])
    assert row["one"]["cumulative_ctr"] == {"mean": 600.0, "std": 100.0}
    assert row["two"]["cumulative_ctr"] == {"mean": 625.0, "std": 25.0}
    # one / two per seed: select 0.5 and 3.0, total 0.5 and 3.0
    assert row["select_ratio"] == pytest.approx({"mean": 1.75, "std": 1.25})
    assert row["total_ratio"] == pytest.approx({"mean": 1.75, "std": 1.25})
    assert row["ctr_above"] == 1  # seed 0 only


def test_run_config_sets_p_to_the_budget_per_recommendation():
    args = SimpleNamespace(
        data="ml",
        users=100,
        rounds=10,
        encoder="sasrec",
        slate_size=5,
        items_per_topic=89,
        betas={"s-n-galm-ucb": 0.03},
    )
    two = run_config(args, "2-s-n-galm-ucb", 100, seed=3)
    assert two.policy_settings == {"budget": 100, "min_group_items": 20, "beta": 0.03}
    assert run_config(args, "n-greedy", None, seed=0).policy_settings == {}
    assert run_config(args, "2-n-greedy", None, seed=0).policy_settings == {"min_group_items": 89}


def test_scaling_topics_keep_the_catalogue_and_the_shares():
    topics = scaling_topics(1682, "movielens")
    counts = torch.bincount(topics, minlength=19)
    assert len(topics) == 1682 and counts.min() >= 1
    assert counts.argmax() == 8  # Drama, the largest first genre of MovieLens-100K
    assert torch.bincount(scaling_topics(190, "balanced")).tolist() == [10] * 19


def test_scaling_times_both_forms_and_counts_what_two_stage_scored():
    row = select_scaling("n-greedy", 380, "balanced", dim=4, k=2, calls=2)
    assert row["one_ms"] > 0 and row["two_ms"] > 0
    # balanced, p = 380 / 19 = 20 = one topic per group: 2 groups of 20 items + 19 topics
    assert row["two_scored"] == 2 * 20 + 19
