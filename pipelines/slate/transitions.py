"""Slate transitions as flat arrays: the replay buffer of online training and the batches
`SlateQLearner` updates on (online and DQN-Off alike).

A transition set is a dict of aligned arrays: ``state`` [N, S], ``candidates`` [N, P],
``candidate_mask`` [N, P], ``slate`` [N, k] slots, ``reward`` [N], ``next_state``,
``next_candidates``, ``next_mask`` and ``done`` [N] (a true end: no bootstrap).
"""

from __future__ import annotations

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from recrl.pipelines.slate.rl_module import CANDIDATE_MASK, CANDIDATES, STATE

FIELDS = ("state", "candidates", "candidate_mask", "slate", "reward", "next_state",
          "next_candidates", "next_mask", "done")  # fmt: skip


def transition_batch(data: dict[str, np.ndarray], rows: np.ndarray) -> MultiAgentBatch:
    """Rows of a transition set as the batch `SlateQLearner` reads (OBS / NEXT_OBS dicts)."""
    columns = {
        Columns.OBS: {
            STATE: data["state"][rows],
            CANDIDATES: data["candidates"][rows],
            CANDIDATE_MASK: data["candidate_mask"][rows],
        },
        Columns.ACTIONS: data["slate"][rows],
        Columns.REWARDS: data["reward"][rows],
        Columns.NEXT_OBS: {
            STATE: data["next_state"][rows],
            CANDIDATES: data["next_candidates"][rows],
            CANDIDATE_MASK: data["next_mask"][rows],
        },
        Columns.TERMINATEDS: data["done"][rows],
    }
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=len(rows))


def episode_transitions(episodes) -> dict[str, np.ndarray] | None:
    """Transitions of RLlib `SingleAgentEpisode` chunks (as EnvRunners return them: T steps
    and T + 1 observations each); None when they hold no step."""
    parts = []
    for episode in episodes:
        steps = len(episode)
        if steps == 0:
            continue
        obs = episode.get_observations(slice(0, steps + 1))
        done = np.zeros(steps, dtype=bool)
        done[-1] = episode.is_terminated
        parts.append({
            "state": obs[STATE][:-1], "candidates": obs[CANDIDATES][:-1],
            "candidate_mask": obs[CANDIDATE_MASK][:-1],
            "slate": np.asarray(episode.get_actions(slice(0, steps))),
            "reward": np.asarray(episode.get_rewards(slice(0, steps)), dtype=np.float32),
            "next_state": obs[STATE][1:], "next_candidates": obs[CANDIDATES][1:],
            "next_mask": obs[CANDIDATE_MASK][1:], "done": done,
        })  # fmt: skip
    if not parts:
        return None
    return {name: np.concatenate([p[name] for p in parts]) for name in FIELDS}


class TransitionReplay:
    """Uniform experience replay (paper Algorithm 2) of a fixed capacity, oldest overwritten.

    Arrays are allocated at the first `add`, from the shapes of what arrives."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1: {capacity}")
        self.capacity, self.size, self._next = capacity, 0, 0
        self._data: dict[str, np.ndarray] = {}

    def add(self, transitions: dict[str, np.ndarray]) -> None:
        n = len(transitions["reward"])
        if not self._data:
            self._data = {
                name: np.zeros((self.capacity, *value.shape[1:]), dtype=value.dtype)
                for name, value in transitions.items()
            }
        if n > self.capacity:
            transitions = {name: value[-self.capacity :] for name, value in transitions.items()}
            n = self.capacity
        rows = (self._next + np.arange(n)) % self.capacity
        for name, value in transitions.items():
            self._data[name][rows] = value
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> MultiAgentBatch:
        """n transitions drawn uniformly with replacement, as a learner batch."""
        if self.size == 0:
            raise ValueError("the replay buffer is empty")
        return transition_batch(self._data, rng.integers(0, self.size, n))
