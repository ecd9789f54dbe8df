"""Training a slate Q-network policy with RLlib against the simulated user.

`train_slate_q` registers the training environment (wrapped for ±1 rewards under RWD1),
builds the DQN-based algorithm of `slate_q_algorithm_config` and calls ``algo.train()``
until `CDQNConfig.env_steps` env steps are sampled, reporting the learner's diagnostics
(``loss/td``, ``q/mean``, ``q/target_mean``, ``q/cascade_gap``) per iteration. The trained
policy is the EnvRunner's `SlateQRLModule` (weights synced from the learner after every
update), wrapped as a `ModuleSlatePolicy` for `evaluate_policy`.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
)
from ray.tune.registry import register_env
from recrl.envs.user_model_env import UserModelEnv
from recrl.models.user_model.network import UserModel
from recrl.pipelines.slate.config import CDQNConfig, slate_q_algorithm_config
from recrl.pipelines.slate.evaluation import item_feature_table
from recrl.pipelines.slate.rl_module import SlateQRLModule
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

ITERATION_STEPS = 100
"""Env steps per ``algo.train()``: amortises RLlib's per-iteration bookkeeping, and is the
granularity of the reported metrics."""


class ClickRewardWrapper(gym.Wrapper):
    """GAN-RWD1's training reward: +1 when the user clicks, −1 when not (the environment's
    learned reward stays in ``info["learned_reward"]``)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "learned_reward": reward}
        return obs, (1.0 if info["clicked_slot"] >= 0 else -1.0), terminated, truncated, info


class ModuleSlatePolicy:
    """``select(obs)`` with an RLModule's greedy (inference) forward, one observation.

    ``state_model``: the user model the policy was trained with. The state in an
    observation is the environment's own user model's (the test model in evaluation), a
    representation the Q-networks never saw; the policy reads the history instead and
    encodes it with its training model, as `GreedyUserModelPolicy` does.
    """

    def __init__(self, module: SlateQRLModule, state_model: UserModel | None = None) -> None:
        self.module, self.state_model = module, state_model

    @torch.no_grad()
    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = {key: torch.as_tensor(value)[None] for key, value in obs.items()}
        if self.state_model is not None:
            batch["state"] = self.state_model.encode(batch["history"])
        actions = self.module.forward_inference({Columns.OBS: batch})[Columns.ACTIONS]
        return actions[0].numpy().astype(np.int64)


def train_slate_q(
    make_env: Callable[[], UserModelEnv],
    config: CDQNConfig,
    *,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    eval_interval: int = 0,
    on_eval: Callable[[int, SlateQRLModule], None] | None = None,
) -> SlateQRLModule:
    """Train on environments from ``make_env`` (the training users' simulator; it is pickled
    to the EnvRunner) and return a copy of the trained module (greedy by `forward_inference`).

    With ``eval_interval`` > 0, ``on_eval(env_steps, module)`` gets an eval-mode copy of the
    module each time another ``eval_interval`` env steps have been sampled, before the end
    (the caller evaluates the returned module at the end)."""
    probe = make_env()
    features = item_feature_table(probe.model).numpy()
    obs, _ = probe.reset(seed=config.seed)
    k = probe.config.slate_size
    name = f"recrl-slate-{uuid.uuid4().hex[:12]}"
    wrap = ClickRewardWrapper if config.reward == "pm1" else (lambda env: env)
    register_env(name, lambda _env_config: wrap(make_env()))
    algo_config = slate_q_algorithm_config(config, name, features, len(obs["state"]), k)
    algo_config.reporting(min_sample_timesteps_per_iteration=ITERATION_STEPS)
    torch.manual_seed(config.seed)
    algo = algo_config.build_algo()
    try:
        sampled, next_eval = 0, eval_interval
        with tqdm(total=config.env_steps, desc=f"slate Q ({config.q_form})",
                  disable=not progress, leave=False) as bar:  # fmt: skip
            while sampled < config.env_steps:
                result = algo.train()
                now = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
                bar.update(now - sampled)
                sampled = now
                stats = result.get(LEARNER_RESULTS, {}).get(DEFAULT_MODULE_ID, {})
                metrics = {key: float(value) for key, value in stats.items() if "/" in key}
                if metrics and on_log is not None:
                    on_log(sampled, metrics)
                # at the first iteration past each multiple of eval_interval; the end is the
                # caller's evaluation
                if on_eval is not None and 0 < next_eval <= sampled < config.env_steps:
                    while next_eval <= sampled:
                        next_eval += eval_interval
                    on_eval(sampled, copy.deepcopy(algo.get_module(DEFAULT_MODULE_ID)).eval())
        module = copy.deepcopy(algo.get_module(DEFAULT_MODULE_ID))
    finally:
        algo.stop()
    return module.eval()
