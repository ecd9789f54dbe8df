"""Contrastive objective of SASRec-CO / SASRec-CCQL: InfoNCE (van den Oord et al. 2018) in its
NT-Xent form (SimCLR, Chen et al. 2020) over two augmented views of each state sequence.

Paper: SASRec-CCQL §3.4, eq. (3) (InfoNCE) and eq. (4) (``L_CO`` in the total); design.md §4
"Contrastive". The views come from ``recrl.models.sasrec.augment``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce_loss(
    z1: Tensor, z2: Tensor, temperature: float = 0.07
) -> tuple[Tensor, dict[str, Tensor]]:
    """NT-Xent over 2B L2-normalised views; eq. (3) with ``f(x, y) = cos(x, y) / τ``.

    Stack ``z = normalise([z1; z2])`` [2B, H] and let ``S = z zᵀ / τ``. View ``i`` has one
    positive, the other view of the same sequence (``i ± B``), and 2B − 2 negatives, every other
    view except itself:

        ``L_CO = −1/(2B) · Σ_i log( exp S[i, pos(i)] / Σ_{j ≠ i} exp S[i, j] )``

    Shapes: ``z1``, ``z2`` [B, H] (state vectors of view 1 and 2; row b of both comes from the
    same sequence), B ≥ 2 for any negative to exist.

    Diagnostics: ``loss/co``, ``co/pos_cos`` (mean cosine of positive pairs), ``co/neg_cos``
    (mean cosine of negative pairs), ``co/acc`` (fraction of views whose nearest other view is
    their positive).
    """
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)  # [2B, H]
    cos = z @ z.T  # [2B, 2B]
    self_pair = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = (cos / temperature).masked_fill(self_pair, float("-inf"))
    positive = torch.arange(2 * batch, device=z.device).roll(batch)  # i -> i + B (mod 2B)
    loss = F.cross_entropy(logits, positive)
    with torch.no_grad():
        pos_cos = cos.gather(1, positive.unsqueeze(1)).squeeze(1)
        n_neg = max(2 * batch - 2, 1)
        neg_cos = (cos.masked_fill(self_pair, 0.0).sum(1) - pos_cos) / n_neg
        acc = (logits.argmax(dim=1) == positive).float().mean()
    return loss, {
        "loss/co": loss.detach(),
        "co/pos_cos": pos_cos.mean(),
        "co/neg_cos": neg_cos.mean(),
        "co/acc": acc,
    }
