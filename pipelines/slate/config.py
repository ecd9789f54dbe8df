"""Settings of a slate job (`SlateJob`, ``recrl slate``), of the slate Q-learning policies
(`CDQNConfig`), and their RLlib `AlgorithmConfig`.

GAN-CDQN, GAN-RWD1 and GAN-GDQN (Chen et al. 2019, §5, §6.2, Algorithm 2 in the appendix)
share one training setup — experience replay, ε-greedy, a Polyak target network — and
differ in the Q-function (cascading or additive) and the training reward (the user model's
learned utility or ±1 for click / no click). `SlateQAlgorithm` runs it (EnvRunners step the
simulated user, `recrl.envs.user_model_env`; uniform replay; `SlateQLearner` updates).

RLlib is imported where the algorithm is configured, not at module level: ``recrl slate``
builds its flags from these dataclasses, and every ``recrl`` command builds its parser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from recrl.pipelines.errors import SettingError
from recrl.pipelines.settings import (
    apply_settings,
    convert,
    field_docs,
    field_types,
    setting_paths,
    unknown_setting,
)
from recrl.pipelines.slate.policy_names import POLICIES

if TYPE_CHECKING:
    from recrl.pipelines.slate.algorithm import SlateQAlgorithmConfig

MAX_WARMUP_STEPS = 500
"""Cap of the default warm-up (`CDQNConfig.effective_warmup_steps`)."""
UNTRAINED_POLICIES = ("greedy", "random")
"""Policies with nothing learned: no training steps and no model to serve."""


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
    """Environment steps of training (DQN-Off: updates); one update per step once warm."""
    warmup_steps: int | None = None
    """Steps of random slates (ε = 1) before updates start; None (not given): a tenth of
    ``env_steps``, at most 500 (``effective_warmup_steps``)."""
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
        if self.env_steps < 1:
            raise ValueError(f"env_steps must be >= 1, got {self.env_steps}")
        if not 0 <= self.effective_warmup_steps < self.env_steps:
            raise ValueError(
                f"warmup_steps ({self.effective_warmup_steps}) must be in "
                f"[0, env_steps={self.env_steps})"
            )
        if not 0.0 <= self.epsilon_end <= 1.0:
            raise ValueError(f"epsilon_end must be in [0, 1]: {self.epsilon_end}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1]: {self.tau}")

    @property
    def effective_warmup_steps(self) -> int:
        """``warmup_steps``, with None resolved: ``min(500, env_steps // 10)`` — 500 at the
        default 5,000 steps, and short runs (tests, reduced sweeps) still learn for 90 %."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(MAX_WARMUP_STEPS, self.env_steps // 10)

    def epsilon_schedule(self) -> list[tuple[int, float]]:
        """ε over sampled env steps: 1 through the warm-up, then linear to `epsilon_end`."""
        warmup = self.effective_warmup_steps
        end = max(self.env_steps // 2, warmup + 1)
        return [(0, 1.0), (warmup, 1.0), (end, self.epsilon_end)]


@dataclass(frozen=True)
class SlateJob:
    """One policy, k, seeds: trained (where the policy learns) and evaluated by
    `recrl.pipelines.slate.job.run_slate_job`.

    Flat settings (``--set``, ``--config``, flags, a sweep's trial) build it through
    `slate_job`: a field of this class sets it, a `CDQNConfig` field sets ``cdqn``
    (``gamma``, ``lr``, ``env_steps``, ``warmup_steps``...; dotted ``cdqn.gamma`` too),
    except `JOB_DECIDES`.
    """

    data: str
    """Display-set folder, required (its train/test page views seed the simulated users)."""
    user_model: str
    """The user model to train against, required: a ``user_model.pt`` of ``recrl usermodel
    fit``."""
    policy: str = "cdqn"
    """Slate policy: a name of ``recrl.pipelines.slate.policy_names.POLICIES``."""
    out_dir: str = "runs/slate"
    """Folder for the CSV and the PNG."""
    test_user_model: str | None = None
    """The user model of the test environment, fitted on the test users (``recrl usermodel
    fit --fit-on test``); None (not given): ``user_model``, with a warning."""
    k: int = 5
    """Slate size."""
    episodes: int | None = 1000
    """Simulated test users per seed (paper: 1,000); 0 or None: each test user once."""
    episode_length: int = 10
    """Page views per simulated user (the most, with ``quit_after``)."""
    quit_after: int | None = None
    """c: a simulated user leaves after c consecutive pages without a click, in training
    and evaluation (`UserModelEnvConfig.quit_after`); None: every visit lasts
    ``episode_length`` pages."""
    no_click_utility: float = 0.0
    """u₀: the simulated user's utility of not clicking, in training and evaluation
    (`UserModelEnvConfig.no_click_utility`; the paper's 0)."""
    max_pool: int = 512
    """Candidate items per simulated user (those shown to them in the log, subsampled)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds, one training and evaluation each."""
    cdqn: CDQNConfig = field(default_factory=CDQNConfig)
    """Training settings of cdqn / rwd1 / gdqn / offline (offline: env_steps = updates)."""
    tracking: bool = True
    """Log to MLflow."""
    eval_interval: int = 0
    """cdqn / rwd1 / gdqn: also evaluate on the test users every this many training env
    steps (the learning curve); 0: only at the end."""
    register_model: str | None = None
    """Register the policy trained with the first seed (logged to the run as ``model/``, an
    ``mlflow.pyfunc`` model) in MLflow's model registry under this name, a new version per
    job; None: log it only. Needs tracking and a trained policy (not greedy or random)."""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}: {self.policy!r}")
        if self.register_model is not None:
            if not self.register_model.strip():
                raise ValueError("register_model must be a model name, or None to not register")
            if self.policy in UNTRAINED_POLICIES:
                raise ValueError(f"register_model: policy {self.policy} learns nothing, so "
                                 "there is no model to register; train cdqn, rwd1, gdqn or "
                                 "offline")  # fmt: skip
            if not self.tracking:
                raise ValueError("register_model needs tracking: drop --no-mlflow")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0, got {self.eval_interval}")
        if self.episodes == 0:  # 0 is how a command line or a YAML file says "all of them"
            object.__setattr__(self, "episodes", None)

    def as_params(self) -> dict[str, Any]:
        """MLflow params of a job."""
        cdqn = dataclasses.asdict(self.cdqn)
        cdqn["warmup_steps"] = self.cdqn.effective_warmup_steps  # the warm-up used, not None
        return {
            "policy": self.policy, "k": self.k, "episodes": self.episodes,
            "episode_length": self.episode_length, "quit_after": self.quit_after,
            "no_click_utility": self.no_click_utility, "max_pool": self.max_pool,
            "seeds": list(self.seeds), "eval_interval": self.eval_interval,
            "user_model": self.user_model, "test_user_model": self.test_user_model,
            "register_model": self.register_model, "cdqn": cdqn,
        }  # fmt: skip

    @property
    def final_step(self) -> int:
        """The step of the end-of-training evaluation: training env steps (DQN-Off: its
        updates), 0 for the untrained greedy and random policies."""
        return 0 if self.policy in UNTRAINED_POLICIES else self.cdqn.env_steps


JOB_DECIDES = ("reward", "q_form", "seed")
"""`CDQNConfig` fields no setting may name: the policy decides the reward (rwd1: ±1) and
the Q form (gdqn: additive), and each of ``seeds`` is the seed of its training."""
REQUIRED = ("data", "user_model")
"""`SlateJob` fields without a default."""


def slate_setting_paths() -> dict[str, tuple[str, ...]]:
    """The keys a slate setting may use -> the field each sets: `SlateJob` and `CDQNConfig`
    fields, flat or dotted (``cdqn.gamma``), less `JOB_DECIDES` (and ``cdqn`` as a whole,
    which could set them)."""
    return {
        key: path
        for key, path in setting_paths(SlateJob).items()
        if path != ("cdqn",) and not (path[0] == "cdqn" and path[-1] in JOB_DECIDES)
    }


def slate_job(settings: Mapping[str, Any]) -> SlateJob:
    """The job of flat settings (``recrl slate``'s file, ``--set`` and flags; a slate
    sweep's trial): keys of `slate_setting_paths`, ``data`` and ``user_model`` among them.
    An unknown key, a missing required one or a value a field refuses is a `SettingError`
    naming it."""
    paths = slate_setting_paths()
    for key in settings:
        if key not in paths:
            # the flat names, and the dotted ones only where no flat name reaches them
            known = [k for k in paths if "." not in k or paths.get(k.split(".")[-1]) != paths[k]]
            raise unknown_setting(key, known, what="slate setting")
    for name in REQUIRED:
        if settings.get(name) in (None, ""):
            raise SettingError(f"slate setting {name} is required: {field_docs(SlateJob)[name]}")
    types = field_types(SlateJob)
    job = SlateJob(**{name: convert(name, settings[name], types[name]) for name in REQUIRED})
    rest = {key: value for key, value in settings.items() if key not in REQUIRED}
    return apply_settings(job, rest, what="slate setting")


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
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from recrl.pipelines.slate.algorithm import SlateQAlgorithmConfig
    from recrl.pipelines.slate.learner import SlateQLearner
    from recrl.pipelines.slate.rl_module import SlateQRLModule

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
            num_steps_sampled_before_learning_starts=config.effective_warmup_steps,
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
