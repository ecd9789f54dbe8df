"""The REN synthetic environments SYN-S/M/L: recipe, rewards, user choice, validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from recrl.envs.synthetic_bandit import SyntheticBanditConfig, SyntheticBanditEnv, syn_latents


@pytest.mark.parametrize(("name", "n_items"), [("syn-s", 28), ("syn-m", 280), ("syn-l", 1400)])
def test_recipe_counts_norms_and_entries(name, n_items):
    env = SyntheticBanditEnv(SyntheticBanditConfig.named(name))
    users, items = env.user_latents, env.item_latents
    assert users.shape == (15, 8) and items.shape == (n_items, 8)
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0)
    assert ((users > 0).sum(1) == 3).all() and np.allclose(users[users > 0], 1 / math.sqrt(3))
    assert ((items > 0).sum(1) == 2).all() and np.allclose(items[items > 0], 1 / math.sqrt(2))
    # 28 unique patterns = every pair of the 8 dimensions, each repeated n_items / 28 times
    patterns = {tuple(np.flatnonzero(row)) for row in items}
    assert patterns == set(itertools.combinations(range(8), 2))
    _, counts = np.unique(items, axis=0, return_counts=True)
    assert (counts == n_items // 28).all()
    np.testing.assert_allclose(env.rewards, users @ items.T)


def test_rewards_take_three_values_and_oracle_is_two_shared_entries():
    env = SyntheticBanditEnv()
    # θ*ᵀx* = (shared entries) / √6 with 0, 1 or 2 shared entries
    values = np.unique(np.round(env.rewards, 12))
    np.testing.assert_allclose(values, [0.0, 1 / math.sqrt(6), 2 / math.sqrt(6)])
    for user in range(15):
        assert env.oracle_reward(user) == pytest.approx(2 / math.sqrt(6))
        assert len(env.oracle_slate(user)) == 4
        assert env.rewards[user, env.oracle_slate(user)[0]] == pytest.approx(2 / math.sqrt(6))


def test_random_reference_equals_enumeration():
    env = SyntheticBanditEnv(SyntheticBanditConfig(slate_size=3))
    user = 4
    best = [env.rewards[user, list(s)].max() for s in itertools.combinations(range(28), 3)]
    assert env.random_reward(user) == pytest.approx(np.mean(best))


def test_user_takes_the_best_slate_item_and_history_is_capped():
    env = SyntheticBanditEnv(SyntheticBanditConfig(history_len=5, max_rounds=40))
    observation, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(40):
        user = observation["user"]
        slate = rng.choice(env.n_items, size=4, replace=False)
        observation, reward, terminated, truncated, info = env.step(slate)
        assert info["user"] == user and reward == pytest.approx(env.rewards[user, slate].max())
        assert info["item"] == slate[info["choice"]] and info["clicks"].sum() == 1.0
        assert info["regret"] == pytest.approx(env.oracle_reward(user) - reward)
        assert not terminated and truncated == (step == 39)
        assert 0 <= observation["history_len"] <= 5
        real = observation["history"][5 - observation["history_len"] :]
        assert (observation["history"][: 5 - observation["history_len"]] == env.pad_id).all()
        assert (real < env.n_items).all()


def test_world_is_seeded():
    a, _ = syn_latents(SyntheticBanditConfig(seed=1))
    b, _ = syn_latents(SyntheticBanditConfig(seed=1))
    c, _ = syn_latents(SyntheticBanditConfig(seed=2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("slate", "message"),
    [
        ([0, 1, 2, 28], "item id 28 is out of range"),
        ([0, -1, 2, 3], "item id -1 is out of range"),
        ([5, 1, 5, 3], "item id 5 appears more than once"),
        ([0, 1, 2], "exactly 4 item ids"),
        ([0.0, 1.0, 2.0, 3.0], "must be integers"),
    ],
)
def test_invalid_slates_are_rejected_with_the_offending_value(slate, message):
    env = SyntheticBanditEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(slate)


def test_unknown_environment_name():
    with pytest.raises(ValueError, match="syn-xl"):
        SyntheticBanditConfig.named("syn-xl")
