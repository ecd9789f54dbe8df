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
and the user representation is shared by both stages. Both stages learn from every shown
item: the item policy from (item, click), the topic policy from (the item's topic, click).

Budget ``B`` (paper §4, "Computational budget"): at most ``B`` acquisition scores per round —
all ``q`` topics, then at most ``B − q`` items, drawn uniformly from the groups' items when
they hold more. The budget limits the candidates a slate can use, which is what the paper's
CTR comparison measures; the item stage still evaluates its scores on the whole catalogue
(the policies keep per-item state indexed by item id), so it saves no time here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from torch import Tensor


@dataclass(frozen=True)
class TwoStageConfig:
    """Two-stage topic → item policy: one bandit family for both stages."""

    policy: str = "s-n-galm-ucb"
    """Policy family of both stages (a name of ``POLICIES`` that needs neither MC-dropout
    passes nor histories at topic level: greedy, n-greedy, glm-ucb, s-n-galm-ucb, ...)."""
    min_group_items: int = 50
    """p, the minimum items of a topic group. The paper uses 1,000 for catalogues of 27k–161k
    items; 50 is the same share of MovieLens-100K's 1,682 items."""
    budget: int | None = None
    """B, acquisition scores per round (topics + items); None = no limit. The paper: 200 per
    recommendation on MovieLens."""
    beta: float | None = None
    """β of both stages when the family has one; None keeps the family's default (0.1)."""
    seed: int = 0
    """Seed of the budget's item draws."""

    def __post_init__(self) -> None:
        if self.min_group_items < 1:
            raise ValueError(f"min_group_items must be >= 1, got {self.min_group_items}.")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1 or None, got {self.budget}.")


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
        self.generator = torch.Generator().manual_seed(self.config.seed)
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
        """Context of stage one: topic representations = mean item representation [q, d]."""
        items = context.item_embeddings
        if len(items) != len(self.item_topics):
            raise ValueError(
                f"context has {len(items)} items, the policy knows topics of "
                f"{len(self.item_topics)}; build it with the environment's item_topics."
            )
        sums = torch.zeros(self.n_topics, items.shape[1], dtype=items.dtype)
        sums.index_add_(0, self.item_topics, items)
        means = sums / self.topic_sizes.clamp_min(1).unsqueeze(1).to(items.dtype)
        return BanditContext(context.user_ids, means, context.user_embeddings)

    def topic_scores(self, context: BanditContext) -> Tensor:
        """α₁ [U, q]."""
        return self.topic_policy.scores(self.topic_context(context))

    def scores(self, context: BanditContext) -> Tensor:
        """α₂ [U, I], the item stage's scores (what slot-wise picks compare)."""
        return self.item_policy.scores(context)

    def scores_and_select(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        item_scores = self.scores(context)
        return item_scores, self._select(context, item_scores, k)

    def select(self, context: BanditContext, k: int) -> Tensor:
        return self._select(context, self.scores(context), k)

    def _select(self, context: BanditContext, item_scores: Tensor, k: int) -> Tensor:
        topic_scores = self.topic_scores(context)
        sizes = self.topic_sizes.tolist()
        slates = []
        for row in range(len(item_scores)):
            order = torch.argsort(topic_scores[row], descending=True, stable=True).tolist()
            groups = topic_groups(order, sizes, k, self.config.min_group_items)
            allowed = self._candidates(groups)
            picks = []
            for group in groups:
                in_group = allowed & torch.isin(self.item_topics, torch.tensor(group))
                in_group[picks] = False  # an earlier slot may have fallen back into this group
                if not in_group.any():  # the budget left this group no item: any candidate
                    in_group = allowed.clone()
                    in_group[picks] = False
                masked = item_scores[row].masked_fill(~in_group, -torch.inf)
                picks.append(int(masked.argmax()))
            slates.append(picks)
        return torch.tensor(slates, dtype=torch.long)

    def _candidates(self, groups: list[list[int]]) -> Tensor:
        """Bool [I]: the groups' items, subsampled to the budget left after the topics."""
        topics = torch.tensor([t for group in groups for t in group])
        allowed = torch.isin(self.item_topics, topics)
        budget = self.config.budget
        if budget is None or int(allowed.sum()) <= max(budget - self.n_topics, 0):
            return allowed
        ids = allowed.nonzero().squeeze(1)
        keep = max(budget - self.n_topics, len(groups))
        chosen = ids[torch.randperm(len(ids), generator=self.generator)[:keep]]
        out = torch.zeros_like(allowed)
        out[chosen] = True
        return out

    def update(self, feedback: Feedback) -> None:
        """Item stage: the shown items; topic stage: their topics, same rewards."""
        self.item_policy.update(feedback)
        topic_context = self.topic_context(feedback.context)
        topics = self.item_topics[feedback.slates]
        self.topic_policy.update(Feedback(topic_context, topics, feedback.rewards))
