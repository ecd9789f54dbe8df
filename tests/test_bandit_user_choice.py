"""The user-choice simulator fitted on logs (design.md §6) and its bandit environment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recrl.envs.user_choice import (
    ClickModel,
    ClickModelConfig,
    FittedSimulator,
    best_f1_threshold,
    fit_click_model,
    fit_simulator,
    ips_weights,
    load_movielens,
)
from recrl.envs.user_choice_env import UserChoiceConfig, UserChoiceEnv

from tests.conftest import shared_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def test_best_f1_threshold_by_hand():
    # cuts after 1, 2, 3, 4 items: F1 = 2/3, 2/4, 4/5, 4/6 -> threshold 0.7
    threshold, f1 = best_f1_threshold(np.array([0.9, 0.8, 0.7, 0.3]), np.array([1, 0, 1, 0]))
    assert threshold == 0.7 and f1 == pytest.approx(0.8)
    # a cut never splits equal scores: {0.5, 0.5} -> 2·1/(2+1); all -> 2·1/(3+1)
    threshold, f1 = best_f1_threshold(np.array([0.5, 0.2, 0.5]), np.array([0, 0, 1]))
    assert threshold == 0.5 and f1 == pytest.approx(2 / 3)


def test_ips_weights_by_hand():
    # counts (3, 1): propensity 1 for item 0, 1/3 for item 1 -> weights (1, 1, 1, 3) / 1.5
    weights = ips_weights(np.array([0, 0, 0, 1]), 2, power=1.0, max_weight=50.0)
    np.testing.assert_allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2.0])
    clipped = ips_weights(np.array([0, 0, 0, 1]), 2, power=1.0, max_weight=2.0)
    np.testing.assert_allclose(clipped, np.array([1, 1, 1, 2]) / 1.25)


def test_click_model_learns_two_taste_groups():
    # users 0-9 click items 0-4 only, users 10-19 items 5-9 only; every pair observed
    users, items = np.meshgrid(np.arange(20), np.arange(10), indexing="ij")
    users, items = users.ravel(), items.ravel()
    clicks = ((users < 10) == (items < 5)).astype(np.float32)
    config = ClickModelConfig(dim=4, epochs=150, l2=0.0, lr=0.05)
    model = fit_click_model(users, items, clicks, np.ones_like(clicks), 20, 10, config)
    p = model.probabilities(torch.arange(20)).numpy()
    assert p[:10, :5].min() > 0.8 and p[:10, 5:].max() < 0.2 and p[10:, 5:].min() > 0.8


def handmade_simulator() -> FittedSimulator:
    # 3 users, 4 items; logits = user_factor · item_factor; threshold 0.5 -> logit >= 0
    model = ClickModel(
        user_factors=torch.tensor([[1.0], [-1.0], [0.0]]),
        item_factors=torch.tensor([[2.0], [1.0], [-1.0], [-3.0]]),
        user_bias=torch.zeros(3), item_bias=torch.zeros(4), bias=torch.tensor(-0.5),
    )  # fmt: skip
    return FittedSimulator(model, 0.5, 1.0, 1.0, n_users=3, n_items=4, click_rate=0.5)


def test_environment_clicks_oracle_and_validation():
    config = UserChoiceConfig(n_users=3, slate_size=2, flip_probability=0.0)
    env = UserChoiceEnv(handmade_simulator(), config)
    # user 0 clicks items 0, 1; user 1 items 2, 3; user 2 none (logit -0.5)
    assert env.clicks.tolist() == [
        [True, True, False, False], [False, False, True, True], [False] * 4,
    ]  # fmt: skip
    assert env.oracle_reward(0) == 2.0 and env.oracle_reward(2) == 0.0
    observation, _ = env.reset(seed=0)
    for _ in range(20):
        user = observation["user"]
        observation, reward, _, _, info = env.step([0, 3])
        assert reward == env.clicks[user, [0, 3]].sum() and info["regret"] >= 0
    with pytest.raises(ValueError, match="item id 4 is out of range"):
        env.step([0, 4])
    with pytest.raises(ValueError, match="item id 1 appears more than once"):
        env.step([1, 1])


def test_flips_happen_at_the_configured_rate():
    env = UserChoiceEnv(handmade_simulator(), UserChoiceConfig(n_users=3, slate_size=4))
    observation, _ = env.reset(seed=1)
    flipped = total = 0
    for _ in range(2000):
        user = observation["user"]
        observation, _, _, _, info = env.step([0, 1, 2, 3])
        flipped += int((info["clicks"] != env.clicks[user]).sum())
        total += 4
    assert flipped / total == pytest.approx(0.1, abs=0.015)
    assert env.oracle_reward(0) == pytest.approx(2 * 0.9 + 2 * 0.1)


@pytest.mark.shared_data
def test_movielens_simulator_fits_and_runs():
    ratings = load_movielens(shared_dataset("movielens-100k"))
    assert len(ratings) == 100_000
    assert ratings["user"].nunique() == 943 and ratings["item"].nunique() == 1682
    simulator = fit_simulator(ratings, ClickModelConfig(epochs=20))
    assert simulator.click_rate == pytest.approx(0.5537, abs=1e-3)  # rating >= 4
    # validation pairs come from the whole 943 × 1,682 matrix, unlogged ones as non-clicks:
    # the F1-best cut beats calling everything a click (F1 = 2c / (1 + c), c = click share)
    share = simulator.click_rate * 100_000 / (943 * 1682)  # ≈ 0.035
    everything = 2 * share / (1 + share)
    assert simulator.val_f1 >= everything + 0.05 and 0.0 < simulator.threshold < 1.0
    # positives stay sparse among all pairs (two-stage paper §4), unlike the 55 % logged
    assert 0.0 < simulator.pair_click_rate < 0.25
    env = UserChoiceEnv(simulator, UserChoiceConfig(n_users=100, slate_size=5))
    observation, _ = env.reset(seed=0)
    _, reward, _, _, info = env.step(env.oracle_slate(observation["user"]))
    assert 0 <= reward <= 5 and len(info["clicks"]) == 5
