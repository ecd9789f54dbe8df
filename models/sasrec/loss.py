"""The SASRec objective family composed from the pure objectives (SPEC §4, paper eq. (4))."""

from __future__ import annotations

import torch
from torch import Tensor

from models.objectives import (
    ce_loss,
    cql_loss,
    double_q_targets,
    info_nce_loss,
    negative_td_loss,
    sa2c_weights,
    sac_weights,
    td_loss,
)
from models.sasrec.network import ObjectiveInputs
from models.sasrec.objective_config import SASRecObjectiveConfig


def sasrec_objective(
    inputs: ObjectiveInputs,
    batch: dict[str, Tensor],
    negatives: Tensor | None,
    config: SASRecObjectiveConfig,
    *,
    step: int,
    item_popularity: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``L = w_CE·L_CE + ω·(L_TD + L_TD⁻) + λ_co·L_CO + L_CQL`` for one batch.

    ``batch`` holds ``action`` [B], ``reward`` [B], ``done`` [B]; ``negatives`` [B, N] item
    ids (None when ``n_neg`` = 0); ``step`` is the number of updates so far (it decides the
    phase); ``item_popularity`` [I] feeds the SA2C propensity factor. Returns the scalar
    loss and detached diagnostics named by namespace (``loss/…``, ``q/…``, ``co/…``).
    """
    actions = batch["action"].long()
    metrics: dict[str, Tensor] = {}
    total = inputs.logits.new_zeros(())
    phase2 = config.phase2 != "none" and step >= config.warmup_steps

    weights = None
    if phase2:
        assert inputs.q is not None
        if config.phase2 == "sac":
            weights, info = sac_weights(inputs.q, actions)
        else:
            assert negatives is not None
            weights, info = sa2c_weights(
                inputs.q, actions, negatives, logits=inputs.logits,
                item_popularity=item_popularity, smooth=config.sa2c_smooth,
                max_advantage=config.max_advantage,
            )  # fmt: skip
        metrics.update(info)
    ce, info = ce_loss(inputs.logits, actions, weights)
    metrics.update(info)
    total = total + ce

    if config.td_weight > 0:
        assert inputs.q is not None and inputs.q_next is not None
        targets = double_q_targets(
            inputs.q_next, inputs.q_next_target, batch["reward"], batch["done"], config.gamma
        )
        td, info = td_loss(inputs.q, actions, targets)
        metrics.update(info)
        if negatives is not None:
            td_neg, info = negative_td_loss(
                inputs.q, negatives, inputs.q_target, config.gamma, q_select=inputs.q_select
            )
            metrics.update(info)
            td = td + td_neg
        total = total + config.td_weight * td

    if config.cql_alpha > 0:
        assert inputs.q is not None
        cql, info = cql_loss(
            inputs.q, actions, negatives, config.cql_alpha, config.cql_temperature,
            action_set=config.cql_actions,
        )  # fmt: skip
        metrics.update(info)
        total = total + cql

    if config.co_weight > 0:
        assert inputs.z1 is not None and inputs.z2 is not None
        co, info = info_nce_loss(inputs.z1, inputs.z2, config.co_temperature)
        metrics.update(info)
        total = total + config.co_weight * co

    metrics["loss/total"] = total.detach()
    metrics["train/phase"] = torch.tensor(2.0 if phase2 else 1.0)
    return total, metrics
