"""The MovieLens bandit benchmark's β choice and its summary paired by seed (hand values)."""

from __future__ import annotations

import numpy as np
import pytest
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.loop import BanditRunResult

from benchmarks.bandit_movielens import choose_beta, paired_difference, summarise, uses_beta


def _run(policy: str, seed: int, ctr: list[float], beta: float | None = None) -> BanditRunResult:
    settings = {} if beta is None else {"beta": beta}
    config = BanditRunConfig(
        policy=policy, env="syn-s", rounds=len(ctr), slate_size=2, seed=seed,
        policy_settings=settings, tracking=False,
    )  # fmt: skip
    ctr = np.asarray(ctr)
    rewards = 2 * ctr  # two items per slate
    return BanditRunResult(config, rewards, np.full(len(ctr), 1.8), ctr, seconds=1.0)


def test_choose_beta_takes_the_best_mean_and_the_smaller_on_a_tie():
    assert choose_beta({0.1: [10.0, 20.0], 0.3: [14.0, 16.0], 1.0: [20.0, 0.0]}) == 0.1
    assert choose_beta({0.03: [10.0, 12.0], 0.3: [15.0, 13.0]}) == 0.3


def test_only_ucb_policies_are_tuned():
    assert uses_beta("s-n-galm-ucb") and uses_beta("s-n-gblm-ucb")
    assert uses_beta("n-dropout-ucb") and uses_beta("n-glm-ucb")
    assert not uses_beta("n-greedy") and not uses_beta("random") and not uses_beta("oracle")


def test_summary_pairs_each_policy_with_the_baselines_on_the_same_seed():
    # Seed 1's panel is easier for everyone: GALM is 0.5 and 1.0 above N-Greedy.
    results = {
        "n-greedy": [_run("n-greedy", 0, [0.5, 0.5]), _run("n-greedy", 1, [1.0, 1.0])],
        "s-n-galm-ucb": [
            _run("s-n-galm-ucb", 0, [0.5, 1.0], beta=0.3),
            _run("s-n-galm-ucb", 1, [1.0, 2.0], beta=0.3),
        ],
        "random": [_run("random", 0, [0.0, 0.5]), _run("random", 1, [1.5, 1.0])],
        # N-Dropout-UCB ran on seed 1 only: GALM is paired with it there alone.
        "n-dropout-ucb": [_run("n-dropout-ucb", 1, [1.5, 1.0], beta=1.0)],
    }
    rows = {row["policy"]: row for row in summarise(results)}
    galm = rows["s-n-galm-ucb"]
    assert galm["beta"] == 0.3 and rows["n-greedy"]["beta"] is None
    assert galm["cumulative_ctr"] == pytest.approx(2.25)  # (1.5 + 3.0) / 2
    assert galm["ctr_std"] == pytest.approx(0.75)  # ddof 0
    assert galm["cumulative_clicks"] == pytest.approx(4.5)
    assert galm["cumulative_regret"] == pytest.approx(((3.6 - 3.0) + (3.6 - 6.0)) / 2)
    assert galm["vs"]["n-greedy"] == pytest.approx(
        {"mean": 0.75, "std": 0.25, "above": 2, "seeds": 2}  # (0.5, 1.0)
    )
    assert galm["vs"]["n-dropout-ucb"] == pytest.approx(
        {"mean": 0.5, "std": 0.0, "above": 1, "seeds": 1}  # 3.0 - 2.5 on seed 1
    )
    assert rows["random"]["vs"]["n-greedy"]["mean"] == pytest.approx(0.0)  # (-0.5, +0.5)
    assert rows["random"]["vs"]["n-greedy"]["above"] == 1
    assert rows["n-greedy"]["vs"]["n-greedy"]["mean"] == 0.0


def test_summary_without_a_baseline_has_no_pairs_with_it():
    rows = summarise({"random": [_run("random", 0, [0.5])]})
    assert rows[0]["vs"] == {}
    assert paired_difference([_run("random", 0, [0.5])], [_run("n-greedy", 1, [0.5])]) == {
        "mean": pytest.approx(float("nan"), nan_ok=True),
        "std": pytest.approx(float("nan"), nan_ok=True),
        "above": 0,
        "seeds": 0,
    }
