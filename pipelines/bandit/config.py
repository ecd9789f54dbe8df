"""Settings of one bandit run (``recrl bandit``), one source of truth for their defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from recrl.envs.synthetic_bandit import SYN_REPEATS
from recrl.models.bandits.latent_factor import LatentFactorConfig
from recrl.models.bandits.registry import POLICIES, policy_config
from recrl.models.bandits.sequence_representation import SequenceRepresentationConfig
from recrl.pipelines.settings import check_known, convert, field_types, setting_paths

REFERENCE_POLICIES = {"oracle": "the simulator's best slate (reference; --backend loop only)"}
"""Policies that read the simulator's ground truth -> what they do; they exist only in runs,
not in models/."""
USER_CHOICE_ENVIRONMENTS = ("ml-100k", "generated")
"""Simulators fitted on logs (``recrl.envs.user_choice``); they need ``data_path``: a MovieLens-100K
folder, or a folder written by ``recrl generate``."""
ENVIRONMENTS = {
    **{
        name: "REN paper simulator: 28 items, 15 users with hidden 8-dim latents; the user "
        "takes the best slate item and earns θ*ᵀx*"
        if repeats == 1
        else f"as syn-s with every item {repeats} times ({28 * repeats:,} items)"
        for name, repeats in SYN_REPEATS.items()
    },
    "ml-100k": "user-choice simulator fitted on MovieLens-100K (--data): IPS-weighted logistic "
    "MF, click = p̂ ≥ the F1-best threshold, flipped with prob. 0.1; reward = clicks in the "
    "slate (two-stage paper; use --slate-size 5)",
    "generated": "the same simulator fitted on the clicks of `recrl generate --out DIR` "
    "(--data DIR; one sampled non-click per click in training)",
}
"""Environment name -> what it simulates (``recrl bandit --help`` lists them)."""


@dataclass(frozen=True)
class BanditRunConfig:
    """One run: ``rounds`` rounds of ``policy`` on ``env`` (REN paper Fig. 1 protocol: one
    uniformly drawn user per round, a slate of ``slate_size``, the model refit on feedback).

    Flat ``KEY=VALUE`` settings (``--set``, ``--config``, a study's ``fixed`` and ``search``)
    are applied by ``apply_settings(config, settings, rest_to="policy_settings")``
    (`recrl.pipelines.settings`):

    - a field of this class sets it (``rounds``, ``window``, ``refit_interval``,
      ``feedback_rows``, ``encoder``, ``rounds_per_update``, ...);
    - a field of `LatentFactorConfig` sets ``representation`` (``embedding_dim``, ``l2``,
      ``sweeps``, ``init_std``) and one of `SequenceRepresentationConfig` sets ``sasrec``
      (``hidden_size``, ``max_len``, ``num_blocks``, ``num_heads``, ``encoder_dropout``,
      ``encoder_lr``, ``steps_per_refit``, ``batch_size``); ``representation.l2`` and
      ``sasrec.batch_size`` are the dotted forms;
    - every other key goes to ``policy_settings``, checked against the policy's config
      (``lambda_d``, ``lambda_u``, ``history``, ``beta``, ``passes``, ``dropout``, ``gamma``,
      ``lr``, ``covariance``, ``min_group_items``, ``budget``, ...).

    Where a policy field has the name of a run or representation field, the flat key is the
    run's: ``l2`` is the latent-factor ridge weight, not the GLM policies' (reach theirs as
    ``policy_settings={l2: 2.0}``); ``seed`` is the run's, which the two-stage policies take
    anyway; ``policy`` is the run's (a two-stage name fixes its family). The SASRec fields
    are named apart so that they do not shadow policy settings: ``encoder_dropout`` against
    N-Dropout-UCB's ``dropout``, ``encoder_lr`` against the shared GLMs' ``lr``.
    """

    policy: str = "ren"
    """Exploration policy: a name of ``recrl.models.bandits.POLICIES`` or ``oracle``."""
    env: str = "syn-s"
    """Simulator: ``syn-s``, ``syn-m``, ``syn-l`` (REN paper), ``ml-100k`` or ``generated``
    (user-choice simulators fitted on logs)."""
    data_path: str | None = None
    """Logged data of a fitted simulator: the MovieLens-100K folder holding ``u.data``
    (``ml-100k``) or a ``recrl generate --out`` folder (``generated``)."""
    n_users: int = 100
    """Users in a fitted simulator's panel (two-stage paper Table 4: 100)."""
    rounds: int = 2000
    """Interaction rounds (one user, one slate each)."""
    slate_size: int = 4
    """Items recommended per round (REN paper text: 4)."""
    seed: int = 0
    """Seed of the world (user latents), the rounds, the model's priors and the policy."""
    policy_settings: Mapping[str, Any] = field(default_factory=dict)
    """Settings of the policy's config (``lambda_d``, ``beta``, ...): the keys that name no
    run or representation field; checked, and typed, against the policy's config."""
    encoder: Literal["latent-factor", "sasrec"] = "latent-factor"
    """Representation the policies read: ``latent-factor`` (ridge ALS) or ``sasrec``."""
    representation: LatentFactorConfig = field(default_factory=LatentFactorConfig)
    """Settings of the latent-factor representation."""
    sasrec: SequenceRepresentationConfig = field(default_factory=SequenceRepresentationConfig)
    """Settings of the SASRec representation (``encoder = 'sasrec'``)."""
    feedback_rows: Literal["auto", "chosen", "shown"] = "auto"
    """What the representation learns from: ``chosen`` — the taken (clicked) items and their
    rewards (REN paper: "collect the selected item with the reward and finetune"); ``shown``
    — every shown item with its reward, 0 when not taken (per-item clicks, two-stage paper);
    ``auto`` — ``chosen`` on SYN, ``shown`` on fitted simulators."""
    refit_interval: int | None = None
    """Rounds between refits of the representation; None resolves per env
    (``refit_every``): 1 on SYN (the REN paper refits every step), 100 on fitted simulators
    (the two-stage paper retrains its neural encoders every 100 rounds)."""
    window: int = 100
    """Rolling window of the reward curve and of the final-window reward (REN Fig. 1: 100)."""
    log_interval: int = 10
    """Rounds between MLflow metric writes (each a window mean; 1 writes every round)."""
    backend: Literal["loop", "rllib"] = "loop"
    """Run loop: ``loop`` (one process, ``recrl.pipelines.bandit.loop``) or ``rllib`` (RLlib
    EnvRunners act, a Learner learns, ``recrl.pipelines.bandit.algorithm``; needs a Ray
    runtime)."""
    rounds_per_update: int = 1
    """RLlib backend: rounds sampled between two Learner updates (1 = the sequential
    protocol, the loop's slates; more = batched updates with delayed feedback)."""
    num_env_runners: int = 0
    """RLlib backend: remote EnvRunners (0 = one local EnvRunner in the driver)."""
    tracking: bool = True
    """Log params, metrics and the curve to MLflow (through ``recrl.pipelines.tracking``)."""
    experiment: str = "recrl-bandit"
    """MLflow experiment name."""

    def __post_init__(self) -> None:
        # --set, --config files and sweeps deliver the policy's settings untyped (the keys
        # apply_settings routes nowhere else): check and convert them once, here
        object.__setattr__(self, "policy_settings", self._typed_policy_settings())
        self.validate()

    def _typed_policy_settings(self) -> dict[str, Any]:
        """``policy_settings``, each key checked against the policy's config (an unknown one
        is reported with every key a setting may name: the run's and the policy's) and each
        value converted to its field's type."""
        name = self.policy.lower()
        if name in REFERENCE_POLICIES:
            own = {}  # the oracle has no settings
        elif name in POLICIES:
            config_class = POLICIES[name].config_class
            own = field_types(config_class) if config_class is not None else {}
        else:  # validate() names the unknown policy
            return dict(self.policy_settings)
        paths = setting_paths(BanditRunConfig)
        # the run's keys as apply_settings lists them: flat, dotted only where no flat one
        # reaches the field
        run_keys = [k for k in paths if "." not in k or paths.get(k.split(".")[-1]) != paths[k]]
        check_known(self.policy_settings, [*own, *run_keys])
        return {key: convert(key, value, own[key]) for key, value in self.policy_settings.items()}

    def validate(self) -> None:
        """Raise ``ValueError`` saying how to fix an inconsistent setting."""
        if self.policy.lower() not in POLICIES and self.policy.lower() not in REFERENCE_POLICIES:
            raise ValueError(
                f"unknown policy {self.policy!r}; choose from "
                f"{sorted(POLICIES) + list(REFERENCE_POLICIES)}."
            )
        if self.env.lower() not in ENVIRONMENTS:
            raise ValueError(f"unknown env {self.env!r}; choose from {list(ENVIRONMENTS)}.")
        if self.feedback_rows not in ("auto", "chosen", "shown"):
            raise ValueError(
                f"feedback_rows must be 'auto', 'chosen' or 'shown', not {self.feedback_rows!r}."
            )
        if self.backend not in ("loop", "rllib"):
            raise ValueError(f"backend must be 'loop' or 'rllib', not {self.backend!r}.")
        if self.backend == "rllib" and self.policy.lower() in REFERENCE_POLICIES:
            raise ValueError(
                f"policy {self.policy!r} reads the simulator's ground truth and runs on the "
                "loop backend only; use --backend loop."
            )
        if self.num_env_runners < 0:
            raise ValueError(f"num_env_runners must be >= 0, got {self.num_env_runners}.")
        if self.encoder not in ("latent-factor", "sasrec"):
            raise ValueError(f"encoder must be 'latent-factor' or 'sasrec', not {self.encoder!r}.")
        if self.env.lower() in USER_CHOICE_ENVIRONMENTS and not self.data_path:
            raise ValueError(
                f"env {self.env!r} is fitted on logged data: set data_path (recrl bandit "
                "--data), e.g. ../shared/data/movielens-100k."
            )
        for name in (
            "rounds", "slate_size", "refit_interval", "window", "log_interval", "n_users",
            "rounds_per_update",
        ):  # fmt: skip
            value = self.refit_every if name == "refit_interval" else getattr(self, name)
            if value < 1:
                raise ValueError(f"BanditRunConfig.{name} must be >= 1, got {value}.")
        if self.policy.lower() in POLICIES:
            policy_config(self.policy, self.policy_settings)  # a preset clash, a bad value

    @property
    def refit_every(self) -> int:
        """``refit_interval``, with None resolved for this env."""
        if self.refit_interval is not None:
            return self.refit_interval
        return 100 if self.env.lower() in USER_CHOICE_ENVIRONMENTS else 1

    @property
    def representation_rows(self) -> str:
        """``chosen`` or ``shown``, with ``auto`` resolved for this env."""
        if self.feedback_rows != "auto":
            return self.feedback_rows
        return "shown" if self.env.lower() in USER_CHOICE_ENVIRONMENTS else "chosen"

    def as_params(self) -> dict[str, Any]:
        """Flat params for MLflow."""
        params = dataclasses.asdict(self)
        params["policy_settings"] = dict(self.policy_settings)
        params["refit_interval"] = self.refit_every  # the interval used, not None
        return params
