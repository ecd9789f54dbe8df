"""A bandit run on RLlib (new API stack): EnvRunners act on the simulators, a Learner learns.

One cycle of ``BanditAlgorithm.training_step`` (``updates_per_iteration`` cycles per
``algo.train()``):

1. **sample** ``rounds_per_update`` rounds from the EnvRunners. Each EnvRunner steps its own
   copy of the simulator (``bandit_env``: SYN-S/M/L, or the user-choice simulator on
   MovieLens or a generated dataset) with its copy of `BanditRLModule`, whose exploration
   forward scores the catalogue and picks the slate;
2. **learn**: the Learner folds the rounds into its module's agent, in order
   (``BanditLearner.learn_rounds``): the policy's GLM parts and Sherman–Morrison statistics
   every round, the representation every ``refit_interval`` rounds;
3. **sync**: the Learner's module state (the statistics, the coefficients, the
   representation's tables — ``BanditAgent.get_state``) is copied into every EnvRunner's
   module (``EnvRunnerGroup.sync_weights``), so the next slates are picked with it.

Consistency: the statistics live with the Learner, and EnvRunners only read copies that are
overwritten after every update. With ``rounds_per_update = 1`` and one local EnvRunner
(``num_env_runners = 0``) this is exactly the sequential protocol of ``loop.py``: same env
seed (RLlib seeds a local EnvRunner's env with ``seed + 0``), same model, same slates.
Batched updates (``rounds_per_update = R > 1``, or remote EnvRunners, whose rounds are
sampled in parallel) pick R slates with the same statistics and learn from all R at once —
delayed feedback, the usual batched-bandit trade of a little regret for throughput. Remote
EnvRunners each simulate their own copy of the panel (same users and click model, their own
round draws and histories).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.tune.registry import register_env
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.learner import BanditLearner
from recrl.pipelines.bandit.loop import BanditRunResult, log_round_metrics, make_environment
from recrl.pipelines.bandit.rl_module import BanditRLModule, bandit_module_config
from recrl.pipelines.tracking import NullTracker, Tracker

logger = logging.getLogger(__name__)


ENV_NAME = "recrl-bandit"
"""Name under which `bandit_env` is registered with RLlib (``algorithm_config`` does it)."""


def bandit_env(env_config: dict[str, Any]) -> gym.Env:
    """RLlib env creator: the simulator of ``env_config["run"]`` (a ``BanditRunConfig``)."""
    return make_environment(env_config["run"])


class BanditAlgorithmConfig(AlgorithmConfig):
    """RLlib settings of `BanditAlgorithm`; build it with `algorithm_config`."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or BanditAlgorithm)
        self.rounds_per_update: int = 1
        """Rounds sampled (over all EnvRunners) between two Learner updates."""
        self.updates_per_iteration: int = 50
        """Sample → learn → sync cycles per ``algo.train()`` (amortises its fixed cost)."""

    def training(
        self,
        *,
        rounds_per_update: int = NotProvided,
        updates_per_iteration: int = NotProvided,
        **kwargs: Any,
    ):
        super().training(**kwargs)
        if rounds_per_update is not NotProvided:
            self.rounds_per_update = rounds_per_update
        if updates_per_iteration is not NotProvided:
            self.updates_per_iteration = updates_per_iteration
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=BanditRLModule)

    def get_default_learner_class(self) -> type[BanditLearner]:
        return BanditLearner

    def validate(self) -> None:
        super().validate()
        if self.rounds_per_update < 1 or self.updates_per_iteration < 1:
            self._value_error(
                "Set `config.training(rounds_per_update=R, updates_per_iteration=N)` with "
                f"R, N >= 1 (got {self.rounds_per_update}, {self.updates_per_iteration})."
            )
        if self.num_envs_per_env_runner != 1:
            self._value_error(
                "Bandit EnvRunners step one simulator each: set "
                "`config.env_runners(num_envs_per_env_runner=1)`."
            )


class BanditAlgorithm(Algorithm):
    """Online bandit learning; see the module docstring. After each ``train()``,
    ``round_log`` holds one ``(reward, oracle_reward, ctr)`` row per round it ran."""

    @classmethod
    def get_default_config(cls) -> BanditAlgorithmConfig:
        return BanditAlgorithmConfig()

    def training_step(self) -> None:
        self.round_log: list[tuple[float, float, float]] = []
        config = self.config
        for _ in range(config.updates_per_iteration):
            episodes = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                max_env_steps=config.rounds_per_update,
                concat=True,
                _uses_new_env_runners=True,
            )
            rounds = [row for episode in episodes for row in episode_rounds(episode)]
            self.learner_group.foreach_learner(lambda learner, r=rounds: learner.learn_rounds(r))
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group, inference_only=True
            )
            for row in rounds:
                self.round_log.append(
                    (row["reward"], row["oracle_reward"], float(np.mean(row["clicks"])))
                )
        rewards = [row[0] for row in self.round_log]
        self.metrics.log_value(
            NUM_ENV_STEPS_SAMPLED_LIFETIME, len(self.round_log), reduce="lifetime_sum"
        )
        self.metrics.log_value("bandit/reward", float(np.mean(rewards)), window=1)


def episode_rounds(episode) -> list[dict[str, Any]]:
    """The rounds of one episode chunk: observation before the step, slate, reward, and the
    env's ``item_rewards``, ``clicks`` and ``oracle_reward`` (infos are aligned with the
    observations: entry ``t + 1`` is what step ``t`` returned)."""
    out = []
    for t in range(len(episode)):
        info = episode.get_infos(t + 1)
        out.append(
            {
                "observation": episode.get_observations(t),
                "slate": np.asarray(episode.get_actions(t)),
                "reward": float(episode.get_rewards(t)),
                "item_rewards": np.asarray(info["item_rewards"]),
                "clicks": np.asarray(info["clicks"]),
                "oracle_reward": float(info["oracle_reward"]),
            }
        )
    return out


def algorithm_config(config: BanditRunConfig) -> BanditAlgorithmConfig:
    """The `BanditAlgorithmConfig` of one run (``config.backend`` is not read here)."""
    if config.policy.lower() == "oracle":
        raise ValueError(
            "the oracle reads the simulator's ground truth and is no RLModule: run it with "
            "the loop backend (recrl bandit --backend loop --policy oracle)."
        )
    env = make_environment(config)  # spaces and sizes; a fitted simulator is cached
    module_config = bandit_module_config(
        config, env.n_users, env.n_items, getattr(env, "item_topics", None)
    )
    runners = config.num_env_runners
    register_env(ENV_NAME, bandit_env)
    return (
        BanditAlgorithmConfig()
        .environment(
            ENV_NAME,
            env_config={"run": config},
            observation_space=env.observation_space,
            action_space=env.action_space,
            disable_env_checking=True,
        )
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=1,
            rollout_fragment_length=math.ceil(config.rounds_per_update / max(1, runners)),
            # the simulators never end an episode; RLlib must not wait for one
            batch_mode="truncate_episodes",
        )
        .learners(num_learners=0)
        .rl_module(model_config=module_config)
        .training(
            rounds_per_update=config.rounds_per_update,
            updates_per_iteration=min(config.log_interval, config.rounds),
            train_batch_size_per_learner=config.rounds_per_update,
        )
        .debugging(seed=config.seed)
        .reporting(metrics_num_episodes_for_smoothing=1)
    )


def run_bandit_rllib(
    config: BanditRunConfig, tracker: Tracker | None = None, *, progress: bool = True
) -> BanditRunResult:
    """``config.rounds`` rounds on RLlib; same result and metrics as ``loop.run_loop``
    (needs a Ray runtime: ``recrl.pipelines.ray_runtime.ensure_ray``)."""
    from tqdm import tqdm

    tracker = tracker or NullTracker()
    algo = algorithm_config(config).build_algo()
    rewards = np.zeros(config.rounds)
    oracle_rewards = np.zeros(config.rounds)
    ctr = np.zeros(config.rounds)
    done = 0
    start = time.perf_counter()
    bar = tqdm(total=config.rounds, desc=f"{config.policy} on {config.env} (rllib)",
               disable=not progress, leave=False)  # fmt: skip
    try:
        while done < config.rounds:
            algo.train()
            for reward, oracle, rate in algo.round_log[: config.rounds - done]:
                rewards[done], oracle_rewards[done], ctr[done] = reward, oracle, rate
                done += 1
                if done % config.log_interval == 0 or done == config.rounds:
                    log_round_metrics(tracker, config, done - 1, rewards, oracle_rewards, ctr)
            bar.update(len(algo.round_log))
    finally:
        bar.close()
        algo.stop()
    result = BanditRunResult(config, rewards, oracle_rewards, ctr, time.perf_counter() - start)
    logger.info(
        "%s on %s (rllib): final-window reward %.3f (oracle %.3f), %.1fs",
        config.policy, config.env, result.final_window_reward, result.final_window_oracle,
        result.seconds,
    )  # fmt: skip
    return result
