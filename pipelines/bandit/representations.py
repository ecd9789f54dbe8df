"""The representation a bandit run reads: turns a simulator observation into a policy context
and learns from feedback rows. Two kinds (``BanditRunConfig.encoder``):

- ``latent-factor``: ``recrl.models.bandits.latent_factor.LatentFactorModel`` (ridge ALS, per-user
  θ_u; cheap, refit every round);
- ``sasrec``: ``recrl.models.bandits.sequence_representation.SequenceRepresentation`` (the SASRec
  encoder over the user's recent chosen items; retrained every ``refit_interval`` rounds).

``get_state``/``set_state`` carry what ``context`` reads (embedding tables or encoder
weights), so a copy in an RLlib EnvRunner builds the same contexts as the Learner's original.
"""

from __future__ import annotations

import torch
from recrl.models.bandits import BanditContext
from recrl.models.bandits.latent_factor import LatentFactorConfig, LatentFactorModel
from recrl.models.bandits.sequence_representation import (
    SequenceRepresentation,
    SequenceRepresentationConfig,
)
from recrl.models.bandits.simple import DropoutUCBPolicy
from torch import Tensor


def _history(observation: dict, n_items: int, item_embeddings: Tensor):
    history = torch.as_tensor(observation["history"]).unsqueeze(0)
    mask = history != n_items
    return item_embeddings[history.clamp_max(n_items - 1)], mask


class LatentFactorRepresentation:
    """Per-user θ_u and per-item μ_i from ridge ALS on (user, item, reward) rows."""

    def __init__(self, n_users: int, n_items: int, config: LatentFactorConfig, seed: int):
        self.model = LatentFactorModel(n_users, n_items, config, seed=seed)
        self.dim = config.embedding_dim
        self.n_items = n_items

    def context(self, observation: dict, policy) -> BanditContext:
        user = torch.tensor([int(observation["user"])])
        items = self.model.item_embeddings
        history, mask = _history(observation, self.n_items, items)
        mc = None
        if isinstance(policy, DropoutUCBPolicy):
            config = policy.config
            mc = self.model.mc_predictions(user, config.passes, config.dropout, policy.generator)
        return BanditContext(user, items, self.model.user_embeddings[user], history, mask, mc)

    def observe(self, observation: dict, items: Tensor, targets: Tensor) -> None:
        user = torch.full_like(items, int(observation["user"]))
        self.model.observe(user, items, targets)

    def refit(self) -> None:
        self.model.refit()

    def get_state(self) -> dict[str, Tensor]:
        """What ``context`` reads: the two embedding tables (not the observation log)."""
        return {
            "user_embeddings": self.model.user_embeddings,
            "item_embeddings": self.model.item_embeddings,
        }

    def set_state(self, state: dict) -> None:
        self.model.user_embeddings = torch.as_tensor(state["user_embeddings"]).clone()
        self.model.item_embeddings = torch.as_tensor(state["item_embeddings"]).clone()


class SASRecRepresentation:
    """z_u = SASRec(last chosen items), x_i = the encoder's item table."""

    def __init__(self, n_items: int, config: SequenceRepresentationConfig, seed: int):
        self.model = SequenceRepresentation(n_items, config, seed=seed)
        self.dim = config.hidden_size
        self.n_items = n_items

    def _state(self, observation: dict) -> tuple[Tensor, Tensor]:
        history = torch.as_tensor(observation["history"]).unsqueeze(0)
        length = torch.tensor([int(observation["history_len"])])
        return self.model.states(history, length)

    def context(self, observation: dict, policy) -> BanditContext:
        user = torch.tensor([int(observation["user"])])
        state, length = self._state(observation)
        items = self.model.item_embeddings
        history, mask = _history(observation, self.n_items, items)
        mc = None
        if isinstance(policy, DropoutUCBPolicy):
            mc = self.model.mc_predictions(state, length, policy.config.passes)
        theta = self.model.user_embeddings(state, length)
        return BanditContext(user, items, theta, history, mask, mc)

    def observe(self, observation: dict, items: Tensor, targets: Tensor) -> None:
        state, length = self._state(observation)
        count = len(items)
        self.model.observe(state.expand(count, -1), length.expand(count), items, targets)

    def refit(self) -> None:
        self.model.refit()

    def get_state(self) -> dict[str, Tensor]:
        """The encoder's weights (what ``context`` reads), not the observation log."""
        return dict(self.model.encoder.state_dict())

    def set_state(self, state: dict) -> None:
        self.model.encoder.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
