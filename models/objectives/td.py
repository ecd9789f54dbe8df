"""One-step TD objectives with double Q-learning (SQN, Xin et al. 2020; SNQN, Xin et al. 2022).

The seed paper (SASRec-CCQL) writes the TD loss as its eq. (1) (§3.1),
``L_Q = E[(r + γ max_a' Q(s', a') − Q(s, a))²]``; design.md §4 replaces the max by double Q:
the online network picks the action and the target network values it.

The losses take Q values at the actions they read (``[B]`` or ``[B, N]``), not Q(s, ·) over
the whole catalogue: only the greedy pick needs every item, and it happens where the
networks run (`recrl.models.sasrec.network.objective_inputs`), which then evaluates the target
network at the picked item alone.
"""

from __future__ import annotations

from torch import Tensor


def td_target(next_value: Tensor, reward: Tensor, done: Tensor, gamma: float) -> Tensor:
    """TD target ``y = r + γ·(1 − done)·V(s')``, detached: the one target of every Q-learning
    loss in recrl, the SASRec family's and the slate Q-networks'.

    ``next_value`` [B] is the double-Q value of s', ``Q_target(s', argmax_a Q_online(s', a))``:
    the target network's value of the online network's greedy action over every item (SASRec)
    or of its greedy slate (cascading DQN, Algorithm 1). ``reward`` [B] float; ``done`` [B]
    (bool or 0/1). With the SQN recipe of two networks swapped at random, "online" is the
    network being trained and "target" is the other one.
    """
    not_done = 1.0 - done.float()
    return (reward.float() + gamma * not_done * next_value.detach().float()).detach()


def td_loss(q_data: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """TD loss ``L_TD = 1/B · Σ_b ½ (y_b − Q(s_b, a_b))²`` (design.md §4 "TD"; paper eq. (1)).

    Shapes: ``q_data`` = Q_online(s_b, a_b) [B] at the logged action (carries the gradient),
    ``targets`` = ``td_target(...)`` [B] (treated as constants).

    Diagnostics: ``loss/td``, ``q/mean`` and ``q/max`` (over Q(s, a_data)), ``q/td_error``
    (mean |y − Q(s, a)|) and ``q/target_mean``.
    """
    q_sa = q_data.float()
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
    }


def negative_td_loss(
    q_neg: Tensor, stay_value: Tensor, gamma: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """TD terms of sampled negative actions (SNQN, Xin et al. 2022; design.md §4.4).

    Each negative ``a⁻`` of row b is a transition ``(s_b, a⁻, r = 0, s' = s_b)``: the user was
    shown ``a⁻``, did not take it, and stays in ``s_b``. With double Q its target is

        ``y⁻_b = 0 + γ · Q_target(s_b, argmax_a Q_online(s_b, a))``

    (one value per row, shared by its N negatives; ``stay_value`` is the double-Q value
    ``Q_target(s_b, argmax_a Q_online(s_b, a))``, the argmax taken on the online network's
    eval-mode pass, not on the dropout-noised one that carries the gradient), and the loss is

        ``L_neg = 1/B · Σ_b Σ_n ½ (y⁻_b − Q_online(s_b, a⁻_bn))²``.

    Choices, each deliberate:
    - ``s' = s``, so the target network's Q of s' is its Q of s (computed in the same pass
      as its Q of the logged transitions' s').
    - No ``done`` masking: ``done`` says the session ended after the *logged* action; in the
      counterfactual "a⁻ was ignored and the user stays in s" nothing ends the session, so the
      negative always bootstraps (the SNQN reference code does the same).
    - Sum over the N negatives, mean over the batch: every negative weighs as much as one logged
      transition in ``td_loss`` (the SNQN reference code sums N batch-means, which is equal).

    Shapes: ``q_neg`` = Q_online(s_b, a⁻_bn) [B, N] (carries the gradient), ``stay_value``
    [B]. Diagnostics: ``loss/td_neg``, ``q/neg_mean``, ``q/neg_target_mean``.
    """
    y_neg = gamma * stay_value.detach().float().unsqueeze(1)  # [B, 1], broadcasts over N
    q_neg = q_neg.float()
    loss = 0.5 * (y_neg - q_neg).pow(2).sum(dim=1).mean()
    return loss, {
        "loss/td_neg": loss.detach(),
        "q/neg_mean": q_neg.detach().mean(),
        "q/neg_target_mean": y_neg.mean(),
    }
