"""Settings of the slate Q-learning policies and their RLlib `AlgorithmConfig`.

GAN-CDQN, GAN-RWD1 and GAN-GDQN (Chen et al. 2019, §5, §6.2, Algorithm 2 in the appendix)
share one training setup — experience replay, ε-greedy, a Polyak target network — and
differ in the Q-function (cascading or additive) and the training reward (the user model's
learned utility or ±1 for click / no click). `SlateQAlgorithm` runs it (EnvRunners step the
simulated user, `recrl.envs.user_model_env`; uniform replay; `SlateQLearner` updates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from recrl.pipelines.slate.algorithm import SlateQAlgorithmConfig
from recrl.pipelines.slate.learner import SlateQLearner
from recrl.pipelines.slate.rl_module import SlateQRLModule


@dataclass(frozen=True)
class CDQNConfig:
    """Slate Q-learning settings (defaults: design.md §4/§8 where they apply)."""

    hidden: int = 64
    """ℓ: hidden units of each Q_j (eq. 9)."""
    gamma: float = 0.5
    """Discount γ (design.md §4 default)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 64
    """Transitions per update."""
    replay_size: int = 20_000
    """Replay buffer capacity (env steps)."""
    env_steps: int = 5_000
    """Environment steps of training; one update per step once warm."""
    warmup_steps: int = 500
    """Steps of pure random slates (ε = 1) before updates start."""
    epsilon_end: float = 0.05
    """ε after the linear decay from 1, reached at half of `env_steps`."""
    tau: float = 0.01
    """Polyak rate of the target network per update."""
    reward: Literal["learned", "pm1"] = "learned"
    """Training reward: the user model's utility (GAN-CDQN) or ±1 (GAN-RWD1)."""
    q_form: Literal["cascading", "additive"] = "cascading"
    """Q_1..Q_k of eq. 9 (CDQN, RWD1) or Σ_j q(s, a_j) (GDQN)."""
    seed: int = 0
    """Seed of network init, exploration, replay sampling and the training env."""

    def __post_init__(self) -> None:
        if not 0 <= self.warmup_steps < self.env_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be in [0, env_steps={self.env_steps})"
            )
        if not 0.0 <= self.epsilon_end <= 1.0:
            raise ValueError(f"epsilon_end must be in [0, 1]: {self.epsilon_end}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1]: {self.tau}")

    def epsilon_schedule(self) -> list[tuple[int, float]]:
        """ε over sampled env steps: 1 through the warm-up, then linear to `epsilon_end`."""
        end = max(self.env_steps // 2, self.warmup_steps + 1)
        return [(0, 1.0), (self.warmup_steps, 1.0), (end, self.epsilon_end)]


def slate_q_module_config(
    config: CDQNConfig, item_features: np.ndarray, state_dim: int, slate_size: int
) -> dict:
    """``model_config`` of `SlateQRLModule` as plain data RLlib can copy and pickle."""
    return {
        "item_features": np.asarray(item_features, dtype=np.float32).tolist(),
        "state_dim": int(state_dim),
        "slate_size": int(slate_size),
        "hidden": config.hidden,
        "q_form": config.q_form,
        "epsilon": config.epsilon_schedule(),
    }


def slate_q_algorithm_config(
    config: CDQNConfig, env: str, item_features: np.ndarray, state_dim: int, slate_size: int
) -> SlateQAlgorithmConfig:
    """`SlateQAlgorithm` with `SlateQRLModule` + `SlateQLearner` on the registered env
    ``env``: one local EnvRunner (the simulated user is cheap; a remote one only adds
    transfers) sampling 10 steps per ``training_step``, one update per sampled step."""
    return (
        SlateQAlgorithmConfig()
        .environment(env=env)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=10)
        .learners(num_learners=0, learner_class=SlateQLearner)
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=SlateQRLModule,
                model_config=slate_q_module_config(config, item_features, state_dim, slate_size),
            )
        )
        .training(
            gamma=config.gamma,
            lr=config.lr,
            train_batch_size_per_learner=config.batch_size,
            replay_buffer_config={"capacity": config.replay_size},
            num_steps_sampled_before_learning_starts=config.warmup_steps,
            n_step=1,
            tau=config.tau,
            target_network_update_freq=1,
            epsilon=config.epsilon_schedule(),
            # DQN's clip at global norm 40, halved with the loss: the TD loss carries the ½
            # of the SASRec family's (`recrl.models.slate.losses`), and this keeps the clipped
            # updates as they were under the unhalved loss (Adam ignores the scale).
            grad_clip=20.0,
        )
        .reporting(min_sample_timesteps_per_iteration=0, min_time_s_per_iteration=0)
        .debugging(seed=config.seed)
    )
