"""Objectives of the slate Q-networks (Chen et al. 2019): the cascading Q-networks' shared
target (eq. 10-11) and the additive GDQN baseline (§6.2), pure functions."""

from __future__ import annotations

from recrl.models.objectives.td import td_target
from torch import Tensor


def cascading_td_loss(
    q_taken: Tensor, reward: Tensor, done: Tensor, next_q_k: Tensor, *, gamma: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Eq. 11: every Q_j regresses the same target y = r + γ·Q_k(s', a*'_{1:k}).

    q_taken: [B, k] Q_j(s, a_1..a_j) of the slate shown; reward, done: [B];
    next_q_k: [B] Q_k of the next state at its greedy slate a*' (from the target network;
    no gradient flows into it). Loss = mean over rows and j of ½(y − Q_j)², the convention of
    the SASRec family's `td_loss`, so ``loss/td`` means the same in both.
    Diagnostics: ``loss/td``, ``q/mean``, ``q/target_mean`` and ``q/cascade_gap`` = mean
    |Q_j − Q_k| over the slate, the violation of the consistency constraint eq. 10.
    """
    y = td_target(next_q_k, reward, done, gamma)
    loss = 0.5 * ((y[:, None] - q_taken) ** 2).mean()
    return loss, {
        "loss/td": loss.detach(),
        "q/mean": q_taken.mean().detach(),
        "q/target_mean": y.mean().detach(),
        "q/cascade_gap": (q_taken - q_taken[:, -1:]).abs().mean().detach(),
    }


def additive_td_loss(
    q_items: Tensor, reward: Tensor, done: Tensor, next_value: Tensor, *, gamma: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """GDQN (§6.2): Q(s, A) = Σ_j q(s, a_j) regresses y = r + γ·Q(s', A*'), A*' = top-k of q.

    q_items: [B, k] q(s, a_j) of the slate shown; reward, done: [B]; next_value: [B]
    Σ_j q^target(s', a*'_j) (no gradient flows into it). Loss = mean over rows of
    ½(y − Σ_j q(s, a_j))², as in `cascading_td_loss`. Diagnostics: ``loss/td``, ``q/mean``
    (of Q(s, A)), ``q/target_mean``.
    """
    q_slate = q_items.sum(dim=1)
    y = td_target(next_value, reward, done, gamma)
    loss = 0.5 * ((y - q_slate) ** 2).mean()
    return loss, {
        "loss/td": loss.detach(),
        "q/mean": q_slate.mean().detach(),
        "q/target_mean": y.mean().detach(),
    }
