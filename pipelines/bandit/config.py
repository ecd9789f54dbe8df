"""Settings of one bandit run (``recrl bandit``), one source of truth for their defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recrl.envs.synthetic_bandit import SYN_REPEATS
from recrl.models.bandits.latent_factor import LatentFactorConfig
from recrl.models.bandits.registry import POLICIES, policy_config
from recrl.models.bandits.sequence_representation import SequenceRepresentationConfig
from recrl.pipelines.settings import check_known, check_types, field_types, refused

REFERENCE_POLICIES = ("oracle",)
"""Policies that read the simulator's ground truth; they exist only in runs, not in models/."""
USER_CHOICE_ENVIRONMENTS = ("ml-100k", "generated")
"""Simulators fitted on logs (``recrl.envs.user_choice``); they need ``data_path``: a MovieLens-100K
folder, or a folder written by ``recrl generate``."""
ENVIRONMENTS = (*SYN_REPEATS, *USER_CHOICE_ENVIRONMENTS)


@dataclass(frozen=True)
class BanditRunConfig:
    """One run: ``rounds`` rounds of ``policy`` on ``env`` (REN paper Fig. 1 protocol: one
    uniformly drawn user per round, a slate of ``slate_size``, the model refit on feedback)."""

    policy: str = "ren"
    """A name of ``recrl.models.bandits.POLICIES`` or ``oracle``."""
    env: str = "syn-s"
    """Simulator: ``syn-s``, ``syn-m``, ``syn-l`` (REN paper), ``ml-100k`` (user-choice
    simulator fitted on MovieLens-100K, two-stage paper) or ``generated`` (the same simulator
    fitted on the clicks of a ``recrl generate`` dataset)."""
    data_path: str | None = None
    """Logged data of a fitted simulator (``ml-100k``: the folder holding ``u.data``;
    ``generated``: the ``recrl generate --out`` folder)."""
    n_users: int = 100
    """Users of a fitted simulator's panel (two-stage paper Table 4: 100)."""
    rounds: int = 2000
    """Interaction rounds (one user, one slate each)."""
    slate_size: int = 4
    """Items recommended per round (REN paper text: 4)."""
    seed: int = 0
    """Seeds the world (user latents), the rounds, the model's priors and the policy."""
    policy_settings: Mapping[str, Any] = field(default_factory=dict)
    """Overrides of the policy's config (``lambda_d``, ``beta``, ...)."""
    encoder: str = "latent-factor"
    """Representation the policies read: ``latent-factor`` (ridge ALS) or ``sasrec``."""
    representation: LatentFactorConfig = field(default_factory=LatentFactorConfig)
    """Settings of the latent-factor representation."""
    sasrec: SequenceRepresentationConfig = field(default_factory=SequenceRepresentationConfig)
    """Settings of the SASRec representation (``encoder = 'sasrec'``)."""
    feedback_rows: str = "auto"
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
    backend: str = "loop"
    """``loop`` (``loop.py``, one process) or ``rllib`` (``bandit_algorithm.py``: RLlib
    EnvRunners act, a Learner learns; needs a Ray runtime)."""
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
        self.validate()

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
            policy_config(self.policy, self.policy_settings)  # raises on unknown settings

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

    def with_settings(self, settings: Mapping[str, Any]) -> BanditRunConfig:
        """Split ``KEY=VALUE`` settings between this config, the representation and the policy.

        Keys naming a ``BanditRunConfig`` field set it, ``embedding_dim``/``l2``/``sweeps``/
        ``init_std`` the latent-factor representation, ``hidden_size``/``max_len``/
        ``encoder_lr``/``steps_per_refit``/... the SASRec one, and the rest go to the policy,
        which rejects what it does not know.
        """
        run_fields = {f.name for f in dataclasses.fields(self)} - {"representation", "sasrec"}
        rep_fields = {f.name for f in dataclasses.fields(LatentFactorConfig)}
        seq_fields = {f.name for f in dataclasses.fields(SequenceRepresentationConfig)}
        run, rep, seq, policy = {}, {}, {}, dict(self.policy_settings)
        for key, value in settings.items():
            if key == "embedding_dim":
                rep["dim"] = value
            elif key in run_fields:
                run[key] = value
            elif key in rep_fields - {"dim"}:
                rep[key] = value
            elif key in seq_fields:
                seq[key] = value
            else:
                policy[key] = value
        run = check_types(type(self), run)
        rep = check_types(LatentFactorConfig, rep)
        seq = check_types(SequenceRepresentationConfig, seq)
        name = str(run.get("policy", self.policy)).lower()
        if name in POLICIES:  # unknown policy names are reported by validate()
            config = policy_config(name)
            own = field_types(type(config)) if config is not None else {}
            new = {k: v for k, v in settings.items() if k in policy}
            check_known(new, {*own, *run_fields, *rep_fields, *seq_fields, "embedding_dim"})
            policy.update(check_types(type(config), new) if config is not None else {})
        with refused():
            return dataclasses.replace(
                self, **run, representation=dataclasses.replace(self.representation, **rep),
                sasrec=dataclasses.replace(self.sasrec, **seq), policy_settings=policy,
            )  # fmt: skip

    def as_params(self) -> dict[str, Any]:
        """Flat params for MLflow."""
        params = dataclasses.asdict(self)
        params["policy_settings"] = dict(self.policy_settings)
        params["refit_interval"] = self.refit_every  # the interval used, not None
        return params
