"""The SASRec Q-network and the forward passes every SASRec objective needs (design.md §3-4)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from recrl.models.sasrec.augment import random_augment
from recrl.models.sasrec.encoder import QHead, SASRecConfig, SASRecEncoder, linear_columns
from recrl.models.sasrec.objective_config import SASRecObjectiveConfig
from torch import Tensor, nn


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
        """Ranking scores of every item (design.md §2: the CE head by default, or the Q head)."""
        s = self.encoder.encode(state, state_len)
        return self.q_head(s) if head == "q" else self.encoder.supervised_logits(s)


@dataclass
class ObjectiveInputs:
    """Network outputs the objective composes; ``None`` where the config does not need it.

    Q values enter at the items the objective reads: `q_at` gives the trained network's
    Q(s, a) with gradient at any few items per row (the logged action, the negatives), and
    the TD targets arrive as one double-Q value per row. Only ``cql_actions="all"`` (and the
    ``full_products`` reference of `objective_inputs`) fills ``q`` over the whole catalogue.
    """

    logits: Tensor
    """Trained network's supervised logits at s, [B, I]."""
    state: Tensor | None = None
    """Trained network's state vector s, [B, H] (with gradient)."""
    q_weight: Tensor | None = None
    q_bias: Tensor | None = None
    """Trained network's Q head, item table [I, H] and bias [I], as views made in the forward
    pass: the gradient of `q_at` reaches the head through them, and so does DDP's search for
    the parameters a forward pass used (it walks back from the outputs, and would count a
    head used only after the forward pass as unused, then fail when its gradient arrives)."""
    q: Tensor | None = None
    """Trained network's Q(s, ·), [B, I] (with gradient); only where every column is needed."""
    q_mean: Tensor | None = None
    """Mean of Q(s, ·) over the batch and every item (detached diagnostic), a scalar."""
    next_value: Tensor | None = None
    """Double-Q value of s': Q_other(s', argmax_a Q_trained(s', a)), [B] (no gradient)."""
    stay_value: Tensor | None = None
    """Double-Q value of s for the negative-action targets: Q_other(s, argmax_a
    Q_trained(s, a)), [B] (no gradient)."""
    z1: Tensor | None = None
    z2: Tensor | None = None
    """State vectors of the two augmented views, [B, H]."""

    def q_at(self, items: Tensor) -> Tensor:
        """Trained network's Q(s_b, items[b, k]), [B, K] float32, with gradient.

        Read from ``q`` when it was computed whole, else from s and the K rows of the Q head
        (`linear_columns`): B·K·H operations instead of B·I·H, forward and backward.
        """
        if self.q is not None:
            return self.q.gather(1, items.long()).float()
        if self.state is None or self.q_weight is None or self.q_bias is None:
            raise ValueError("these ObjectiveInputs have no Q head: the objective uses no Q")
        return linear_columns(self.state, self.q_weight, self.q_bias, items)


def objective_inputs(
    trained: SASRecQNetwork,
    other: SASRecQNetwork | None,
    batch: dict[str, Tensor],
    config: SASRecObjectiveConfig,
    generator: torch.Generator,
    *,
    full_products: bool = False,
) -> ObjectiveInputs:
    """Run the forward passes ``config`` needs, sharing one encoder pass where it can.

    ``trained`` gets gradients; ``other`` (the second twin or the Polyak target) only
    gives targets. The state and both augmented views go through ``trained`` as one batch,
    in the mode the caller set (train mode: dropout on). Every pass that feeds a TD target
    runs without gradient in eval mode: no dropout noise reaches a target, as in
    `td_target`'s definition ``y = r + γ·Q_target(s', argmax_a Q_online(s', a))``.

    Only what each term reads is computed: the CE needs the supervised logits over every
    item; the greedy picks of double Q need ``trained``'s Q over every item at s' (and at s
    for the negative-action targets), but ``other`` is evaluated at the picked item alone;
    the TD, negative-TD, CQL and SA2C terms read the trained Q at a few items per row
    (`ObjectiveInputs.q_at`). ``full_products=True`` computes every Q as a full [B, I]
    product and gathers from it, as this function did before; it gives the same losses and
    gradients (up to float rounding) and stays as the reference that tests and
    ``benchmarks/train_bench.py`` compare the cheaper path against.
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
    head = trained.q_head.linear
    out.state = s
    out.q_weight, out.q_bias = head.weight.view_as(head.weight), head.bias.view_as(head.bias)
    if full_products or (config.cql_alpha > 0 and config.cql_actions == "all"):
        out.q = trained.q_head(s)
        out.q_mean = out.q.detach().float().mean()
    else:
        out.q_mean = trained.q_head.mean(s.detach())
    if config.td_weight > 0:
        if other is None:
            raise ValueError("TD targets need a second network (twin or target)")
        rows, row_lens = batch["next_state"].long(), batch["next_state_len"].long()
        if config.n_neg > 0:
            # s' and s in one pass of each network: fewer, larger kernels.
            rows, row_lens = torch.cat([rows, state]), torch.cat([row_lens, state_len])
        with torch.no_grad(), eval_mode(trained, other):
            values = double_q_values(trained, other, rows, row_lens, full_products=full_products)
        out.next_value = values[:b]
        if config.n_neg > 0:
            out.stay_value = values[b:]
    return out


def double_q_values(
    online: SASRecQNetwork,
    target: SASRecQNetwork,
    state: Tensor,
    state_len: Tensor,
    *,
    full_products: bool = False,
) -> Tensor:
    """``Q_target(x, argmax_a Q_online(x, a))`` [R] for each row x of ``state`` [R, L].

    The greedy pick needs ``online``'s Q over every item; ``target`` is evaluated at the
    picked item alone (``full_products``: over every item, then gathered). Ties go to the
    lowest item id (``argmax``). Call it without gradient, in the mode the targets need.
    """
    if full_products:
        greedy = online.q_values(state, state_len).argmax(dim=1, keepdim=True)  # [R, 1]
        return target.q_values(state, state_len).gather(1, greedy).squeeze(1)
    greedy = online.q_head.greedy(online.encoder.encode(state, state_len)).unsqueeze(1)
    return target.q_head.at(target.encoder.encode(state, state_len), greedy).squeeze(1)


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
