"""Slate policies on the simulated-user observation (`recrl.envs.user_model_env`).

Each has ``select(obs) -> int64 [k]`` candidate slots (distinct, unmasked):
`RandomSlatePolicy`; `GreedyUserModelPolicy` (paper's GAN-Greedy: the k candidates of
highest utility under a user model, i.e. highest click probability, since φ is monotone in
u). The learned Q-network policies are RLModules (`recrl.pipelines.slate.rl_module`).
"""

from __future__ import annotations

import numpy as np
import torch
from recrl.models.user_model.network import UserModel


def random_slots(mask: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct available slots, uniformly."""
    return rng.choice(np.flatnonzero(mask), size=k, replace=False).astype(np.int64)


class RandomSlatePolicy:
    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.rng = k, np.random.default_rng(seed)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return random_slots(obs["candidate_mask"].astype(bool), self.k, self.rng)


class GreedyUserModelPolicy:
    """Top-k candidates by u(s, a) of a user model (its own state of the history)."""

    def __init__(self, model: UserModel, k: int) -> None:
        self.model, self.k = model, k

    @torch.no_grad()
    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        history = torch.as_tensor(obs["history"])[None, :]
        items = torch.as_tensor(obs["candidates"])[None, :]
        u = self.model.utility(self.model.encode(history), items)[0]
        u = u.masked_fill(~torch.as_tensor(obs["candidate_mask"].astype(bool)), float("-inf"))
        return torch.topk(u, self.k).indices.numpy().astype(np.int64)
