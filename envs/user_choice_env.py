"""Bandit environment on a user-choice simulator fitted from logs (two-stage §4; design.md §6).

A round: a uniformly drawn user of a fixed panel (the paper's 10/100/1,000 users), a slate of
distinct items, and one click decision per slate item, ``1[p̂(u, i) ≥ threshold]`` flipped with
probability ``flip_probability``. The reward is the number of clicks (the paper's
``y_t = Σ_i 1{y_t,i = 1}``). The oracle shows the user's items with ``p̂`` above the threshold
first, so its expected reward is ``0.9·min(k, n⁺_u) + 0.1·(k − min(k, n⁺_u))`` for flip 0.1
(the paper's optimal 0.9 per recommended item when n⁺_u ≥ k); regret is taken against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from recrl.envs.synthetic_bandit import validate_slate
from recrl.envs.user_choice import FittedSimulator


@dataclass(frozen=True)
class UserChoiceConfig:
    """The simulated panel and its noise (two-stage paper Table 4 setting by default)."""

    n_users: int = 100
    """Users drawn (seeded) from the simulator's users; a round picks one uniformly."""
    slate_size: int = 5
    """Items recommended per round."""
    flip_probability: float = 0.1
    """Probability that a click decision is flipped (user preference noise)."""
    history_len: int = 60
    """Clicked items kept per user in the observation (most recent last)."""
    max_rounds: int | None = None
    """Rounds before ``truncated`` is set; None never truncates."""
    seed: int = 0
    """Seeds the panel; ``reset(seed=...)`` seeds the rounds and the flips."""


class UserChoiceEnv(gym.Env):
    """Observation ``{"user", "history" [H] (pad = n_items), "history_len"}``; action: a slate
    of distinct item ids; ``info``: ``clicks``, ``item_rewards`` (= clicks), ``choice`` (first
    clicked position or -1), ``oracle_reward`` (expected), ``regret``."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        simulator: FittedSimulator,
        config: UserChoiceConfig | None = None,
        item_topics: np.ndarray | None = None,
    ):
        self.config = config = config or UserChoiceConfig()
        if item_topics is not None and len(item_topics) != simulator.n_items:
            raise ValueError(
                f"item_topics has {len(item_topics)} entries for {simulator.n_items} items."
            )
        self.item_topics = item_topics
        """Topic of every item [I] (two-stage policies), or None."""
        if not 0 < config.n_users <= simulator.n_users:
            raise ValueError(
                f"n_users must be in [1, {simulator.n_users}] (the simulator's users), "
                f"got {config.n_users}."
            )
        if not 0.0 <= config.flip_probability <= 0.5:
            raise ValueError(
                f"flip_probability must be in [0, 0.5], got {config.flip_probability}."
            )
        rng = np.random.default_rng(config.seed)
        self.panel = np.sort(rng.choice(simulator.n_users, config.n_users, replace=False))
        panel = torch.as_tensor(self.panel)
        self.probabilities = simulator.model.probabilities(panel).numpy()  # [U, I]
        self.clicks = self.probabilities >= simulator.threshold  # deterministic, [U, I]
        self.n_users, self.n_items = config.n_users, simulator.n_items
        if not 1 <= config.slate_size <= self.n_items:
            raise ValueError(f"slate_size must be in [1, {self.n_items}], got {config.slate_size}.")
        self.pad_id = self.n_items
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Discrete(self.n_users),
                "history": spaces.Box(0, self.n_items, (config.history_len,), np.int64),
                "history_len": spaces.Discrete(config.history_len + 1),
            }
        )
        self.action_space = spaces.MultiDiscrete([self.n_items] * config.slate_size)
        self._histories: list[list[int]] = [[] for _ in range(self.n_users)]
        self._user = 0
        self._round = 0

    def oracle_reward(self, user: int) -> float:
        """Expected clicks of the best slate."""
        k, flip = self.config.slate_size, self.config.flip_probability
        good = min(k, int(self.clicks[user].sum()))
        return good * (1 - flip) + (k - good) * flip

    def oracle_slate(self, user: int) -> np.ndarray:
        """The ``slate_size`` items of highest p̂ (all above the threshold when possible)."""
        return np.argsort(-self.probabilities[user], kind="stable")[: self.config.slate_size]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._histories = [[] for _ in range(self.n_users)]
        self._round = 0
        self._user = int(self.np_random.integers(self.n_users))
        return self._observation(), {}

    def step(self, action):
        slate = validate_slate(action, self.config.slate_size, self.n_items)
        user = self._user
        flips = self.np_random.random(len(slate)) < self.config.flip_probability
        clicks = (self.clicks[user, slate] ^ flips).astype(np.float64)
        reward = float(clicks.sum())
        clicked = np.flatnonzero(clicks)
        history = self._histories[user]
        history.extend(int(item) for item in slate[clicked])
        del history[: -self.config.history_len]
        oracle = self.oracle_reward(user)
        info = {
            "user": user, "panel_user": int(self.panel[user]), "clicks": clicks,
            "item_rewards": clicks, "choice": int(clicked[0]) if clicked.size else -1,
            "oracle_reward": oracle, "regret": oracle - reward,
        }  # fmt: skip
        self._round += 1
        self._user = int(self.np_random.integers(self.n_users))
        limit = self.config.max_rounds
        truncated = limit is not None and self._round >= limit
        return self._observation(), reward, False, truncated, info

    def _observation(self) -> dict:
        history = self._histories[self._user]
        padded = np.full(self.config.history_len, self.pad_id, dtype=np.int64)
        if history:
            padded[-len(history) :] = history
        return {"user": self._user, "history": padded, "history_len": len(history)}
