"""Two-stage topic → item exploration (two-stage paper §3.1–3.2, Algorithms 1 and 2; design.md §6).

Stage one scores topics with a bandit policy over topics (``α₁``), sorts them and builds ``m``
topic groups with DynaTopicRec: group ``j`` starts as the ``j``-th best topic, and, in turns,
every group holding fewer than ``p`` items takes the best topic left, until all groups hold
``≥ p`` items or no topic is left (design.md §6: "grow each of the m top topic groups with the next
best topics until it holds ≥ p items"; the paper's Alg. 2 writes the test as ``c_i ≤ p``).
Stage two fills slot ``j`` with the item of highest item score (``α₂``) in group ``j``.
Groups are disjoint, so the ``m`` items are distinct.

Topic representations: the paper trains a topic encoder; here a topic's representation is
the mean representation of its items (the same item tower, so no second encoder to train),
and the user representation is shared by both stages. A topic's Monte-Carlo dropout
predictions (N-Dropout-UCB) are likewise the mean of its items': the click prediction is linear
in the item representation (``zᵀx + b``), so that mean is the prediction of the mean item.
Both stages learn from every shown item: the item policy from (item, click), the topic policy
from (the item's topic, click).

Budget ``B`` (paper §4, "Computational budget"; ``budget.py``): at most ``B`` acquisition
scores per round — all ``q`` topics, then ``B − q`` items drawn uniformly from the groups'
items. So that the groups can hold the budget, ``p`` is raised to ``⌈B/m⌉`` when smaller
(the paper sets ``p`` to the per-recommendation budget): the ``m`` groups then hold at least
``B`` items in total. Without a budget the item stage scores every item of the groups. Either
way only those items are scored, which is where the two-stage form saves time (paper §3.2:
``O(N_topic + N_item/N_topic)`` instead of ``O(N_item)`` for balanced topics).

2-Random (the paper's two-stage Random) is this policy with Random in both stages: random topic
order, then a uniformly drawn item of each group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from recrl.models.bandits.budget import BudgetConfig, CandidateDraw
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from torch import Tensor


@dataclass(frozen=True)
class TwoStageConfig(BudgetConfig):
    """Two-stage topic → item policy: one bandit family for both stages (``budget``: B)."""

    policy: str = "s-n-galm-ucb"
    """Policy family of both stages (a name of ``POLICIES`` that needs no histories at topic
    level: random, n-greedy, n-dropout-ucb, n-glm-ucb, s-n-galm-ucb, s-n-gblm-ucb, ...)."""
    min_group_items: int = 50
    """p, the minimum items of a topic group, raised to ⌈B/m⌉ under a budget. The paper uses
    1,000 for catalogues of 27k–161k items; 50 is the same share of MovieLens-100K's 1,682."""
    beta: float | None = None
    """β of both stages when the family has one; None keeps the family's default (0.1)."""
    seed: int = 0
    """Seed of the budget's item draws."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_group_items < 1:
            raise ValueError(f"min_group_items must be >= 1, got {self.min_group_items}.")

    def group_size(self, m: int) -> int:
        """p of a round with ``m`` slots: ``min_group_items``, or ⌈B/m⌉ when larger, so
        that the groups hold at least B items in total."""
        if self.budget is None:
            return self.min_group_items
        return max(self.min_group_items, math.ceil(self.budget / m))


def topic_groups(sorted_topics: list[int], topic_sizes: list[int], m: int, p: int) -> list[list]:
    """DynaTopicRec (paper Alg. 2): ``m`` groups of topic ids from topics sorted best first.

    ``topic_sizes[v]`` = items of topic ``v``. Group ``j`` starts as ``[sorted_topics[j]]``;
    then, in rounds over ``j = 0..m-1``, a group with fewer than ``p`` items takes the next
    topic of the list, until every group has ``≥ p`` items or the list is empty.
    """
    if m > len(sorted_topics):
        raise ValueError(
            f"{m} recommendation slots need at least {m} topics; there are {len(sorted_topics)}."
        )
    groups = [[topic] for topic in sorted_topics[:m]]
    counts = [topic_sizes[topic] for topic in sorted_topics[:m]]
    rest = list(sorted_topics[m:])
    while rest and min(counts) < p:
        for j in range(m):
            if counts[j] < p and rest:
                topic = rest.pop(0)
                groups[j].append(topic)
                counts[j] += topic_sizes[topic]
    return groups


class TwoStagePolicy(BanditPolicy):
    """``topic_policy`` over topic representations, ``item_policy`` over items (module
    docstring). ``item_topics`` [I]: topic id of every item, ``0..q-1``."""

    name = "two-stage"

    def __init__(
        self,
        topic_policy: BanditPolicy,
        item_policy: BanditPolicy,
        item_topics: Tensor,
        config: TwoStageConfig | None = None,
    ) -> None:
        self.config = config or TwoStageConfig()
        self.topic_policy, self.item_policy = topic_policy, item_policy
        self.item_topics = torch.as_tensor(item_topics).long()
        if len(self.item_topics) == 0 or self.item_topics.min() < 0:
            raise ValueError("item_topics must give every item a topic id >= 0.")
        self.n_topics = int(self.item_topics.max()) + 1
        self.topic_sizes = torch.bincount(self.item_topics, minlength=self.n_topics)
        budget = self.config.budget
        self.item_draws = None if budget is None else CandidateDraw(budget, self.config.seed)
        """Draws of the budget's items from the groups (None: no budget)."""
        self.reads_representation = item_policy.reads_representation

    def get_state(self) -> dict[str, Tensor]:
        state = {f"topic/{k}": v for k, v in self.topic_policy.get_state().items()}
        state.update({f"item/{k}": v for k, v in self.item_policy.get_state().items()})
        return state

    def set_state(self, state) -> None:
        for prefix, policy in (("topic/", self.topic_policy), ("item/", self.item_policy)):
            policy.set_state(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def topic_context(self, context: BanditContext) -> BanditContext:
        """Context of stage one: topic representations = mean item representation [q, d],
        topic MC-dropout predictions = mean of the items' [P, U, q] (module docstring)."""
        items = context.item_embeddings
        if len(items) != len(self.item_topics):
            raise ValueError(
                f"context has {len(items)} items, the policy knows topics of "
                f"{len(self.item_topics)}; build it with the environment's item_topics."
            )
        counts = self.topic_sizes.clamp_min(1).to(items.dtype)
        sums = torch.zeros(self.n_topics, items.shape[1], dtype=items.dtype)
        means = sums.index_add_(0, self.item_topics, items) / counts.unsqueeze(1)
        mc = context.mc_predictions
        if mc is not None:
            mc_sums = mc.new_zeros(*mc.shape[:-1], self.n_topics)
            mc = mc_sums.index_add_(-1, self.item_topics, mc) / counts
        return BanditContext(context.user_ids, means, context.user_embeddings, mc_predictions=mc)

    def topic_scores(self, context: BanditContext) -> Tensor:
        """α₁ [U, q]."""
        return self.topic_policy.scores(self.topic_context(context))

    def scores(self, context: BanditContext) -> Tensor:
        """α₂ [U, I], the item stage's scores over the whole catalogue."""
        return self.item_policy.scores(context)

    def scores_and_select(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        """(α₂ [U, I] of the items the round scored, -inf elsewhere; the slate [U, k])."""
        return self._select(context, k)

    def select(self, context: BanditContext, k: int) -> Tensor:
        return self._select(context, k)[1]

    def _select(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        topic_scores = self.topic_scores(context)
        sizes, p = self.topic_sizes.tolist(), self.config.group_size(k)
        shape, dtype = (len(context.user_ids), context.n_items), context.item_embeddings.dtype
        scores = torch.full(shape, -torch.inf, dtype=dtype)
        slates = []
        for row in range(len(context.user_ids)):
            order = torch.argsort(topic_scores[row], descending=True, stable=True).tolist()
            slot_of_topic = torch.full((self.n_topics,), -1)
            for j, group in enumerate(topic_groups(order, sizes, k, p)):
                slot_of_topic[group] = j
            item_slots = slot_of_topic[self.item_topics]  # [I]: the item's group, -1 if none
            items = self._candidates(item_slots, k)  # [C] item ids: the only items scored
            row_scores = self.item_policy.scores(context.user_row(row).restrict(items))[0]
            scores[row, items] = row_scores.to(dtype)
            slates.append(self._slot_picks(item_slots[items], items, row_scores, k))
        return scores, torch.tensor(slates, dtype=torch.long)

    @staticmethod
    def _slot_picks(slots: Tensor, items: Tensor, item_scores: Tensor, m: int) -> list[int]:
        """Slot ``j``'s item: the best of the candidates ``items`` [C] (groups ``slots`` [C],
        scores [C]) in group ``j < m``. Groups are disjoint, so the picks are distinct. A group
        the budget's draw left without a candidate takes the best candidate no slot took."""
        in_slot = slots == torch.arange(m).unsqueeze(1)  # [m, C]
        picks = item_scores.masked_fill(~in_slot, -torch.inf).argmax(1)  # [m] candidate rows
        empty = (~in_slot.any(1)).nonzero().squeeze(1).tolist()
        if empty:
            taken = torch.zeros(len(items), dtype=torch.bool)
            taken[picks[in_slot.any(1)]] = True
            for j in empty:
                picks[j] = item_scores.masked_fill(taken, -torch.inf).argmax()
                taken[picks[j]] = True
        return items[picks].tolist()

    def _candidates(self, item_slots: Tensor, m: int) -> Tensor:
        """Item ids [C] of the ``m`` groups (``item_slots`` [I]: each item's group or -1),
        subsampled to the budget left after the topics."""
        pool = (item_slots >= 0).nonzero().squeeze(1)
        if self.item_draws is None:
            return pool
        # the topics spent q scores; at least one item per slot stays, however small B is
        return self.item_draws.draw(pool, max(self.item_draws.budget - self.n_topics, m))

    def update(self, feedback: Feedback) -> None:
        """Item stage: the shown items; topic stage: their topics, same rewards."""
        self.item_policy.update(feedback)
        topic_context = self.topic_context(feedback.context)
        topics = self.item_topics[feedback.slates]
        self.topic_policy.update(Feedback(topic_context, topics, feedback.rewards))
