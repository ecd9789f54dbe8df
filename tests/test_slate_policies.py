"""Slate policies on the simulated user and the cascading-DQN run loop (tiny runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs.user_model_env import UserModelEnv, UserModelEnvConfig
from models.slate.policies import CascadingQPolicy, GreedyUserModelPolicy, RandomSlatePolicy
from models.user_model.checkpoint import LoadedUserModel
from models.user_model.config import UserModelConfig
from models.user_model.data import DisplaySetArrays
from models.user_model.network import UserModel
from pipelines.slate.cdqn_loop import (
    CDQNConfig,
    evaluate_policy,
    item_feature_table,
    train_cdqn,
)

N_ITEMS = 12


def _env(k: int = 2) -> UserModelEnv:
    torch.manual_seed(0)
    features = np.vstack([np.eye(N_ITEMS, dtype=np.float32), np.zeros((1, N_ITEMS), np.float32)])
    config = UserModelConfig(history_len=2, item_embedding_dim=0, utility_hidden=4)
    model = UserModel(features, config)
    with torch.no_grad():  # utility = 4·(item index)/N − 2 + small state terms: a clear order
        first = model.utility_mlp[0]
        first.weight.zero_()
        first.weight[0, -N_ITEMS:] = torch.linspace(0, 4, N_ITEMS)
        first.bias.zero_()
        model.utility_mlp[2].weight.zero_()
        model.utility_mlp[2].weight[0, 0] = 1.0
        model.utility_mlp[2].bias.fill_(-2.0)
    model.eval().requires_grad_(False)
    pad = N_ITEMS
    views = DisplaySetArrays(
        history=np.full((3, 2), pad), shown=np.array([np.arange(N_ITEMS)] * 3),
        click=np.zeros(3, dtype=np.int64), user=np.array([0, 1, 2]), pad_id=pad,
    )  # fmt: skip
    env_config = UserModelEnvConfig(slate_size=k, episode_length=4, max_pool=N_ITEMS)
    return UserModelEnv(LoadedUserModel(model, model, features, {}), views, env_config)


def test_greedy_policy_shows_the_highest_utility_candidates():
    env = _env(k=3)
    obs, _ = env.reset(seed=0)
    slots = GreedyUserModelPolicy(env.model, 3).select(obs)
    assert sorted(obs["candidates"][slots].tolist()) == [9, 10, 11]


def test_greedy_beats_random_on_reward_and_ctr():
    env = _env()
    greedy = evaluate_policy(env, GreedyUserModelPolicy(env.model, 2), episodes=15, seed=1)
    random = evaluate_policy(env, RandomSlatePolicy(2, seed=1), episodes=15, seed=1)
    assert greedy["ctr"] > random["ctr"] and greedy["reward"] > random["reward"]
    assert 0.0 <= random["ctr"] <= 1.0


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine run fastest on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cascading_dqn_trains_and_learns_to_show_high_utility_items(one_torch_thread):
    env = _env()
    logged = []
    config = CDQNConfig(env_steps=400, warmup_steps=80, batch_size=32, hidden=16, lr=5e-3)
    net = train_cdqn(env, config, on_log=lambda step, m: logged.append(m), progress=False)
    assert logged and all(math.isfinite(m["loss/td"]) for m in logged)
    policy = CascadingQPolicy(net, item_feature_table(env))
    learned = evaluate_policy(env, policy, episodes=30, seed=2)
    random = evaluate_policy(env, RandomSlatePolicy(2, seed=2), episodes=30, seed=2)
    assert learned["reward"] > random["reward"]
