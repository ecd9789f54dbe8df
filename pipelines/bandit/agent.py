"""The recommender side of a bandit run: a representation and a policy, acting and learning.

One object, used unchanged by both back ends: the plain loop (``loop.py``) holds one; under
RLlib (``bandit_rl_module.py``) the Learner's module holds the one that learns and every
EnvRunner's module holds a copy that only acts, kept current through ``get_state`` /
``set_state``.

Per round: ``act`` builds the policy context from the observation (item embeddings μ, the
user's embedding θ, the embeddings of the user's history D, MC-dropout passes when the policy
needs them) and picks a slate; ``learn`` folds the answer in — the policy's GLM parts and
statistics every round (``policy.update``), the representation every ``refit_every``
rounds (the two-stage paper's encoder update interval). Every shown item is one feedback row
of the policy (the taken item with its reward, the others 0); the representation learns from
the taken item only, or from all shown (``BanditRunConfig.feedback_rows``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from recrl.models.bandits import BanditContext, Feedback, PolicySizes, make_policy
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.representations import LatentFactorRepresentation, SASRecRepresentation
from torch import Tensor


def make_representation(config: BanditRunConfig, n_users: int, n_items: int):
    """The representation named by ``config.encoder``."""
    if config.encoder == "sasrec":
        return SASRecRepresentation(n_items, config.sasrec, config.seed)
    return LatentFactorRepresentation(n_users, n_items, config.representation, config.seed)


class BanditAgent:
    """Representation + policy of one run (``config.policy`` must name a policy of
    ``recrl.models.bandits``; the oracle is a reference of the loop, not an agent)."""

    def __init__(
        self,
        config: BanditRunConfig,
        n_users: int,
        n_items: int,
        item_topics: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.model = make_representation(config, n_users, n_items)
        topics = None if item_topics is None else torch.as_tensor(np.asarray(item_topics))
        sizes = PolicySizes(n_users, n_items, self.model.dim, self.model.dim, config.seed, topics)
        self.policy = make_policy(config.policy, sizes, config.policy_settings)
        self.rounds = 0
        """Rounds learned from so far (drives the refit schedule)."""

    def context(self, observation: Mapping[str, Any], *, acting: bool = True) -> BanditContext:
        """The policy context of ``observation``; MC-dropout passes only when ``acting``."""
        return self.model.context(observation, self.policy if acting else None)

    def act(
        self, observation: Mapping[str, Any], k: int, *, with_scores: bool = False
    ) -> tuple[BanditContext, Tensor | None, Tensor]:
        """(context, acquisition scores [1, I] or None, slate [1, k])."""
        context = self.context(observation)
        if with_scores:
            scores, slate = self.policy.scores_and_select(context, k)
            return context, scores, slate
        return context, None, self.policy.select(context, k)

    def learn(
        self,
        observation: Mapping[str, Any],
        slate: Tensor,
        item_rewards: Tensor,
        clicks: Tensor,
        context: BanditContext | None = None,
    ) -> None:
        """One round's answer: ``slate`` [k] shown for ``observation``, ``item_rewards`` and
        ``clicks`` [k]. ``context`` is the one the slate was picked in; None rebuilds it
        from the current representation (the Learner, which did not pick the slate)."""
        if context is None:
            context = self.context(observation, acting=False)
        slate, item_rewards = slate.reshape(-1).long(), item_rewards.reshape(-1).float()
        self.policy.update(Feedback(context, slate.unsqueeze(0), item_rewards.unsqueeze(0)))
        keep = torch.ones_like(item_rewards, dtype=torch.bool)
        if self.config.representation_rows == "chosen":
            keep = clicks.reshape(-1) > 0
        self.model.observe(observation, slate[keep], item_rewards[keep])
        self.rounds += 1
        if self.policy.reads_representation and self.rounds % self.config.refit_every == 0:
            self.model.refit()

    def get_state(self) -> dict[str, Any]:
        """What acting reads: the policy's ``state_fields`` and the representation's tables
        (flat keys ``policy/...``, ``representation/...``), and the round count."""
        state: dict[str, Any] = {"rounds": torch.tensor(self.rounds)}
        state.update({f"policy/{k}": v for k, v in self.policy.get_state().items()})
        state.update({f"representation/{k}": v for k, v in self.model.get_state().items()})
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        def part(prefix: str) -> dict[str, Any]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        self.policy.set_state(part("policy/"))
        self.model.set_state(part("representation/"))
        self.rounds = int(state["rounds"])
