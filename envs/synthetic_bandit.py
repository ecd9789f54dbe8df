"""The synthetic environments SYN-S, SYN-M and SYN-L of the REN paper (Wang et al., AAAI 2022,
§"Simulated experiments"; design.md §6), as a gymnasium environment.

Recipe: latent vectors of width 8 that the recommender never sees. Each of the 15 users has
3 entries equal to 1/√3 (chosen at random, seeded) and the rest 0, so ‖θ*‖ = 1; the 28 = C(8,2)
unique items have 2 entries equal to 1/√2, ‖x*‖ = 1. SYN-M repeats every unique item 10 times
(280 items), SYN-L 50 times (1,400); copy ``c`` of unique item ``j`` has id ``c·28 + j``.

A round: the environment names a uniformly drawn user (the observation carries the user's id
and their last 60 chosen items); the action is a slate of distinct item ids; the user takes
the slate item with the highest reward θ*ᵀx* (the first on ties) and the reward is that value.
The best slate always earns max_k θ*ᵀx*_k = 2/√6 ≈ 0.816 (two of the user's three entries).
The paper's text shows 4 items per round, its Figure 1 caption says 3: ``slate_size``
defaults to the text.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SYN_REPEATS = {"syn-s": 1, "syn-m": 10, "syn-l": 50}
"""Environment name -> copies of each of the 28 unique items."""


@dataclass(frozen=True)
class SyntheticBanditConfig:
    """One SYN environment (REN paper §"Simulated experiments")."""

    repeats: int = 1
    """Copies of each unique item: 1 (SYN-S, 28 items), 10 (SYN-M), 50 (SYN-L)."""
    latent_dim: int = 8
    """Width of the hidden latent vectors."""
    n_users: int = 15
    """Number of users."""
    user_entries: int = 3
    """Non-zero entries of a user vector, each 1/√user_entries."""
    item_entries: int = 2
    """Non-zero entries of an item vector, each 1/√item_entries; all C(d, 2) patterns exist."""
    slate_size: int = 4
    """Items recommended per round."""
    history_len: int = 60
    """Chosen items kept per user in the observation (most recent last)."""
    max_rounds: int | None = None
    """Rounds before ``truncated`` is set; None never truncates."""
    seed: int = 0
    """Seed of the users' latent vectors (the world); ``reset(seed=...)`` seeds the rounds."""

    @classmethod
    def named(cls, name: str, **overrides) -> SyntheticBanditConfig:
        """``syn-s``, ``syn-m`` or ``syn-l`` with optional field overrides."""
        key = name.lower()
        if key not in SYN_REPEATS:
            raise ValueError(
                f"unknown synthetic environment {name!r}; choose from {list(SYN_REPEATS)}."
            )
        return cls(repeats=SYN_REPEATS[key], **overrides)


def validate_slate(action, slate_size: int, n_items: int) -> np.ndarray:
    """``action`` as an int64 array of ``slate_size`` distinct ids in ``[0, n_items)``, or a
    ``ValueError`` naming the offending value (shared by every bandit environment)."""
    slate = np.asarray(action)
    if slate.shape != (slate_size,):
        raise ValueError(
            f"a slate must hold exactly {slate_size} item ids, got shape {slate.shape}."
        )
    if not np.issubdtype(slate.dtype, np.integer):
        raise ValueError(f"item ids must be integers, got dtype {slate.dtype}: {slate.tolist()}.")
    bad = slate[(slate < 0) | (slate >= n_items)]
    if bad.size:
        raise ValueError(f"item id {int(bad[0])} is out of range: ids run from 0 to {n_items - 1}.")
    values, counts = np.unique(slate, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"item id {int(values[counts > 1][0])} appears more than once in slate "
            f"{slate.tolist()}; a slate holds distinct items."
        )
    return slate.astype(np.int64)


def syn_latents(config: SyntheticBanditConfig) -> tuple[np.ndarray, np.ndarray]:
    """(users θ* [n_users, d], items x* [n_items, d]) of the recipe, float64."""
    d = config.latent_dim
    patterns = list(itertools.combinations(range(d), config.item_entries))
    unique = np.zeros((len(patterns), d))
    for row, entries in enumerate(patterns):
        unique[row, list(entries)] = 1.0 / math.sqrt(config.item_entries)
    items = np.tile(unique, (config.repeats, 1))
    rng = np.random.default_rng(config.seed)
    users = np.zeros((config.n_users, d))
    for row in range(config.n_users):
        users[row, rng.choice(d, size=config.user_entries, replace=False)] = 1.0 / math.sqrt(
            config.user_entries
        )
    return users, items


class SyntheticBanditEnv(gym.Env):
    """SYN-S/M/L. Observation: ``{"user", "history" [H] (pad = n_items), "history_len"}``;
    action: ``slate_size`` distinct item ids. ``info`` of ``step``: ``choice`` (slate
    position taken), ``item``, ``clicks`` (one-hot over the slate), ``item_rewards`` (the
    reward at the taken position, 0 elsewhere), ``slate_rewards`` (true rewards of all slate
    items, for analysis only), ``oracle_reward`` and ``regret``."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, config: SyntheticBanditConfig | None = None) -> None:
        self.config = config = config or SyntheticBanditConfig()
        self.user_latents, self.item_latents = syn_latents(config)
        self.n_users, self.n_items = len(self.user_latents), len(self.item_latents)
        if not 1 <= config.slate_size <= self.n_items:
            raise ValueError(f"slate_size must be in [1, {self.n_items}], got {config.slate_size}.")
        self.rewards = self.user_latents @ self.item_latents.T  # [n_users, n_items]
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

    # --- references -------------------------------------------------------------------

    def oracle_reward(self, user: int) -> float:
        """Reward of the best slate: the user's best single item."""
        return float(self.rewards[user].max())

    def oracle_slate(self, user: int) -> np.ndarray:
        """The ``slate_size`` items of highest true reward for ``user``."""
        return np.argsort(-self.rewards[user], kind="stable")[: self.config.slate_size]

    def random_reward(self, user: int) -> float:
        """Expected reward of a uniformly random slate: E[max of k distinct items' rewards].

        With rewards sorted decreasingly, the j-th (0-based) is the slate's best with
        probability C(I-1-j, k-1) / C(I, k).
        """
        k, n = self.config.slate_size, self.n_items
        ordered = np.sort(self.rewards[user])[::-1]
        weights = np.array([math.comb(n - 1 - j, k - 1) for j in range(n)], dtype=float)
        return float(ordered @ weights / math.comb(n, k))

    # --- gymnasium ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._histories = [[] for _ in range(self.n_users)]
        self._round = 0
        self._user = int(self.np_random.integers(self.n_users))
        return self._observation(), {}

    def validate_slate(self, action) -> np.ndarray:
        """The action as an int64 array, or ``ValueError`` naming what is wrong with it."""
        return validate_slate(action, self.config.slate_size, self.n_items)

    def step(self, action):
        slate = self.validate_slate(action)
        user = self._user
        slate_rewards = self.rewards[user, slate]
        choice = int(np.argmax(slate_rewards))  # first of equal rewards
        reward = float(slate_rewards[choice])
        item = int(slate[choice])
        history = self._histories[user]
        history.append(item)
        del history[: -self.config.history_len]
        clicks = np.zeros(len(slate), dtype=np.float64)
        clicks[choice] = 1.0
        oracle = self.oracle_reward(user)
        info = {
            "user": user, "choice": choice, "item": item, "clicks": clicks,
            "item_rewards": clicks * reward,
            "slate_rewards": slate_rewards, "oracle_reward": oracle, "regret": oracle - reward,
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
