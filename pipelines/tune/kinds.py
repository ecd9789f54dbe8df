"""What a study can sweep: the trainable kinds of ``recrl tune`` and how each builds a trial.

A study file says ``trainable: sasrec`` (the default: a SASRec variant trained offline on a
prepared dataset, design.md §4/§7), ``trainable: bandit`` (one exploration-bandit run against
a simulator, design.md §6) or ``trainable: slate`` (one slate policy trained against the GAN
user model and evaluated on the test users' simulator, design.md §5). The study machinery —
search space, seeds, Tune, MLflow parent and child runs, the stability report — is shared;
a kind supplies only what differs: the config a trial's settings resolve to, the metric
namespace and the step its curves are drawn against, and whether trials read a dataset
through Ray Data (which decides the CPUs kept free for their readers, see
`recrl.pipelines.tune.sweep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrialKind:
    """The kind-specific part of a study (see the module docstring)."""

    name: str
    metric_prefix: str
    """Namespace of the metrics a trial reports (a study's ``metric`` must be one)."""
    step_key: str
    """Reported with every result; the x axis of the report's curves."""
    required: tuple[str, ...]
    """Study keys this kind cannot do without."""
    reserved: frozenset[str]
    """Settings the study itself sets (seed, ...): not allowed in ``fixed``/``search``."""
    reads_dataset: bool
    """Trials read a prepared dataset with Ray Data: ``data_cpu`` stays free per trial for
    its reader."""
    build: Callable[[str, str | None, dict[str, Any]], Any]
    """``build(data, variant, settings)`` → the trial's config; raises ValueError/TypeError
    on an invalid setting."""
    reports: Callable[[Any], int]
    """Number of results a trial with this config reports (ASHA's ``max_t``)."""
    final_step: Callable[[Any], int]
    """Step of a trial's last result (the report tells finished runs from running ones)."""
    discount: Callable[[Any], float | None]
    """γ of a trial's config for the report's Q bound (None: no Q values to bound)."""
    example: str


def _sasrec_config(data: str, variant: str | None, settings: dict[str, Any]):
    from recrl.pipelines.sasrec.config import TrainConfig

    return TrainConfig.for_variant(variant, data, **settings)


def _bandit_config(data: str, variant: str | None, settings: dict[str, Any]):
    from recrl.pipelines.bandit.config import BanditRunConfig
    from recrl.pipelines.settings import apply_settings

    if data:  # a simulator fitted on logs (ml-100k) reads them from the study's data
        settings = {"data_path": data, **settings}
    return apply_settings(BanditRunConfig(), settings, rest_to="policy_settings")


def _slate_config(data: str, variant: str | None, settings: dict[str, Any]):
    from recrl.pipelines.slate.config import slate_job

    settings = dict(settings)
    if "seed" in settings:  # a trial runs one seed of the study's seeds
        settings["seeds"] = (settings.pop("seed"),)
    return slate_job({"data": data, **settings})


SASREC = TrialKind(
    name="sasrec",
    metric_prefix="eval/",
    step_key="updates",
    required=("name", "data", "variants"),
    reserved=frozenset({"seed", "data", "variant"}),
    reads_dataset=True,
    build=_sasrec_config,
    reports=lambda config: max(1, math.ceil(config.total_steps / config.eval_interval)),
    final_step=lambda config: config.total_steps,
    discount=lambda config: config.objective.gamma,
    example="eval/ndcg_20_purchase",
)

BANDIT = TrialKind(
    name="bandit",
    metric_prefix="bandit/",
    step_key="rounds",
    required=("name",),
    reserved=frozenset({"seed", "data_path", "tracking", "experiment"}),
    reads_dataset=False,
    build=_bandit_config,
    reports=lambda config: max(1, math.ceil(config.rounds / config.log_interval)),
    final_step=lambda config: config.rounds,
    discount=lambda config: None,
    example="bandit/reward_window",
)

SLATE = TrialKind(
    name="slate",
    metric_prefix="slate/",
    step_key="env_steps",
    required=("name", "data"),
    reserved=frozenset({"seed", "seeds", "data", "tracking", "out_dir"}),
    reads_dataset=False,
    build=_slate_config,
    reports=lambda job: max(1, -(-job.final_step // job.eval_interval)) if job.eval_interval else 1,
    final_step=lambda job: job.final_step,
    discount=lambda job: None,
    example="slate/reward",
)

KINDS = {kind.name: kind for kind in (SASREC, BANDIT, SLATE)}
