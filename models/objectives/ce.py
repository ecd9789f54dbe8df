"""Supervised next-item cross-entropy (SASRec; SASRec-CCQL paper §3, the
unnumbered supervised loss before eq. (1); design.md §4 "CE")."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def ce_loss(
    logits: Tensor, actions: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-sample weighted cross-entropy of the supervised head against the logged action.

    ``L_CE = 1/B · Σ_b w_b · (−log softmax(logits_b)[a_b])``, with ``w_b = 1`` when ``weights``
    is None. The weights are detached here (stop-gradient), as the phase-2 SQN-SAC / SA2C
    schedule requires: they re-weight the actor's loss without training the critic through it.

    Shapes: ``logits`` [B, I], ``actions`` [B] (any int dtype), ``weights`` [B] or None.

    Deviation from the public SASRec-CCQL/SA2C reference code (design.md §8): it multiplies
    the batch-mean CE by one scalar per batch; here every sample has its own weight, as the SQN and
    SA2C papers write it. The mean is over B (not normalised by Σ w), so weights also scale the
    loss, as in those papers.

    Diagnostics: ``loss/ce`` (the returned loss), ``loss/ce_unweighted`` and ``ce/weight_mean``.
    """
    nll = F.cross_entropy(logits.float(), actions.long(), reduction="none")  # [B]
    if weights is None:
        loss = nll.mean()
        return loss, {"loss/ce": loss.detach(), "loss/ce_unweighted": loss.detach()}
    w = weights.detach().to(nll.dtype)
    loss = (w * nll).mean()
    return loss, {
        "loss/ce": loss.detach(),
        "loss/ce_unweighted": nll.detach().mean(),
        "ce/weight_mean": w.mean(),
    }
