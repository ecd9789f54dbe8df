"""The SASRec Q-network and the forward passes every SASRec objective needs (SPEC §3-4)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.sasrec.augment import random_augment
from models.sasrec.encoder import QHead, SASRecConfig, SASRecEncoder
from models.sasrec.objective_config import SASRecObjectiveConfig


class SASRecQNetwork(nn.Module):
    """SASRec encoder with a supervised head (logits) and a Q head, both over all items."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.encoder = SASRecEncoder(n_items, config)
        self.q_head = QHead(config.hidden_size, n_items)

    def forward(self, state: Tensor, state_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the state vector [B, H], supervised logits [B, I] and Q values [B, I]."""
        s = self.encoder.encode(state, state_len)
        return s, self.encoder.supervised_logits(s), self.q_head(s)

    def q_values(self, state: Tensor, state_len: Tensor) -> Tensor:
        """Q(s, ·) [B, I] alone: target passes need no supervised logits (a second
        [B, H] x [H, I] product per pass)."""
        return self.q_head(self.encoder.encode(state, state_len))

    def score_all(self, state: Tensor, state_len: Tensor, head: str = "supervised") -> Tensor:
        """Ranking scores of every item (SPEC §2: the CE head by default, or the Q head)."""
        s = self.encoder.encode(state, state_len)
        return self.q_head(s) if head == "q" else self.encoder.supervised_logits(s)


@dataclass
class ObjectiveInputs:
    """Network outputs the objective composes; ``None`` where the config does not need it."""

    logits: Tensor
    """Trained network's supervised logits at s, [B, I]."""
    q: Tensor | None = None
    """Trained network's Q(s, ·), [B, I]."""
    q_next: Tensor | None = None
    """Trained network's Q(s', ·) (no gradient; picks the argmax), [B, I]."""
    q_next_target: Tensor | None = None
    """Other/target network's Q(s', ·) (values the argmax), [B, I]."""
    q_target: Tensor | None = None
    """Other/target network's Q(s, ·) for the negative-action targets, [B, I]."""
    q_select: Tensor | None = None
    """Trained network's Q(s, ·) in eval mode (no gradient; picks the argmax of the
    negative-action targets), [B, I]."""
    z1: Tensor | None = None
    z2: Tensor | None = None
    """State vectors of the two augmented views, [B, H]."""


def objective_inputs(
    trained: SASRecQNetwork,
    other: SASRecQNetwork | None,
    batch: dict[str, Tensor],
    config: SASRecObjectiveConfig,
    generator: torch.Generator,
) -> ObjectiveInputs:
    """Run the forward passes ``config`` needs, sharing one encoder pass where it can.

    ``trained`` gets gradients; ``other`` (the second twin or the Polyak target) only
    gives targets. The state and both augmented views go through ``trained`` as one batch,
    in the mode the caller set (train mode: dropout on). Every pass that feeds a TD target
    (``q_next``, ``q_select`` of ``trained``; ``q_next_target``, ``q_target`` of ``other``)
    runs without gradient in eval mode: no dropout noise reaches a target, as in
    `double_q_targets`' definition ``y = r + γ·Q_target(s', argmax_a Q_online(s', a))``.
    """
    state, state_len = batch["state"].long(), batch["state_len"].long()
    pad, mask = trained.encoder.pad_id, trained.encoder.mask_id
    states, lengths = [state], [state_len]
    if config.co_weight > 0:
        for _ in range(2):
            view, view_len = random_augment(state, state_len, config.augment, pad, mask, generator)
            states.append(view)
            lengths.append(view_len)
    s_all = trained.encoder.encode(torch.cat(states), torch.cat(lengths))
    b = state.shape[0]
    s = s_all[:b]
    out = ObjectiveInputs(logits=trained.encoder.supervised_logits(s))
    if config.co_weight > 0:
        out.z1, out.z2 = s_all[b : 2 * b], s_all[2 * b :]
    if not config.uses_q:
        return out
    out.q = trained.q_head(s)
    if config.td_weight > 0:
        if other is None:
            raise ValueError("TD targets need a second network (twin or target)")
        next_state, next_len = batch["next_state"].long(), batch["next_state_len"].long()
        with torch.no_grad(), eval_mode(trained, other):
            if config.n_neg > 0:
                # One pass of each network over s' and s: fewer, larger kernels.
                both_states = torch.cat([next_state, state]), torch.cat([next_len, state_len])
                online, target = trained.q_values(*both_states), other.q_values(*both_states)
                out.q_next, out.q_select = online[:b], online[b:]
                out.q_next_target, out.q_target = target[:b], target[b:]
            else:
                out.q_next = trained.q_values(next_state, next_len)
                out.q_next_target = other.q_values(next_state, next_len)
    return out


@contextmanager
def eval_mode(*networks: nn.Module) -> Iterator[None]:
    """Put ``networks`` in eval mode (dropout off) and restore every submodule's own mode."""
    modes = [(m, m.training) for net in networks for m in net.modules()]
    for net in networks:
        net.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
