"""The SASRec objective family composed from the pure objectives (design.md §4, paper eq. (4))."""

from __future__ import annotations

import torch
from recrl.models.objectives import (
    ce_loss,
    cql_loss,
    info_nce_loss,
    negative_td_loss,
    sa2c_weights,
    sac_weights,
    td_loss,
    td_target,
)
from recrl.models.sasrec.network import ObjectiveInputs
from recrl.models.sasrec.objective_config import SASRecObjectiveConfig
from torch import Tensor


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

    The Q terms read the trained network's Q at the logged action and the negatives only
    (`ObjectiveInputs.q_at`, one gather for all of them); only ``cql_actions="all"`` reads
    Q(s, ·) over every item.
    """
    actions = batch["action"].long()
    metrics: dict[str, Tensor] = {}
    total = inputs.logits.new_zeros(())
    phase2 = config.in_phase2(step)

    q_data = q_neg = q_taken = None
    if config.uses_q:
        # Q at the logged action and the negatives in one gather: every Q term reads these.
        items = actions.unsqueeze(1)
        if negatives is not None:
            items = torch.cat([items, negatives.long()], dim=1)
        q_taken = inputs.q_at(items)  # [B, 1 + N]
        q_data = q_taken[:, 0]
        q_neg = q_taken[:, 1:] if negatives is not None else None

    weights = None
    if phase2:
        assert q_data is not None
        if config.phase2 == "sac":
            weights, info = sac_weights(q_data)
        else:
            assert q_neg is not None
            weights, info = sa2c_weights(
                q_data, q_neg, actions, logits=inputs.logits, item_popularity=item_popularity,
                smooth=config.sa2c_smooth, max_advantage=config.max_advantage,
            )  # fmt: skip
        metrics.update(info)
    ce, info = ce_loss(inputs.logits, actions, weights)
    metrics.update(info)
    total = total + ce

    if config.td_weight > 0:
        assert q_data is not None and inputs.next_value is not None
        targets = td_target(inputs.next_value, batch["reward"], batch["done"], config.gamma)
        td, info = td_loss(q_data, targets)
        metrics.update(info)
        if inputs.q_mean is not None:
            metrics["q/all_mean"] = inputs.q_mean
        if q_neg is not None:
            assert inputs.stay_value is not None
            td_neg, info = negative_td_loss(q_neg, inputs.stay_value, config.gamma)
            metrics.update(info)
            td = td + td_neg
        total = total + config.td_weight * td

    if config.cql_alpha > 0:
        assert q_data is not None and q_taken is not None
        if config.cql_actions == "all":
            q_set = inputs.q
            if q_set is None:
                raise ValueError('cql_actions="all" needs Q(s, ·) over every item in inputs.q')
        elif q_neg is None:
            raise ValueError('cql_actions="negatives" needs negatives [B, N].')
        else:
            q_set = q_taken  # A(s) = {a_data} ∪ negatives
        cql, info = cql_loss(q_data, q_set, config.cql_alpha, config.cql_temperature)
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
