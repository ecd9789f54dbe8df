"""A simulated user for slate recommendation: a frozen GAN user model as the environment.

Chen et al. (2019, §3, §6.2): the recommender shows k items, the user model picks one or
none (φ(s, A) = softmax over A ∪ {no-click} of η·u), the reward is the learned utility
r(s, a) of the clicked item (0 on no-click), and the click is appended to the history.

Each episode draws a user of the given page views (one split of the display sets: use a
model fitted on the test users' page views for the test environment and never train on
it), starts from that user's history at a random logged page view, and offers a candidate
pool: every item the user was shown in the log (``pool = "user"``, padded to
``max_pool``) or the whole catalogue (``pool = "all"``). Clicked items leave the pool.
With ``quit_after = c`` the user leaves after c consecutive pages without a click: the
episode terminates, and the visit's length is a measure of the policy (a long-term one).
``no_click_utility`` (u₀) replaces the no-click utility 0 of φ, so that a user model fitted
on a log without no-click pages still skips some pages.

Observation (a dict): ``history`` int64[m] (most recent last, padded with ``pad_id``),
``state`` float32[S] (the user model's state of that history), ``candidates`` int64[P]
(padded with ``pad_id``) and ``candidate_mask`` int8[P]. Action: k distinct indices into
``candidates`` pointing at unmasked slots; anything else raises `InvalidSlateError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel


class InvalidSlateError(ValueError):
    """The action is not k distinct indices of available candidates."""


@dataclass(frozen=True)
class UserModelEnvConfig:
    """Settings of the simulated user (paper §6.2 evaluates k = 3 and k = 5)."""

    slate_size: int = 5
    """k: items shown per step."""
    episode_length: int = 10
    """Steps per episode (page views of one simulated user)."""
    pool: Literal["user", "all"] = "user"
    """Candidates: items shown to the user in the log, or every item."""
    max_pool: int = 512
    """P: padded pool size for ``pool = "user"`` (a larger logged pool is subsampled)."""
    remove_clicked: bool = True
    """Drop a clicked item from the pool (Algorithm 1 recommends unclicked items only)."""
    seed: int = 0
    """Seed of user draws and simulated clicks (``reset(seed=...)`` overrides it)."""
    quit_after: int | None = None
    """c: the simulated user leaves (the episode terminates) after c consecutive pages
    without a click; None: nobody leaves, every visit runs to ``episode_length``."""
    no_click_utility: float = 0.0
    """u₀: utility of leaving a page without a click, the no-click term of φ (the paper's
    0). A user model fitted on a click-only log (MovieLens display sets hold no no-click
    page) rates every item far above 0 and almost always clicks; a u₀ near the utilities
    of the shown items restores real no-clicks, which the quit rule needs."""

    def __post_init__(self) -> None:
        if self.quit_after is not None and self.quit_after < 1:
            raise ValueError(
                f"quit_after must be >= 1 pages without a click, or None to never leave: "
                f"{self.quit_after}"
            )


class UserModelEnv(gym.Env):
    """See the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's API)

    def __init__(
        self, user_model: LoadedUserModel, page_views: DisplaySetArrays, config: UserModelEnvConfig
    ) -> None:
        if len(page_views) == 0:
            raise ValueError("the user split holds no page views")
        self.config = config
        self.model: UserModel = user_model.model
        self.reward_model: UserModel = user_model.reward
        self.pad_id = self.model.pad_id
        self.n_items = self.pad_id
        self.views = page_views
        self.users = np.unique(page_views.user)
        self._views_of = np.split(
            np.argsort(page_views.user, kind="stable"),
            np.cumsum(np.bincount(page_views.user)[self.users])[:-1],
        )
        self.pool_size = self.n_items if config.pool == "all" else config.max_pool
        if config.slate_size < 1 or config.slate_size > self.pool_size:
            raise ValueError(f"slate_size must be in [1, {self.pool_size}]: {config.slate_size}")
        m = page_views.history.shape[1]
        with torch.no_grad():
            state_dim = self.model.encode(torch.full((1, m), self.pad_id)).shape[1]
        self.observation_space = gym.spaces.Dict(
            {
                "history": gym.spaces.Box(0, self.pad_id, (m,), np.int64),
                "state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
                "candidates": gym.spaces.Box(0, self.pad_id, (self.pool_size,), np.int64),
                "candidate_mask": gym.spaces.MultiBinary(self.pool_size),
            }
        )
        self.action_space = gym.spaces.MultiDiscrete([self.pool_size] * config.slate_size)
        self._rng = np.random.default_rng(config.seed)
        self._history = np.full(m, self.pad_id, dtype=np.int64)
        self._candidates = np.full(self.pool_size, self.pad_id, dtype=np.int64)
        self._mask = np.zeros(self.pool_size, dtype=bool)
        self._t = 0
        self._misses = 0  # consecutive pages without a click, for the quit rule
        self.user = -1

    # --- gymnasium API -------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        pick = (options or {}).get("user_index")
        index = int(self._rng.integers(len(self.users))) if pick is None else int(pick)
        views = self._views_of[index]
        self.user = int(self.users[index])
        start = int(self._rng.choice(views))
        self._history = self.views.history[start].copy()
        self._set_pool(views)
        self._t = 0
        self._misses = 0
        return self._observation(), {"user": self.user}

    def step(self, action):
        slots = self.validate_action(action)
        shown = self._candidates[slots]
        history = torch.as_tensor(self._history)[None, :]
        items = torch.as_tensor(shown)[None, :]
        with torch.no_grad():
            logits = self.model.choice_logits(history, items, torch.ones_like(items, dtype=bool))
            logits[:, -1] = self.model.config.eta * self.config.no_click_utility
            probs = torch.softmax(logits, dim=1)[0].double().numpy()
        choice = int(self._rng.choice(len(probs), p=probs / probs.sum()))
        clicked = choice < len(shown)
        reward = 0.0
        if clicked:
            item = int(shown[choice])
            with torch.no_grad():
                s = self.reward_model.encode(history)
                reward = float(self.reward_model.utility(s, torch.tensor([[item]]))[0, 0])
            self._history = np.append(self._history[1:], item)
            if self.config.remove_clicked:
                self._mask[slots[choice]] = False
        self._t += 1
        self._misses = 0 if clicked else self._misses + 1
        # Leaving is the user's own end of the visit (no reward follows), so it terminates;
        # the horizon and an exhausted pool only cut the visit short: they truncate.
        quit_after = self.config.quit_after
        terminated = quit_after is not None and self._misses >= quit_after
        truncated = self._t >= self.config.episode_length or self._mask.sum() < len(slots)
        info = {
            "clicked_slot": choice if clicked else -1,
            "clicked_item": int(shown[choice]) if clicked else -1,
            "click_probs": probs,
        }
        return self._observation(), reward, terminated, truncated and not terminated, info

    # --- helpers -------------------------------------------------------------------

    def validate_action(self, action) -> np.ndarray:
        """The action as int64 [k] slot indices, or `InvalidSlateError` saying what is wrong."""
        k = self.config.slate_size
        slots = np.asarray(action)
        if slots.shape != (k,):
            raise InvalidSlateError(f"action must hold k={k} candidate indices, got shape "
                                    f"{slots.shape}")  # fmt: skip
        if not np.issubdtype(slots.dtype, np.integer):
            raise InvalidSlateError(f"action must be integer candidate indices, got {slots.dtype}")
        slots = slots.astype(np.int64)
        outside = slots[(slots < 0) | (slots >= self.pool_size)]
        if outside.size:
            raise InvalidSlateError(
                f"candidate index {int(outside[0])} out of range [0, {self.pool_size})"
            )
        if len(np.unique(slots)) != k:
            raise InvalidSlateError(f"a slate shows k={k} distinct items; repeated: {slots}")
        unavailable = slots[~self._mask[slots]]
        if unavailable.size:
            raise InvalidSlateError(
                f"candidate slot {int(unavailable[0])} is masked (padding or already clicked); "
                "choose where observation['candidate_mask'] is 1"
            )
        return slots

    def _set_pool(self, views: np.ndarray) -> None:
        self._candidates[:] = self.pad_id
        self._mask[:] = False
        if self.config.pool == "all":
            items = np.arange(self.n_items)
        else:
            shown = self.views.shown[views]
            items = np.unique(shown[shown != self.pad_id])
            if len(items) > self.pool_size:
                items = np.sort(self._rng.choice(items, self.pool_size, replace=False))
        self._candidates[: len(items)] = items
        self._mask[: len(items)] = True
        if self.config.remove_clicked:
            self._mask &= ~np.isin(self._candidates, self._history)

    def _observation(self) -> dict[str, np.ndarray]:
        with torch.no_grad():
            state = self.model.encode(torch.as_tensor(self._history)[None, :])[0].numpy()
        return {
            "history": self._history.copy(),
            "state": state.astype(np.float32),
            "candidates": self._candidates.copy(),
            "candidate_mask": self._mask.astype(np.int8),
        }
