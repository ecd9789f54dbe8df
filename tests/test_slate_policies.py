"""Greedy and random slate policies on the simulated user; the Table-3 evaluation loop."""

from __future__ import annotations

import numpy as np
import torch
from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.slate.policies import GreedyUserModelPolicy, RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel
from recrl.pipelines.slate.evaluation import evaluate_policy

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


def test_evaluation_over_all_users_runs_one_full_episode_each():
    env = _env()
    steps = []

    class Counting(RandomSlatePolicy):
        def select(self, obs):
            steps.append(obs["history"].copy())
            return super().select(obs)

    result = evaluate_policy(env, Counting(2, seed=0), episodes=None, seed=0)
    assert result["episodes"] == 3  # users 0, 1, 2
    assert len(steps) == 3 * 4  # episode_length 4, the 12-item pool never runs short
    assert 0.0 <= result["ctr"] <= 1.0
