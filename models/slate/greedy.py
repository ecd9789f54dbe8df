"""The greedy slate of a slate Q-network in either of its two forms.

``cascading`` (CDQN, Chen et al. 2019, Algorithm 1): position j takes the available
candidate maximising Q_j(s, a*_1..a*_{j-1}, a), one position after another.
``additive`` (GDQN, §6.2): Q(s, A) = Σ_j q(s, a_j), so the best slate is the top-k of q.
Training (`recrl.pipelines.slate.rl_module`) and serving (`recrl.pipelines.slate.serving`)
both pick slates here, so a served model answers exactly what the trained policy plays.
"""

from __future__ import annotations

from recrl.models.slate.additive import additive_greedy_slate
from recrl.models.slate.cascading import CascadingQNetwork
from torch import Tensor

Q_FORMS = ("cascading", "additive")
"""The forms of a slate Q-function."""


def greedy_slate(
    network: CascadingQNetwork, q_form: str, state: Tensor, features: Tensor, mask: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Slots int64 [B, k] of the greedy slate, in pick order, and their Q-values [B, k]:
    Q_j(s, a*_1..a*_j) for ``cascading``, q(s, a*_j) for ``additive``. state [B, S],
    features [B, P, d], mask bool [B, P] (True: available)."""
    if q_form == "cascading":
        return network.greedy_slate(state, features, mask)
    if q_form == "additive":
        return additive_greedy_slate(network, state, features, mask, k)
    raise ValueError(f"q_form must be one of {Q_FORMS}: {q_form!r}")
