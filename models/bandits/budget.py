"""The computation budget B of the two-stage paper (§4, "Computational budget"; Song et al. 2021).

B caps the acquisition scores a policy may compute in one round before it recommends. A
one-stage policy draws B item ids uniformly without replacement from the catalogue, scores only
those and takes the top-k of them (``BanditPolicy.scores_and_select``); a two-stage policy
spends B on all q topics and B − q items of its DynaTopicRec groups (``two_stage.py``). With
the same B, a higher cumulative CTR means a more efficient policy (the paper's Table 5).

The draws come from the policy's own generator (``CandidateDraw``), seeded from the run's
seed on a stream of their own (``stream_seed``), so they neither disturb nor copy the other
random streams of the run (the simulator's, a Random policy's scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BUDGET_STREAM = 1
"""``stream_seed`` stream of the budget's draws."""
TOPIC_STREAM = 2
"""``stream_seed`` stream of a two-stage policy's topic stage (2-Random's topic order)."""


def stream_seed(seed: int, stream: int) -> int:
    """The seed of random stream ``stream`` of a run seeded ``seed``. numpy's SeedSequence
    mixes both numbers, so two streams of one run are independent; seeding both with
    ``seed`` itself would give them the same draws."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    """The budget every one-stage policy of the two-stage paper and its ``2-`` form accept.

    Keyword-only, so the policies' configs that extend it keep their positional fields.
    """

    budget: int | None = None
    """B, acquisition scores per round; None = no limit (every item scored). A one-stage
    policy scores B items drawn uniformly from the catalogue each round; a two-stage one scores
    all q topics and B − q items drawn from its topic groups, which then hold at least B
    items in total. The paper: B = 200 per recommendation on MovieLens-20M."""

    def __post_init__(self) -> None:
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1 or None (no limit), got {self.budget}.")


class CandidateDraw:
    """Uniform draws of ``budget`` candidates a round, from a generator seeded once."""

    def __init__(self, budget: int, seed: int = 0) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}.")
        self.budget = budget
        self.generator = torch.Generator().manual_seed(stream_seed(seed, BUDGET_STREAM))

    def draw(self, pool: Tensor, size: int | None = None) -> Tensor:
        """``size`` (default: the budget) ids of ``pool`` [N] (long) drawn uniformly without
        replacement, in ascending order; all of ``pool`` when it holds no more."""
        size = self.budget if size is None else size
        if len(pool) <= size:
            return pool
        picked = torch.randperm(len(pool), generator=self.generator)[:size]
        return pool[picked.sort().values]
