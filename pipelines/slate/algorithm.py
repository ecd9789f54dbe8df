"""The RLlib Algorithm that trains the slate Q-networks online (Chen et al. 2019, Algorithm 2).

One ``training_step``: the EnvRunners take ``rollout_fragment_length`` steps in the
simulated user with `SlateQRLModule.forward_exploration` (ε-greedy cascade); the steps go
into a `TransitionReplay`; once `num_steps_sampled_before_learning_starts` steps are in,
`SlateQLearner` makes one update per sampled step on a uniform minibatch, moving its target
network after each (`DQNLearner.after_gradient_based_update`); the weights go back to the
EnvRunners.

Why our own replay rather than RLlib's `EpisodeReplayBuffer` (which DQN uses): that buffer
stores episodes and rebuilds every sampled transition by slicing its episode and running
the learner connector over the slices; with dict observations this took ~45 % of a
training step, more than the environment and the update together (cProfile, 400 steps).
A ring of flat numpy transitions costs one fancy index, and its batches are exactly those
of DQN-Off, so both train through the same Learner input.
"""

from __future__ import annotations

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.dqn import DQNConfig
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    TIMERS,
)
from recrl.pipelines.slate.transitions import TransitionReplay, episode_transitions


class SlateQAlgorithmConfig(DQNConfig):
    """DQN's settings (γ, lr, ε schedule, ``tau``, ``target_network_update_freq``,
    ``num_steps_sampled_before_learning_starts``, ``replay_buffer_config["capacity"]``)
    for `SlateQAlgorithm`; build it with `slate_q_algorithm_config`."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or SlateQAlgorithm)


class SlateQAlgorithm(Algorithm):
    """See the module docstring."""

    @classmethod
    def get_default_config(cls) -> SlateQAlgorithmConfig:
        return SlateQAlgorithmConfig()

    def setup(self, config) -> None:
        super().setup(config)
        self.replay = TransitionReplay(int(self.config.replay_buffer_config["capacity"]))
        self._rng = np.random.default_rng(self.config.seed)

    def training_step(self) -> None:
        config = self.config
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                concat=True,
                sample_timeout_s=config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
            )
        self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        transitions = episode_transitions(episodes)
        if transitions is None:
            return
        self.replay.add(transitions)
        sampled = self.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        batch = config.train_batch_size_per_learner
        if sampled < config.num_steps_sampled_before_learning_starts or self.replay.size < batch:
            return
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            for _ in range(len(transitions["reward"])):
                results = self.learner_group.update(
                    batch=self.replay.sample(batch, self._rng),
                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled},
                )
                self.metrics.aggregate(results, key=LEARNER_RESULTS)
        self.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.learner_group, inference_only=True
        )
