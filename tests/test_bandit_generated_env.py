"""The user-choice simulator fitted on a ``recrl generate`` dataset, and a bandit run on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from recrl.envs.generated_dataset import load_ground_truth
from recrl.envs.generated_dataset import write_generated_dataset as write
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.envs.user_choice import (
    ClickModelConfig,
    fit_simulator,
    item_topics,
    load_generated_clicks,
    unobserved_pairs,
)
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.job import run_bandit
from recrl.pipelines.bandit.loop import fitted_simulator, make_environment


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    config = SessionGeneratorConfig(n_sessions=600, n_items=120, n_users=60, n_categories=6)
    write(config, root)
    return root


def test_unobserved_pairs_are_distinct_and_never_logged():
    rng = np.random.default_rng(0)
    observed = np.array([0, 1, 2, 5, 7])  # keys user·4 + item over a 2 × 4 matrix
    keys = unobserved_pairs(observed, 2, 4, 3, rng)
    assert len(set(keys.tolist())) == 3 and set(keys.tolist()) <= {3, 4, 6}
    with pytest.raises(ValueError, match="only 3 exist"):
        unobserved_pairs(observed, 2, 4, 4, rng)


def test_generated_clicks_load_with_their_categories(generated):
    frame = load_generated_clicks(generated)
    sessions = pd.concat(pd.read_parquet(f) for f in sorted((generated / "sessions").iterdir()))
    clicks = sessions[sessions["event"] == "click"]
    # one row per distinct clicked (user, item) pair; every row is a click
    assert len(frame) == len(clicks.drop_duplicates(["user_id", "item_id"]))
    assert frame["click"].eq(1.0).all()
    assert frame["item"].max() + 1 == clicks["item_id"].nunique()
    # an item's topic is its generator category
    truth = load_ground_truth(generated)
    topics = item_topics(frame)
    first_item = clicks.drop_duplicates(["user_id", "item_id"])["item_id"].drop_duplicates()
    internal = (first_item.to_numpy() - 100_000) // 7
    np.testing.assert_array_equal(topics, truth.categories[internal])
    with pytest.raises(FileNotFoundError, match="recrl generate"):
        load_generated_clicks(generated / "nowhere")


def test_simulator_on_generated_data_separates_clicks(generated):
    frame = load_generated_clicks(generated)
    simulator = fit_simulator(frame, ClickModelConfig(sampled_negatives=1.0, epochs=150))
    assert simulator.click_rate == 1.0  # a click log holds clicks only
    # the click model ranks logged clicks above never-logged pairs (AUC on all pairs; 0.5 is
    # chance — half of this small world's pairs are logged, so the margin is modest: 0.68)
    p = simulator.model.probabilities(torch.arange(simulator.n_users)).numpy()
    logged = np.zeros_like(p, dtype=bool)
    logged[frame["user"], frame["item"]] = True
    ranks = p.ravel().argsort().argsort()
    n_pos, n_neg = logged.sum(), (~logged).sum()
    auc = (ranks[logged.ravel()].sum() - n_pos * (n_pos - 1) / 2) / (n_pos * n_neg)
    assert auc > 0.62
    # the F1-best threshold on all-pairs validation keeps clicks a minority of pairs
    assert 0.0 < simulator.pair_click_rate < 0.5 and simulator.val_f1 > 0.2


def test_bandit_run_on_generated_env(generated):
    config = BanditRunConfig(
        policy="2-s-n-galm-ucb", env="generated", data_path=str(generated), n_users=20,
        slate_size=3, rounds=60, tracking=False,
    )  # fmt: skip
    env = make_environment(config)
    simulator, topics = fitted_simulator("generated", str(generated), 0)
    assert env.n_items == simulator.n_items and len(env.item_topics) == env.n_items
    np.testing.assert_array_equal(env.item_topics, topics)
    result = run_bandit(config, progress=False)
    assert result.rewards.shape == (60,) and ((result.rewards >= 0) & (result.rewards <= 3)).all()
    assert (result.rewards <= result.oracle_rewards + 3).all() and result.ctr.max() <= 1.0
    with pytest.raises(ValueError, match="set data_path"):
        BanditRunConfig(env="generated")
