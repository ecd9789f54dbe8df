"""One-step TD objectives with double Q-learning (SQN, Xin et al. 2020; SNQN, Xin et al. 2022).

The seed paper (SASRec-CCQL) writes the TD loss as its eq. (1) (§3.1),
``L_Q = E[(r + γ max_a' Q(s', a') − Q(s, a))²]``; SPEC §4 replaces the max by double Q:
the online network picks the action and the target network values it.
"""

from __future__ import annotations

from torch import Tensor


def double_q_targets(
    q_next_online: Tensor,
    q_next_target: Tensor,
    reward: Tensor,
    done: Tensor,
    gamma: float,
) -> Tensor:
    """Double-Q TD target ``y = r + γ·(1 − done)·Q_target(s', argmax_a Q_online(s', a))``.

    Shapes: ``q_next_online``, ``q_next_target`` [B, I]; ``reward`` [B] float; ``done`` [B]
    (bool or 0/1). Returns ``y`` [B], detached. With the SQN recipe of two networks swapped at
    random, "online" is the network being trained and "target" is the other one.
    """
    a_star = q_next_online.detach().argmax(dim=1, keepdim=True)  # [B, 1]
    q_star = q_next_target.detach().gather(1, a_star).squeeze(1).float()  # [B]
    not_done = 1.0 - done.float()
    return (reward.float() + gamma * not_done * q_star).detach()


def td_loss(q: Tensor, actions: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """TD loss ``L_TD = 1/B · Σ_b ½ (y_b − Q(s_b, a_b))²`` (SPEC §4 "TD"; paper eq. (1)).

    Shapes: ``q`` = Q_online(s, ·) [B, I] (carries the gradient), ``actions`` [B] int,
    ``targets`` = ``double_q_targets(...)`` [B] (treated as constants).

    Diagnostics: ``loss/td``, ``q/mean`` and ``q/max`` (over Q(s, a_data)), ``q/td_error``
    (mean |y − Q(s, a)|), ``q/target_mean`` and ``q/all_mean`` (mean over the whole [B, I]).
    """
    q_sa = q.gather(1, actions.long().unsqueeze(1)).squeeze(1).float()  # [B]
    y = targets.detach().float()
    error = y - q_sa
    loss = 0.5 * error.pow(2).mean()
    q_sa_d = q_sa.detach()
    return loss, {
        "loss/td": loss.detach(),
        "q/mean": q_sa_d.mean(),
        "q/max": q_sa_d.max(),
        "q/td_error": error.detach().abs().mean(),
        "q/target_mean": y.mean(),
        "q/all_mean": q.detach().float().mean(),
    }


def negative_td_loss(
    q: Tensor,
    negatives: Tensor,
    q_target: Tensor,
    gamma: float,
    q_select: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """TD terms of sampled negative actions (SNQN, Xin et al. 2022; SPEC §4 "Negative actions").

    Each negative ``a⁻`` of row b is a transition ``(s_b, a⁻, r = 0, s' = s_b)``: the user was
    shown ``a⁻``, did not take it, and stays in ``s_b``. With double Q its target is

        ``y⁻_b = 0 + γ · Q_target(s_b, argmax_a Q_online(s_b, a))``

    (one value per row, shared by its N negatives; ``Q_online`` of the argmax is ``q_select``,
    the online network's eval-mode pass, or ``q`` itself when None), and the loss is

        ``L_neg = 1/B · Σ_b Σ_n ½ (y⁻_b − Q_online(s_b, a⁻_bn))²``.

    Choices, each deliberate:
    - ``s' = s``, so the target network's Q of s' is its Q of s (computed in the same pass
      as its Q of the logged transitions' s').
    - No ``done`` masking: ``done`` says the session ended after the *logged* action; in the
      counterfactual "a⁻ was ignored and the user stays in s" nothing ends the session, so the
      negative always bootstraps (the SNQN reference code does the same).
    - Sum over the N negatives, mean over the batch: every negative weighs as much as one logged
      transition in ``td_loss`` (the SNQN reference code sums N batch-means, which is equal).

    Shapes: ``q`` = Q_online(s, ·) [B, I] (carries the gradient), ``negatives`` [B, N] int,
    ``q_target`` = Q_target(s, ·) [B, I], ``q_select`` [B, I] or None. Diagnostics:
    ``loss/td_neg``, ``q/neg_mean``, ``q/neg_target_mean``.
    """
    a_star = (q if q_select is None else q_select).detach().argmax(dim=1, keepdim=True)  # [B, 1]
    y_neg = gamma * q_target.detach().gather(1, a_star).float()  # [B, 1], broadcasts over N
    q_neg = q.gather(1, negatives.long()).float()  # [B, N]
    loss = 0.5 * (y_neg - q_neg).pow(2).sum(dim=1).mean()
    return loss, {
        "loss/td_neg": loss.detach(),
        "q/neg_mean": q_neg.detach().mean(),
        "q/neg_target_mean": y_neg.mean(),
    }
