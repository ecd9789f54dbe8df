"""Bandit policies as RLlib modules: forward = policy scores, state sync, EnvRunner runs.

Only the last test starts Ray (the whole ``BanditAlgorithm``); the EnvRunner/Learner cycle is
also checked on its parts, which run in-process without a runtime."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from ray.rllib.core import COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from recrl.envs.synthetic_bandit import SyntheticBanditConfig, SyntheticBanditEnv
from recrl.models.bandits import POLICIES
from recrl.pipelines.bandit.algorithm import algorithm_config, episode_rounds
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.job import run_bandit
from recrl.pipelines.bandit.rl_module import (
    ACQUISITION_SCORES,
    BanditRLModule,
    bandit_module_config,
)
from recrl.pipelines.settings import apply_settings


def build_module(policy: str, n_items: int = 3, **settings) -> BanditRLModule:
    run = apply_settings(
        BanditRunConfig(policy=policy, env="syn-s", slate_size=2),
        {"embedding_dim": 2, **settings}, rest_to="policy_settings",
    )  # fmt: skip
    env = SyntheticBanditEnv(SyntheticBanditConfig(slate_size=2))
    topics = np.arange(n_items) % 2  # two topics, for the two-stage policies
    spec = RLModuleSpec(
        module_class=BanditRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=bandit_module_config(run, n_users=4, n_items=n_items, item_topics=topics),
    )
    return spec.build()


def batch(user: int, history: list[int], n_items: int = 3, length: int = 60) -> dict:
    padded = np.full(length, n_items)
    if history:
        padded[-len(history) :] = history
    obs = {
        "user": torch.tensor([user]),
        "history": torch.as_tensor(padded).unsqueeze(0),
        "history_len": torch.tensor([len(history)]),
    }
    return {Columns.OBS: obs}


def set_embeddings(module: BanditRLModule, items, users) -> None:
    state = module.get_state()
    state["representation/item_embeddings"] = np.asarray(items, dtype=np.float32)
    state["representation/user_embeddings"] = np.asarray(users, dtype=np.float32)
    module.set_state(state)


def test_ren_module_forward_by_hand_on_three_items():
    module = build_module("ren", lambda_d=0.3)
    # μ = (1,0), (0,1), (1,1); θ_user2 = (2,1); impressions 1, 0, 3; no history: A = I
    set_embeddings(module, [[1, 0], [0, 1], [1, 1]], [[0, 0], [0, 0], [2, 1], [0, 0]])
    state = module.get_state()
    state["policy/impressions"] = np.array([1, 0, 3])
    module.set_state(state)
    lambda_u = math.sqrt(10) * 0.3
    expected = [
        2 + 0.3 * 1 + lambda_u / math.sqrt(2),
        1 + 0.3 * 1 + lambda_u / 1,
        3 + 0.3 * math.sqrt(2) + lambda_u / 2,
    ]
    out = module.forward_exploration(batch(2, []))
    torch.testing.assert_close(out[ACQUISITION_SCORES], torch.tensor([expected]))
    # first pick: item 2 (best); it joins D: A = I + (1,1)(1,1)ᵀ, A⁻¹ = I − 11ᵀ/3, so the
    # forms of items 0 and 1 fall to 2/3: 2 + 0.3·√(2/3) + λ_u/√2 = 2.916 beats 2.194
    assert out[Columns.ACTIONS].tolist() == [[2, 0]]
    torch.testing.assert_close(
        module.forward_train(batch(2, []))[ACQUISITION_SCORES], out[ACQUISITION_SCORES]
    )


# the dropout policies' scores come from Monte-Carlo passes drawn inside each forward pass
@pytest.mark.parametrize("name", sorted(set(POLICIES) - {"n-dropout-ucb", "2-n-dropout-ucb"}))
def test_module_forward_equals_policy_scores(name):
    module = build_module(name)
    set_embeddings(module, [[1, 0], [0, 1], [1, 1]], [[0.5, -1], [0, 0], [2, 1], [0, 0]])
    agent = module.agent
    observation = {"user": 2, "history": np.array([0] + [3] * 59), "history_len": 1}
    # Random's scores are draws: compare with a copy of the same generator (2-Random's item
    # stage scores the items; its topic stage only orders the groups, which hold all 3 items)
    scorer = agent.policy.item_policy if name == "2-random" else agent.policy
    if name in ("random", "2-random"):
        scorer.generator.manual_seed(7)
        expected = agent.policy.scores(agent.context(observation))
        scorer.generator.manual_seed(7)
    else:
        expected = agent.policy.scores(agent.context(observation))
    out = module.forward_exploration(batch(2, [0]))
    torch.testing.assert_close(out[ACQUISITION_SCORES], expected)
    slate = out[Columns.ACTIONS][0].tolist()
    assert len(set(slate)) == 2 and all(0 <= item < 3 for item in slate)


def test_state_sync_makes_a_copy_act_like_the_learner():
    learner_side, runner_side = build_module("s-n-galm-ucb"), build_module("s-n-galm-ucb")
    agent = learner_side.agent
    for t in range(6):  # a few rounds of feedback on the "learner" copy only
        observation = {"user": t % 4, "history": np.full(60, 3), "history_len": 0}
        agent.learn(observation, torch.tensor([t % 3, (t + 1) % 3]), torch.tensor([1.0, 0.0]),
                    torch.tensor([1.0, 0.0]))  # fmt: skip
    before = runner_side.forward_train(batch(1, []))[ACQUISITION_SCORES]
    after_learning = learner_side.forward_train(batch(1, []))[ACQUISITION_SCORES]
    assert not torch.allclose(before, after_learning)
    runner_side.set_state(learner_side.get_state())
    torch.testing.assert_close(runner_side.forward_train(batch(1, []))[ACQUISITION_SCORES],
                               after_learning)  # fmt: skip
    assert runner_side.agent.rounds == 6


def run_components(config: BanditRunConfig) -> np.ndarray:
    """``BanditAlgorithm.training_step``'s cycle on its parts, without a Ray runtime: a
    local `SingleAgentEnvRunner` samples one round, the `BanditLearner` learns it, and the
    Learner's module state is copied into the EnvRunner (what ``sync_weights`` does)."""
    algo_config = algorithm_config(config)
    runner = SingleAgentEnvRunner(config=algo_config)
    spaces = (runner.env.single_observation_space, runner.env.single_action_space)
    learner = algo_config.build_learner(env=None, spaces={DEFAULT_MODULE_ID: spaces})
    learner.build()
    rewards = []
    try:
        for _ in range(config.rounds):
            rounds = [row for e in runner.sample(num_timesteps=1) for row in episode_rounds(e)]
            assert learner.learn_rounds(rounds) == len(rewards) + 1
            runner.set_state(learner.get_state(components=COMPONENT_RL_MODULE, inference_only=True))
            rewards.extend(row["reward"] for row in rounds)
    finally:
        runner.stop()
    return np.array(rewards)


@pytest.mark.parametrize("policy", ["ren", "s-n-galm-ucb"])
def test_env_runner_and_learner_pick_the_loops_slates(policy):
    config = BanditRunConfig(policy=policy, env="syn-s", rounds=40, tracking=False)
    loop = run_bandit(config, progress=False)
    # same seed, sequential protocol: same users, same slates, so the same rewards
    np.testing.assert_array_equal(run_components(config), loop.rewards)


def test_rllib_run_picks_the_loops_slates(ray_session):
    config = BanditRunConfig(policy="ren", env="syn-s", rounds=40, tracking=False, log_interval=10)
    loop = run_bandit(config, progress=False)
    rllib = run_bandit(dataclasses.replace(config, backend="rllib"), progress=False)
    # same seed, sequential protocol: same users, same slates, so the same rewards
    np.testing.assert_array_equal(rllib.rewards, loop.rewards)
    np.testing.assert_array_equal(rllib.oracle_rewards, loop.oracle_rewards)
    batched = run_bandit(
        dataclasses.replace(config, backend="rllib", rounds=200, rounds_per_update=5),
        progress=False,
    )
    env = SyntheticBanditEnv(SyntheticBanditConfig())
    random_reward = np.mean([env.random_reward(u) for u in range(env.n_users)])
    assert batched.rewards[-100:].mean() > random_reward + 0.05
