"""2-N-Dropout-UCB: N-Dropout-UCB in both stages of the two-stage policy (two-stage paper, Table 5).

The policy is a ``TwoStagePolicy`` with a ``DropoutUCBPolicy`` in each stage, presented as an
N-Dropout-UCB policy. Callers decide by that type whether a context carries Monte-Carlo dropout
passes and read ``passes``, ``dropout`` and the generator of the masks from it (the bandit
representations in ``pipelines/bandit``). The item stage scores the items of the chosen topic
groups by mean + β·std of their passes; the topic stage scores topics the same way, from passes
that are the means of their items' passes (``TwoStagePolicy.topic_context``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from recrl.models.bandits.simple import DropoutUCBConfig, DropoutUCBPolicy
from recrl.models.bandits.two_stage import TwoStagePolicy
from torch import Tensor


class TwoStageDropoutUCBPolicy(DropoutUCBPolicy):
    """``two_stage`` picks and learns; ``config`` and the seeded ``generator`` are those of
    the Monte-Carlo passes its contexts must carry."""

    name = "2-n-dropout-ucb"

    def __init__(
        self, two_stage: TwoStagePolicy, config: DropoutUCBConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__(config, seed)
        self.two_stage = two_stage

    @property
    def topic_policy(self) -> BanditPolicy:
        return self.two_stage.topic_policy

    @property
    def item_policy(self) -> BanditPolicy:
        return self.two_stage.item_policy

    def topic_scores(self, context: BanditContext) -> Tensor:
        """α₁ [U, q]: N-Dropout-UCB on the topics' passes."""
        return self.two_stage.topic_scores(context)

    def scores(self, context: BanditContext) -> Tensor:
        return self.two_stage.scores(context)

    def select(self, context: BanditContext, k: int) -> Tensor:
        return self.two_stage.select(context, k)

    def scores_and_select(self, context: BanditContext, k: int) -> tuple[Tensor, Tensor]:
        return self.two_stage.scores_and_select(context, k)

    def update(self, feedback: Feedback) -> None:
        self.two_stage.update(feedback)

    def get_state(self) -> dict[str, Tensor]:
        return self.two_stage.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.two_stage.set_state(state)
