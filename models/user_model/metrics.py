"""Click-prediction metrics of a page view (paper Table 1): prec@k and log-likelihood."""

from __future__ import annotations

from torch import Tensor


def hit_at_k(scores: Tensor, shown_mask: Tensor, click: Tensor, k: int) -> Tensor:
    """Per clicked page view, the chance that the clicked slot ranks in the top ``k`` of
    ``scores`` [B, K] over the real slots, ties broken uniformly at random (so a constant
    scorer gets k / |A|, not 1). Rows with no click are left out. → float [B_clicked].
    """
    rows = click >= 0
    s = scores[rows].masked_fill(~shown_mask[rows], float("-inf"))
    target = s.gather(1, click[rows][:, None])
    above = (s > target).sum(dim=1).to(s.dtype)
    tied = (s == target).sum(dim=1).to(s.dtype)  # includes the clicked slot itself
    return ((k - above) / tied).clamp(0.0, 1.0)


def precision_metrics(scores: Tensor, shown_mask: Tensor, click: Tensor) -> dict[str, float]:
    """``prec1`` and ``prec2`` averaged over page views with a click (the paper's Prec@k:
    the clicked item is among the top k of the shown set)."""
    return {
        f"prec{k}": float(hit_at_k(scores, shown_mask, click, k).mean()) if (click >= 0).any()
        else float("nan")
        for k in (1, 2)
    }  # fmt: skip
