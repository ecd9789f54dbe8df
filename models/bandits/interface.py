"""The one interface every bandit policy of design.md §6 implements.

A round, batched over ``U`` users: the caller (a run loop, or an RLlib module) builds a
``BanditContext`` from its representation model — item embeddings, the users' embeddings,
their histories — then ``policy.scores(context)`` gives acquisition scores [U, I],
``policy.select(context, k)`` a slate [U, k] of distinct item ids, and after the users
answered, ``policy.update(Feedback(...))`` folds the observed rewards into the policy's own
state (impression counts, design-matrix inverses, GLM coefficients). The representation
(SASRec, GRU, a latent-factor model) is trained by the caller, not by the policy.

Under a computation budget (``budget.py``) a policy scores only some items: it hands its own
``scores`` a restricted context (``BanditContext.restrict``), whose ``item_ids`` say which items
its rows are, and reads its per-item state through ``BanditContext.per_item``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from recrl.models.bandits.budget import CandidateDraw
from torch import Tensor


@dataclass(frozen=True)
class BanditContext:
    """What a policy may look at to score items for ``U`` users.

    Only ``user_ids``, ``item_embeddings`` and ``user_embeddings`` are always present; a
    policy that needs an optional field raises ``ValueError`` naming it when it is missing.
    """

    user_ids: Tensor
    """Global user ids [U] (long): index of the per-user state a policy keeps."""
    item_embeddings: Tensor
    """Candidate item representations x / μ [I, d1]; row ``i`` is item id ``i``."""
    user_embeddings: Tensor
    """User representations z / θ [U, d2] (REN: the sequence model's hidden state)."""
    history_embeddings: Tensor | None = None
    """Embeddings of each user's past items D [U, H, d1] (REN's diversity term)."""
    history_mask: Tensor | None = None
    """Bool [U, H]: True where ``history_embeddings`` holds a real item."""
    mc_predictions: Tensor | None = None
    """Click predictions of P dropout forward passes [P, U, I] (N-Dropout-UCB)."""
    item_ids: Tensor | None = None
    """Item ids of the rows of ``item_embeddings`` [I] (long) when the context holds part of
    the catalogue (a budget's candidates, ``restrict``); None: row ``i`` is item ``i``."""

    def __post_init__(self) -> None:
        if self.user_embeddings.shape[0] != self.user_ids.shape[0]:
            raise ValueError(
                f"user_embeddings has {self.user_embeddings.shape[0]} rows for "
                f"{self.user_ids.shape[0]} user ids; pass one embedding per scored user."
            )

    @property
    def n_items(self) -> int:
        return self.item_embeddings.shape[0]

    def per_item(self, state: Tensor) -> Tensor:
        """The rows of a per-item state tensor [n_items, ...] for this context's items."""
        return state if self.item_ids is None else state[self.item_ids]

    def restrict(self, rows: Tensor) -> BanditContext:
        """The same users with only the item rows ``rows`` [C] (long): what a policy under a
        budget scores. ``item_ids`` maps the new rows back to item ids."""
        mc = self.mc_predictions
        return dataclasses.replace(
            self,
            item_embeddings=self.item_embeddings[rows],
            mc_predictions=None if mc is None else mc[..., rows],
            item_ids=rows if self.item_ids is None else self.item_ids[rows],
        )

    def user_row(self, row: int) -> BanditContext:
        """The context of user row ``row`` alone (U = 1)."""
        one = slice(row, row + 1)

        def part(value: Tensor | None, axis: int = 0) -> Tensor | None:
            return None if value is None else value[(slice(None),) * axis + (one,)]

        return dataclasses.replace(
            self, user_ids=self.user_ids[one], user_embeddings=self.user_embeddings[one],
            history_embeddings=part(self.history_embeddings), history_mask=part(self.history_mask),
            mc_predictions=part(self.mc_predictions, axis=1),
        )  # fmt: skip

    def require(self, field: str, policy: str) -> Tensor:
        """The optional field ``field``, or a ``ValueError`` saying which policy needs it."""
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"policy {policy!r} needs BanditContext.{field}; it is None.")
        return value


@dataclass(frozen=True)
class Feedback:
    """Users' answers to the slates of one round."""

    context: BanditContext
    """The context the slates were chosen in (its embeddings enter the design matrices)."""
    slates: Tensor
    """Recommended item ids [U, k] (long)."""
    rewards: Tensor
    """Observed reward per slate position [U, k] (click 0/1, or the synthetic reward)."""

    def __post_init__(self) -> None:
        if self.context.item_ids is not None:
            raise ValueError(
                "Feedback needs the context of the whole catalogue (slates hold item ids), "
                "not a restricted one; pass the context the slate was picked in."
            )
        if self.slates.shape != self.rewards.shape:
            raise ValueError(
                f"slates {tuple(self.slates.shape)} and rewards {tuple(self.rewards.shape)} "
                "must have the same shape [U, k]."
            )


def top_k_slate(scores: Tensor, k: int) -> Tensor:
    """The ``k`` highest-scoring distinct items per row: [U, I] -> [U, k] (best first)."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"slate size k={k} must be between 1 and the {scores.shape[-1]} items.")
    return torch.topk(scores, k, dim=-1).indices


class BanditPolicy(ABC):
    """Score candidates, pick a slate, learn from feedback (design.md §6 common interface)."""

    name: str = "policy"
    reads_representation: bool = True
    """False for policies that ignore the embeddings (Random): callers may skip refits."""
    state_fields: tuple[str, ...] = ()
    """Tensor attributes that ``scores`` and ``select`` read. A copy of the policy that gets
    them (``set_state``) scores exactly like the original: how the RLlib Learner, which owns
    and updates the policy, keeps the EnvRunners' copies current. What only ``update``
    reads (feedback logs, optimiser moments) stays with the owner."""

    candidates: CandidateDraw | None = None
    """The budget's draws (``budget.py``; ``make_policy`` sets them from ``BudgetConfig``):
    when set, each round scores only the items drawn; None scores the whole catalogue."""

    @abstractmethod
    def scores(self, context: BanditContext) -> Tensor:
        """Acquisition scores [U, I] for the users and items of ``context``."""

    def select(self, context: BanditContext, k: int) -> Tensor:
        """A slate of ``k`` distinct items per user [U, k] (rows of ``context.item_embeddings``:
        item ids for a whole-catalogue context); by default the top-k scores, of the budget's
        candidates when there is one."""
        return self._top_k(context, k)[1]

    def scores_and_select(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        """(``scores`` [U, I], ``select`` [U, k]) from one scoring pass. Under a budget only
        the drawn candidates are scored; the others are -inf. A policy whose slate is not the
        top-k of its scores (REN: the scores change after each pick) overrides it; for the
        others the slate is exactly what ``select`` returns, with the same random draws
        (Random scores once)."""
        return self._top_k(context, k)

    def _top_k(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        # one body for select and scores_and_select that neither's override reaches (REN's
        # select calls the base one, its scores_and_select calls its own select)
        if self.candidates is None:
            scores = self.scores(context)
            return scores, top_k_slate(scores, k)
        if k > self.candidates.budget:
            raise ValueError(
                f"a budget of {self.candidates.budget} scores cannot fill a slate of {k}; "
                f"set budget >= {k}."
            )
        rows = self.candidates.draw(torch.arange(context.n_items))
        drawn = self.scores(context.restrict(rows))  # [U, B]: the only scores computed
        scores = drawn.new_full((len(context.user_ids), context.n_items), -torch.inf)
        scores[:, rows] = drawn
        return scores, rows[top_k_slate(drawn, k)]

    def get_state(self) -> dict[str, Tensor]:
        """The tensors of ``state_fields`` (not copies)."""
        return {name: getattr(self, name) for name in self.state_fields}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Overwrite ``state_fields`` from ``state`` (tensors or numpy arrays), in place when
        shape and dtype agree, so references held elsewhere (an optimiser) stay valid."""
        missing = [name for name in self.state_fields if name not in state]
        if missing:
            raise ValueError(f"{self.name} state lacks {missing}; it has {sorted(state)}.")
        for name in self.state_fields:
            current, value = getattr(self, name), torch.as_tensor(state[name])
            if current.shape == value.shape and current.dtype == value.dtype:
                current.copy_(value)
            else:
                setattr(self, name, value.clone())

    @abstractmethod
    def update(self, feedback: Feedback) -> None:
        """Fold one round of feedback into the policy's state."""
