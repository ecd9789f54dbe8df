"""A two-tower representation for bandit runs built on the SASRec encoder (design.md §6: "item/user
embeddings come from a trained sequence model").

User tower: ``SASRecEncoder`` over the user's last ``max_len`` chosen items, giving z_u = θ_t
(REN: θ_t = R(D_t)); item tower: the same encoder's item-embedding table, so x_i = μ_i lives in
the space the encoder reads (tied weights, as REN assumes). The click/reward prediction is
``ŷ(u, i) = z_uᵀx_i + b_i``, trained with binary cross-entropy on every observed (history at
the time, item, reward) row — rewards are clipped to [0, 1] as soft labels. It is retrained
every ``refit_interval`` rounds of the run loop (the two-stage paper retrains its encoders
every 100 rounds), ``steps_per_refit`` minibatch Adam steps each time.

Monte-Carlo dropout (N-Dropout-UCB): ``mc_predictions`` runs the user tower with its dropout
layers on, once per pass, and scores every item with the resulting state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from recrl.models.bandits.adam import Adam
from recrl.models.sasrec.encoder import SASRecConfig, SASRecEncoder
from torch import Tensor


@dataclass(frozen=True)
class SequenceRepresentationConfig:
    """SASRec two-tower trained online on bandit feedback."""

    hidden_size: int = 32
    """H, width of item and user embeddings (the REN paper's RNNs use 32)."""
    max_len: int = 20
    """Most recent chosen items read by the user tower."""
    num_blocks: int = 1
    """Transformer blocks."""
    num_heads: int = 1
    """Attention heads."""
    encoder_dropout: float = 0.2
    """Dropout of the encoder; also the MC-dropout rate (two-stage paper: 0.2)."""
    encoder_lr: float = 0.005
    """Adam learning rate of the encoder refits."""
    steps_per_refit: int = 20
    """Minibatch steps per refit."""
    batch_size: int = 256
    """Rows per minibatch (drawn uniformly from everything observed)."""


def encoder_adam_step(encoder: SASRecEncoder, optimisers: dict[str, Adam], loss: Tensor) -> None:
    """One step of ``optimisers`` (an `Adam` per named parameter of ``encoder``) on ``loss``;
    the item table's padding row stays zero."""
    encoder.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            if parameter.grad is not None:
                optimisers[name].step(parameter.grad)
        encoder.item_embedding.weight[encoder.item_embedding.padding_idx].zero_()


class SequenceRepresentation:
    """Online SASRec two-tower: observe rows, refit, read embeddings and MC predictions."""

    def __init__(
        self, n_items: int, config: SequenceRepresentationConfig | None = None, seed: int = 0
    ) -> None:
        self.config = config = config or SequenceRepresentationConfig()
        torch.manual_seed(seed)  # the encoder's initialisation
        self.encoder = SASRecEncoder(
            n_items,
            SASRecConfig(
                hidden_size=config.hidden_size, max_len=config.max_len,
                num_blocks=config.num_blocks, num_heads=config.num_heads,
                dropout=config.encoder_dropout, tie_supervised_head=True,
            ),
        )  # fmt: skip
        self.encoder.eval()
        self.n_items = n_items
        self.generator = torch.Generator().manual_seed(seed)
        self._optimisers = {
            name: Adam(p, config.encoder_lr) for name, p in self.encoder.named_parameters()
        }
        self._states: list[Tensor] = []
        self._lengths: list[Tensor] = []
        self._items: list[Tensor] = []
        self._targets: list[Tensor] = []

    def states(self, history: Tensor, history_len: Tensor) -> tuple[Tensor, Tensor]:
        """Last ``max_len`` items of left-padded histories [U, H] (pad = n_items) -> the
        encoder's ``state`` [U, L] and ``state_len`` [U]."""
        length = self.config.max_len
        if history.shape[1] < length:
            pad = torch.full((len(history), length - history.shape[1]), self.n_items)
            history = torch.cat([pad, history], 1)
        return history[:, -length:].long(), history_len.clamp_max(length).long()

    @property
    def item_embeddings(self) -> Tensor:
        """x_i = μ_i [I, H] (the tied item table, pad row excluded)."""
        return self.encoder.item_embedding.weight[: self.n_items].detach()

    @torch.no_grad()
    def user_embeddings(self, state: Tensor, state_len: Tensor) -> Tensor:
        """z_u = θ_t [U, H] with dropout off."""
        return self.encoder.encode(state, state_len)

    @torch.no_grad()
    def predictions(self, state: Tensor, state_len: Tensor) -> Tensor:
        """ŷ [U, I] = z_uᵀx_i + b_i."""
        return self.encoder.supervised_logits(self.user_embeddings(state, state_len))

    @torch.no_grad()
    def mc_predictions(self, state: Tensor, state_len: Tensor, passes: int) -> Tensor:
        """[P, U, I] predictions of ``passes`` forward passes with dropout on."""
        self.encoder.train()
        try:
            out = [
                self.encoder.supervised_logits(self.encoder.encode(state, state_len))
                for _ in range(passes)
            ]
        finally:
            self.encoder.eval()
        return torch.stack(out)

    def observe(self, state: Tensor, state_len: Tensor, items: Tensor, targets: Tensor) -> None:
        """Record rows: the user's state when the items were shown, item ids, rewards."""
        self._states.append(state.reshape(-1, self.config.max_len))
        self._lengths.append(state_len.reshape(-1))
        self._items.append(items.reshape(-1).long())
        self._targets.append(targets.reshape(-1).float().clamp(0.0, 1.0))

    def refit(self) -> float:
        """``steps_per_refit`` Adam steps of BCE on uniform minibatches; returns the last loss."""
        if not self._targets:
            return float("nan")
        state, lengths = torch.cat(self._states), torch.cat(self._lengths)
        items, targets = torch.cat(self._items), torch.cat(self._targets)
        self._states, self._lengths = [state], [lengths]
        self._items, self._targets = [items], [targets]
        self.encoder.train()
        loss = torch.zeros(())
        try:
            for _ in range(self.config.steps_per_refit):
                rows = torch.randint(
                    len(items), (self.config.batch_size,), generator=self.generator
                )
                s = self.encoder.encode(state[rows], lengths[rows])
                weight = self.encoder.item_embedding.weight[items[rows]]
                logits = (s * weight).sum(-1) + self.encoder.supervised_bias[items[rows]]
                loss = F.binary_cross_entropy_with_logits(logits, targets[rows])
                encoder_adam_step(self.encoder, self._optimisers, loss)
        finally:
            self.encoder.eval()
        return float(loss.detach())
