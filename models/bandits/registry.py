"""Policy names of design.md §6 -> configured policy objects (one place that knows them all)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recrl.models.bandits.budget import TOPIC_STREAM, BudgetConfig, CandidateDraw, stream_seed
from recrl.models.bandits.glm import GLMUCBConfig, GLMUCBPolicy
from recrl.models.bandits.interface import BanditPolicy
from recrl.models.bandits.ren import RENConfig, RENPolicy
from recrl.models.bandits.shared_ucb import GALMConfig, GALMUCBPolicy, GBLMConfig, GBLMUCBPolicy
from recrl.models.bandits.simple import (
    DropoutUCBConfig,
    DropoutUCBPolicy,
    GreedyConfig,
    GreedyPolicy,
    RandomPolicy,
)
from recrl.models.bandits.two_stage import TwoStageConfig, TwoStagePolicy
from recrl.models.bandits.two_stage_dropout import TwoStageDropoutUCBPolicy
from torch import Tensor


@dataclass(frozen=True)
class PolicySizes:
    """What a policy needs to allocate its state."""

    n_users: int
    """Users the policy may see (per-user inverses and coefficients)."""
    n_items: int
    """Catalogue size (impression counts, per-item inverses)."""
    item_dim: int
    """Width d1 of the item representations in the contexts."""
    user_dim: int
    """Width d2 of the user representations in the contexts."""
    seed: int = 0
    """Seed of a policy's own randomness (Random)."""
    item_topics: Tensor | None = None
    """Topic id of every item [n_items] (long), for the two-stage policies; None when the
    environment has no topics."""


@dataclass(frozen=True)
class PolicySpec:
    """A named policy: its config class, fixed settings, and how to build it."""

    config_class: type | None
    """Dataclass of the policy's settings (None: it has none)."""
    build: Callable[[Any, PolicySizes], BanditPolicy]
    """``build(config, sizes)`` -> the policy."""
    summary: str
    """What the policy scores, in one line (``recrl bandit --help`` lists it)."""
    preset: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Settings the name fixes (``ren-1,2``: ``lambda_u = 0``)."""
    neural: bool = False
    """True when the paper's policy reads a neural encoder's representations."""


POLICIES: dict[str, PolicySpec] = {
    "random": PolicySpec(
        BudgetConfig, lambda c, s: RandomPolicy(seed=s.seed), "uniform random slates"
    ),
    "greedy": PolicySpec(GreedyConfig, lambda c, s: GreedyPolicy(c), "relevance only (μᵀθ)"),
    "ren": PolicySpec(
        RENConfig,
        lambda c, s: RENPolicy(s.n_items, c, s.n_users),
        "REN: μᵀθ + λ_d·√(μᵀ(I+DᵀD)⁻¹μ) + λ_u/√(1+n)",
    ),
    "ren-1,2": PolicySpec(
        RENConfig,
        lambda c, s: RENPolicy(s.n_items, c, s.n_users),
        "REN without the uncertainty term (λ_u = 0)",
        {"lambda_u": 0.0},
    ),
    "ren-1,3": PolicySpec(
        RENConfig,
        lambda c, s: RENPolicy(s.n_items, c, s.n_users),
        "REN without the diversity term (λ_d = 0, λ_u = √10·λ_d of the λ_d given)",
    ),
    "linucb": PolicySpec(
        GLMUCBConfig,
        lambda c, s: GLMUCBPolicy(s.n_users, s.item_dim, c),
        "per-user ridge + β‖x‖_{M⁻¹}",
        {"link": "identity"},
    ),
    "glm-ucb": PolicySpec(
        GLMUCBConfig,
        lambda c, s: GLMUCBPolicy(s.n_users, s.item_dim, c),
        "per-user logistic + β‖x‖_{M⁻¹}",
    ),
    "n-glm-ucb": PolicySpec(
        GLMUCBConfig,
        lambda c, s: GLMUCBPolicy(s.n_users, s.item_dim, c),
        "glm-ucb on the learned embeddings",
        neural=True,
    ),
    "n-greedy": PolicySpec(
        GreedyConfig, lambda c, s: GreedyPolicy(c), "sigmoid(μᵀθ)", {"link": "sigmoid"}, True
    ),
    "n-dropout-ucb": PolicySpec(
        DropoutUCBConfig,
        lambda c, s: DropoutUCBPolicy(c, s.seed),
        "mean + β·std of Monte-Carlo dropout passes",
        neural=True,
    ),
    "s-n-galm-ucb": PolicySpec(
        GALMConfig,
        lambda c, s: GALMUCBPolicy(s.n_users, s.n_items, s.item_dim, s.user_dim, c),
        "shared additive GLM + β(γ‖x‖+(1−γ)‖z‖)",
        neural=True,
    ),
    "s-n-gblm-ucb": PolicySpec(
        GBLMConfig,
        lambda c, s: GBLMUCBPolicy(s.item_dim, s.user_dim, c),
        "shared bilinear GLM + β‖vec(xzᵀ)‖_{W⁻¹}",
        neural=True,
    ),
    **{
        f"2-{family}": PolicySpec(
            TwoStageConfig,
            lambda c, s: _two_stage(c, s),
            f"two-stage topic → item (DynaTopicRec), {family} in both stages",
            {"policy": family},
            True,
        )
        for family in ("n-greedy", "n-dropout-ucb", "n-glm-ucb", "s-n-galm-ucb", "s-n-gblm-ucb")
    },
    "2-random": PolicySpec(
        TwoStageConfig,
        lambda c, s: _two_stage(c, s),
        "two-stage Random: random topic order, a uniform item of each topic group",
        {"policy": "random"},
    ),
}
"""REN-1,2 is REN with λ_u = 0; REN-1,3 is REN with λ_d = 0 and λ_u = √10·λ_d of the λ_d
asked for (``policy_config``), or the ``lambda_u`` given. ``2-<family>`` is the two-stage
topic → item policy (``recrl.models.bandits.two_stage``) with ``<family>`` in both stages.
``budget`` (``BudgetConfig``, the two-stage paper's B) is a setting of every policy but REN."""


def _two_stage(config: TwoStageConfig, sizes: PolicySizes) -> BanditPolicy:
    if sizes.item_topics is None:
        raise ValueError(
            f"two-stage policy 2-{config.policy} needs item topics; the environment has none "
            "(the user-choice simulators on MovieLens and generated data have them)."
        )
    n_topics = int(sizes.item_topics.max()) + 1
    family = POLICIES[config.policy]
    settings = {}
    if config.beta is not None and "beta" in {
        f.name for f in dataclasses.fields(family.config_class)
    }:
        settings["beta"] = config.beta
    inner = family.config_class(**{**settings, **family.preset})
    # the topic stage draws on a stream of its own: with the run's seed, 2-Random's topic
    # scores would repeat the first q draws of its item scores
    topic_seed = stream_seed(sizes.seed, TOPIC_STREAM)
    topic_sizes = dataclasses.replace(sizes, n_items=n_topics, item_topics=None, seed=topic_seed)
    policy = TwoStagePolicy(
        family.build(inner, topic_sizes), family.build(inner, sizes), sizes.item_topics,
        dataclasses.replace(config, seed=sizes.seed),
    )  # fmt: skip
    policy.topic_policy.name = policy.item_policy.name = config.policy
    if isinstance(policy.item_policy, DropoutUCBPolicy):
        # callers give Monte-Carlo dropout passes to N-Dropout-UCB policies, by type
        return TwoStageDropoutUCBPolicy(policy, inner, sizes.seed)
    return policy


def policy_config(name: str, settings: Mapping[str, Any] | None = None):
    """The config dataclass of policy ``name`` with its preset and ``settings`` applied."""
    spec = _spec(name)
    settings = dict(settings or {})
    if spec.config_class is None:
        if settings:
            raise ValueError(f"policy {name!r} has no settings; got {sorted(settings)}.")
        return None
    fields = {f.name for f in dataclasses.fields(spec.config_class)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for policy {name!r}; valid: {sorted(fields)}."
        )
    clash = sorted(k for k in settings if k in spec.preset and settings[k] != spec.preset[k])
    if clash:
        raise ValueError(f"policy {name!r} fixes {clash} (preset {dict(spec.preset)}).")
    if name.lower() == "ren-1,3":
        # The ablation drops the diversity term but keeps λ_u = √10·λ_d of the asked λ_d.
        lambda_d = settings.pop("lambda_d", RENConfig.lambda_d)
        settings.setdefault("lambda_u", RENConfig(lambda_d=lambda_d).effective_lambda_u)
        settings["lambda_d"] = 0.0
    return spec.config_class(**{**settings, **spec.preset})


def make_policy(
    name: str, sizes: PolicySizes, settings: Mapping[str, Any] | None = None
) -> BanditPolicy:
    """Build policy ``name`` (a key of ``POLICIES``) with ``settings`` over its defaults."""
    config = policy_config(name, settings)
    policy = _spec(name).build(config, sizes)
    policy.name = name
    # a one-stage policy spends its budget on uniform draws from the catalogue; a two-stage
    # one spends it itself (the topics first)
    one_stage = isinstance(config, BudgetConfig) and not isinstance(config, TwoStageConfig)
    if one_stage and config.budget is not None:
        policy.candidates = CandidateDraw(config.budget, sizes.seed)
    return policy


def _spec(name: str) -> PolicySpec:
    key = name.lower()
    if key not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}.")
    return POLICIES[key]
