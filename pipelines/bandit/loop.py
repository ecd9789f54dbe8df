"""The bandit run loop: simulator ↔ representation model ↔ policy, metrics to MLflow.

Per round: the simulator names a user; the agent (``agent.py``: a representation — the
latent-factor model or the SASRec encoder — and a policy) picks a slate; the simulator
answers; the agent learns (the policy every round — the GLM refits of the two-stage paper —,
the representation every ``refit_interval`` rounds). ``bandit_algorithm.py`` runs the same
agent under RLlib.

Metrics (namespace ``bandit/``): ``reward`` (mean over the last ``log_interval`` rounds),
``reward_window`` (rolling mean over ``window`` rounds, REN Fig. 1), ``ctr`` (clicked share
of shown items), ``cumulative_reward``, ``cumulative_regret`` (against the simulator's oracle)
and ``oracle_reward``.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from recrl.envs.synthetic_bandit import SyntheticBanditConfig, SyntheticBanditEnv
from recrl.pipelines.bandit.agent import BanditAgent
from recrl.pipelines.bandit.config import USER_CHOICE_ENVIRONMENTS, BanditRunConfig
from recrl.pipelines.tracking import NullTracker, Tracker
from tqdm import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BanditRunResult:
    """Per-round series of one run (numpy, length ``rounds``) and its summary."""

    config: BanditRunConfig
    rewards: np.ndarray
    """Reward of each round."""
    oracle_rewards: np.ndarray
    """Reward the oracle would have earned for the same user."""
    ctr: np.ndarray
    """Clicked share of the shown items, per round."""
    seconds: float
    """Wall time of the loop."""

    @property
    def cumulative_regret(self) -> np.ndarray:
        return np.cumsum(self.oracle_rewards - self.rewards)

    def window_mean(self, values: np.ndarray | None = None) -> np.ndarray:
        """Rolling mean over ``config.window`` rounds (shorter at the start)."""
        values = self.rewards if values is None else values
        cumulative = np.concatenate([[0.0], np.cumsum(values)])
        ends = np.arange(1, len(values) + 1)
        starts = np.maximum(ends - self.config.window, 0)
        return (cumulative[ends] - cumulative[starts]) / (ends - starts)

    @property
    def final_window_reward(self) -> float:
        """Mean reward of the last ``window`` rounds."""
        return float(self.rewards[-self.config.window :].mean())

    @property
    def final_window_oracle(self) -> float:
        return float(self.oracle_rewards[-self.config.window :].mean())


def make_environment(config: BanditRunConfig):
    """The simulator named by ``config.env`` (a fitted one is fitted once per data path and
    seed in this process, ~10 s on an idle machine, and reused by later runs)."""
    if config.env.lower() in USER_CHOICE_ENVIRONMENTS:
        from recrl.envs.user_choice_env import UserChoiceConfig, UserChoiceEnv

        simulator, topics = fitted_simulator(config.env.lower(), config.data_path, config.seed)
        panel = UserChoiceConfig(
            n_users=config.n_users, slate_size=config.slate_size, seed=config.seed
        )
        return UserChoiceEnv(simulator, panel, item_topics=topics)
    env_config = SyntheticBanditConfig.named(
        config.env, slate_size=config.slate_size, seed=config.seed
    )
    return SyntheticBanditEnv(env_config)


@functools.lru_cache(maxsize=4)
def fitted_simulator(env: str, data_path: str, seed: int):
    """(FittedSimulator, item topics [I]) of ``env`` on ``data_path``. Cached: the simulator
    is immutable, and every policy of a benchmark must face the same one for a seed."""
    from recrl.envs.user_choice import (
        ClickModelConfig,
        fit_simulator,
        item_topics,
        load_generated_clicks,
        load_movielens,
    )

    if env == "generated":
        # a click log has no shown-but-not-clicked rows: negatives are sampled (1 per click)
        logged = load_generated_clicks(data_path)
        click_config = ClickModelConfig(seed=seed, sampled_negatives=1.0)
    else:
        logged = load_movielens(data_path)
        click_config = ClickModelConfig(seed=seed)
    return fit_simulator(logged, click_config), item_topics(logged)


def run_loop(
    config: BanditRunConfig, tracker: Tracker | None = None, *, progress: bool = True
) -> BanditRunResult:
    """The ``loop`` back end of `recrl.pipelines.bandit.job.run_bandit`: policy and simulator
    stepped in this process, no Ray runtime."""
    torch.manual_seed(config.seed)
    env = make_environment(config)
    observation, _ = env.reset(seed=config.seed)
    oracle = config.policy.lower() == "oracle"
    agent = None
    if not oracle:
        agent = BanditAgent(config, env.n_users, env.n_items, getattr(env, "item_topics", None))
    tracker = tracker or NullTracker()
    rewards = np.zeros(config.rounds)
    oracle_rewards = np.zeros(config.rounds)
    ctr = np.zeros(config.rounds)
    start = time.perf_counter()
    rounds = tqdm(
        range(config.rounds), desc=f"{config.policy} on {config.env}", disable=not progress,
        leave=False,
    )  # fmt: skip
    for t in rounds:
        user = int(observation["user"])
        if oracle:
            slate = torch.as_tensor(env.oracle_slate(user)).unsqueeze(0)
        else:
            context, _, slate = agent.act(observation, config.slate_size)
        shown_to = observation
        observation, reward, _, _, info = env.step(slate[0].numpy())
        if not oracle:
            item_rewards = torch.as_tensor(info["item_rewards"], dtype=torch.float32)
            agent.learn(shown_to, slate[0], item_rewards, torch.as_tensor(info["clicks"]), context)
        rewards[t], oracle_rewards[t] = reward, info["oracle_reward"]
        ctr[t] = float(np.mean(info["clicks"]))
        if (t + 1) % config.log_interval == 0 or t + 1 == config.rounds:
            log_round_metrics(tracker, config, t, rewards, oracle_rewards, ctr)
    result = BanditRunResult(config, rewards, oracle_rewards, ctr, time.perf_counter() - start)
    logger.info(
        "%s on %s: final-window reward %.3f (oracle %.3f), cumulative regret %.1f, %.1fs",
        config.policy, config.env, result.final_window_reward, result.final_window_oracle,
        result.cumulative_regret[-1], result.seconds,
    )  # fmt: skip
    return result


def log_round_metrics(tracker, config, t, rewards, oracle_rewards, ctr) -> None:
    """The ``bandit/`` metrics of the module docstring after round ``t`` (0-based)."""
    done = t + 1
    recent = slice(max(done - config.log_interval, 0), done)
    window = slice(max(done - config.window, 0), done)
    tracker.log_metrics(
        {
            "bandit/reward": rewards[recent].mean(),
            "bandit/reward_window": rewards[window].mean(),
            "bandit/ctr": ctr[recent].mean(),
            "bandit/cumulative_reward": rewards[:done].sum(),
            "bandit/cumulative_regret": (oracle_rewards[:done] - rewards[:done]).sum(),
            "bandit/oracle_reward": oracle_rewards[recent].mean(),
        },
        step=done,
    )
