"""Weights and switches of the SASRec family and its six named variants (design.md §4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from recrl.models.sasrec.augment import AugmentConfig


@dataclass(frozen=True)
class SASRecObjectiveConfig:
    """``L = w_CE·L_CE + ω·(L_TD + L_TD⁻) + λ_co·L_CO + L_CQL`` (SASRec-CCQL paper eq. (4)).

    ``w_CE`` is 1 during the first ``warmup_steps`` updates and then, per sample and without
    gradient, Q(s, a) (``phase2="sac"``) or the SA2C advantage (``phase2="sa2c"``). Every
    named variant is a preset of these fields (`VARIANTS`); all share one code path.
    """

    gamma: float = 0.5
    """Discount γ of the TD targets."""
    td_weight: float = 0.0
    """ω: weight of the TD terms; 0 trains the supervised head only (plain SASRec)."""
    double_q: Literal["twin", "target"] = "twin"
    """``twin``: two networks, one picked at random each step to be trained (SQN recipe);
    ``target``: one online network and a Polyak-averaged copy."""
    tau: float = 0.01
    """Polyak rate of the target copy (``double_q="target"``)."""
    n_neg: int = 0
    """Sampled negative actions per row (SNQN); 0 disables them."""
    neg_sampler: Literal["uniform", "popularity"] = "uniform"
    """Distribution of negatives over the items they may be (see ``neg_exclude``)."""
    neg_exclude: Literal["state", "action"] = "state"
    """Items a negative may never be: ``state``, the row's state items and its logged action
    (SASRec-CCQL §3.3: "items with which the user has never interacted", here the last L
    items); ``action``, the logged action only (any other item, the earlier behaviour)."""
    phase2: Literal["none", "sac", "sa2c"] = "none"
    """CE weighting after the warm-up."""
    warmup_steps: int = 15_000
    """Updates of the first phase (unweighted CE + TD)."""
    sa2c_smooth: float = 0.0
    """Exponent of the SA2C propensity factor clip(π(a|s)/pop(a), 0.1, 10); 0 turns it off."""
    max_advantage: float = 10.0
    """Upper clip of the SA2C advantage (lower clip is 0)."""
    cql_alpha: float = 0.0
    """α of the conservative term; 0 disables it (SASRec-CCQL uses 0.01)."""
    cql_temperature: float = 0.5
    """τ of the CQL log-sum-exp."""
    cql_actions: Literal["negatives", "all"] = "negatives"
    """Action set of the log-sum-exp: the logged action and the sampled negatives, or every item."""
    co_weight: float = 0.0
    """λ_co: weight of the contrastive InfoNCE term; 0 disables it."""
    co_temperature: float = 0.07
    """Temperature of InfoNCE."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Augmentations that make the two contrastive views."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.double_q not in ("twin", "target"):
            raise ValueError(f"double_q must be 'twin' or 'target', got {self.double_q!r}")
        if self.neg_exclude not in ("state", "action"):
            raise ValueError(f"neg_exclude must be 'state' or 'action', got {self.neg_exclude!r}")
        if self.phase2 not in ("none", "sac", "sa2c"):
            raise ValueError(f"phase2 must be none, sac or sa2c, got {self.phase2!r}")
        if self.phase2 != "none" and self.td_weight == 0:
            raise ValueError(f"phase2={self.phase2!r} weights CE by Q: set td_weight > 0")
        if self.phase2 == "sa2c" and self.n_neg == 0:
            raise ValueError("phase2='sa2c' averages Q over negatives: set n_neg > 0")
        if self.cql_alpha > 0 and self.cql_actions == "negatives" and self.n_neg == 0:
            raise ValueError("cql_actions='negatives' needs n_neg > 0 (or cql_actions='all')")
        if self.n_neg < 0 or self.warmup_steps < 0:
            raise ValueError("n_neg and warmup_steps must be >= 0")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")

    @property
    def uses_q(self) -> bool:
        return self.td_weight > 0 or self.cql_alpha > 0

    @property
    def has_phase2(self) -> bool:
        """Whether the CE is ever weighted (``phase2`` is not ``none``)."""
        return self.phase2 != "none"

    def in_phase2(self, updates: int) -> bool:
        """Whether the update after ``updates`` earlier ones weights the CE (and, in the
        learner, uses ``lr_phase2``): the one rule of design.md §4.5."""
        return self.has_phase2 and updates >= self.warmup_steps


CO_WEIGHT = 1.0
"""λ_co of the contrastive presets (``sasrec_co``, ``sasrec_ccql``): the paper's eq. (4), which
adds L_CO with weight 1. Measured against the 0.1 shipped before, on the RC15 sample at 6,000
updates and 2 seeds (``tune_configs/co_weight.yaml`` against ``tune_configs/ccql_budget.yaml``;
docs/results.md, "Contrastive weight"), 1.0 is higher on every test metric of both variants
(purchase HR@20 0.642 against 0.603 for sasrec_ccql, 0.644 against 0.609 for sasrec_co)."""


@dataclass(frozen=True)
class Variant:
    """A named preset: one line for ``--help`` and the fields it sets."""

    summary: str
    """What the variant adds to plain SASRec, and its paper."""
    preset: dict[str, Any]
    """Field overrides of `SASRecObjectiveConfig`."""


VARIANTS: dict[str, Variant] = {
    "sasrec": Variant("cross-entropy only (Kang & McAuley 2018)", {}),
    # SASRec-AC = SQN-SAC (Xin et al. 2020): CE + TD, CE weighted by Q after the warm-up.
    "sasrec_ac": Variant(
        "+ double-Q TD, CE weighted by Q after the warm-up (SQN-SAC, Xin et al. 2020)",
        {"td_weight": 1.0, "phase2": "sac"},
    ),
    # SNQN (Xin et al. 2022): CE + TD over the logged and the sampled negative actions; the CE
    # is never weighted (no second phase: only SQN-SAC / SA2C have one).
    "snqn": Variant(
        "+ TD over sampled negative actions (SNQN, Xin et al. 2022)",
        {"td_weight": 1.0, "n_neg": 10},
    ),
    "sa2c": Variant(
        "SNQN + advantage-weighted CE after the warm-up (SA2C, Xin et al. 2022)",
        {"td_weight": 1.0, "n_neg": 10, "phase2": "sa2c"},
    ),
    "sasrec_co": Variant(
        "SASRec-AC + contrastive views (SASRec-CO)",
        {"td_weight": 1.0, "phase2": "sac", "co_weight": CO_WEIGHT},
    ),
    "sasrec_ccql": Variant(
        "CE + TD + negatives + discrete CQL + contrastive (SASRec-CCQL)",
        {"td_weight": 1.0, "n_neg": 10, "cql_alpha": 0.01, "co_weight": CO_WEIGHT},
    ),
}
"""design.md §4 named variants, each a preset of `SASRecObjectiveConfig` fields: a new variant
is one entry here (``recrl train --help``, sweeps and the variant tests read this registry);
every deliberate difference from the papers is listed in ``docs/paper_differences.md``."""


def variants_help() -> str:
    """The variants as ``recrl train --help`` lists them, one line each."""
    return "\n".join(f"  {name:<12} {variant.summary}" for name, variant in VARIANTS.items())


def objective_for(variant: str, **overrides: Any) -> SASRecObjectiveConfig:
    """The preset of ``variant`` with ``overrides`` applied on top."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    known = {f.name for f in dataclasses.fields(SASRecObjectiveConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown objective setting(s) {sorted(unknown)}; known: {sorted(known)}")
    return SASRecObjectiveConfig(**{**VARIANTS[variant].preset, **overrides})
