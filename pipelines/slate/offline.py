"""DQN-Off (Chen et al. 2019, Table 3): slate Q-networks trained from the logged display sets
alone, with no simulated user in the loop.

Each logged page view becomes one transition:

* s = the training user model's state of the click history; the candidates are the shown
  set (padded, masked);
* the slate: the clicked slot and k − 1 other shown slots drawn at random, in random order
  (a no-click view: k random shown slots). The log says the user chose the clicked item
  from the whole shown set; under the softmax choice model the same item is also the most
  likely pick from any subset containing it, so the k-item slate keeps the logged outcome;
* r = the user model's learned reward r(s, a) of the clicked item (0 on no-click), as the
  online CDQN is trained on;
* s' = the state of the history with the click appended (unchanged after a no-click), whose
  candidates are the shown set of the user's next page view: the view whose history is
  exactly that one (after a no-click, the first later view with the same history); a view
  with no such successor (the user's last) ends the episode (no bootstrap).

Training makes `CDQNConfig.env_steps` updates of the same `SlateQLearner` on uniform
minibatches of these transitions (``learner.update(batch=...)``: no EnvRunner, no replay
of new experience), with the same target-network updates.
"""

from __future__ import annotations

import bisect
import copy
import logging
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.data import NO_CLICK, DisplaySetArrays
from recrl.pipelines.slate.config import CDQNConfig, slate_q_algorithm_config
from recrl.pipelines.slate.rl_module import CANDIDATE_MASK, CANDIDATES, STATE, SlateQRLModule
from recrl.pipelines.slate.transitions import transition_batch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def offline_transitions(
    views: DisplaySetArrays, user_model: LoadedUserModel, k: int, seed: int
) -> dict[str, np.ndarray]:
    """Transitions of the module docstring, as aligned arrays: ``state``, ``candidates``,
    ``candidate_mask``, ``slate`` [N, k] slots, ``reward``, ``next_state``,
    ``next_candidates``, ``next_mask``, ``done``. Views showing fewer than k items are
    dropped (logged with their count)."""
    keep = views.shown_mask.sum(axis=1) >= k
    if not keep.all():
        logger.warning("DQN-Off: dropped %d page views showing fewer than k=%d items",
                       int((~keep).sum()), k)  # fmt: skip
    views = views.subset(keep)
    if len(views) == 0:
        raise ValueError(f"no page view shows at least k={k} items")
    rng = np.random.default_rng(seed)
    n, pad = len(views), views.pad_id
    rows = np.arange(n)
    clicked = views.click != NO_CLICK
    # k distinct shown slots per row, the click first when there is one, then shuffled.
    keys = rng.random(views.shown.shape)
    keys[~views.shown_mask] = -1.0
    keys[rows[clicked], views.click[clicked]] = 2.0
    slate = np.argsort(-keys, axis=1)[:, :k]
    slate = np.take_along_axis(slate, np.argsort(rng.random((n, k)), axis=1), axis=1)
    item = np.where(clicked, views.shown[rows, np.maximum(views.click, 0)], pad)
    next_history = np.concatenate([views.history[:, 1:], item[:, None]], axis=1)
    next_history[~clicked] = views.history[~clicked]
    successor = _successors(views, next_history, clicked)
    done = successor < 0
    nxt = np.where(done, rows, successor)
    model, reward_model = user_model.model, user_model.reward
    with torch.no_grad():
        state = model.encode(torch.as_tensor(views.history)).numpy()
        next_state = model.encode(torch.as_tensor(next_history)).numpy()
        s = reward_model.encode(torch.as_tensor(views.history))
        utility = reward_model.utility(s, torch.as_tensor(np.where(clicked, item, 0))[:, None])
    reward = np.where(clicked, utility[:, 0].numpy(), 0.0).astype(np.float32)
    return {
        "state": state.astype(np.float32),
        "candidates": views.shown,
        "candidate_mask": views.shown_mask.astype(np.int8),
        "slate": slate.astype(np.int64),
        "reward": reward,
        "next_state": next_state.astype(np.float32),
        "next_candidates": views.shown[nxt],
        "next_mask": views.shown_mask[nxt].astype(np.int8),
        "done": done,
    }


def _successors(
    views: DisplaySetArrays, next_history: np.ndarray, clicked: np.ndarray
) -> np.ndarray:
    """The row of the same user whose history is ``next_history[r]``, or −1.

    A click appends to the history, so the view after a click is the one whose history is
    ``next_history[r]`` wherever it sits: rows are in time order, but clicks made in the same
    second (MovieLens rates in bursts) may be in either order, and requiring the successor
    to come later lost half of MovieLens' transitions. After a no-click the history is
    unchanged and shared with the view itself and earlier ones, so there it must be the
    first later row.
    """
    rows_of: dict[tuple[int, bytes], list[int]] = {}
    for r in range(len(views)):
        rows_of.setdefault((int(views.user[r]), views.history[r].tobytes()), []).append(r)
    out = np.full(len(views), -1, dtype=np.int64)
    for r in range(len(views)):
        rows = rows_of.get((int(views.user[r]), next_history[r].tobytes()), [])
        i = bisect.bisect_right(rows, r)
        if i < len(rows):
            out[r] = rows[i]
        elif clicked[r]:
            earlier = [row for row in rows[:i] if row != r]
            if earlier:
                out[r] = earlier[-1]
    return out


def train_offline_slate_q(
    views: DisplaySetArrays,
    user_model: LoadedUserModel,
    item_features: np.ndarray,
    k: int,
    config: CDQNConfig,
    *,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    log_every: int = 100,
) -> SlateQRLModule:
    """Fit the Q-networks of ``config`` (its `env_steps` = number of updates) on the
    transitions of ``views``; returns a copy of the trained module."""
    data = offline_transitions(views, user_model, k, config.seed)
    n, width = data["candidates"].shape
    state_dim = data["state"].shape[1]
    spaces = {
        DEFAULT_MODULE_ID: (
            gym.spaces.Dict(
                {
                    STATE: gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
                    CANDIDATES: gym.spaces.Box(0, views.pad_id, (width,), np.int64),
                    CANDIDATE_MASK: gym.spaces.MultiBinary(width),
                }
            ),
            gym.spaces.MultiDiscrete([width] * k),
        )
    }
    algo_config = slate_q_algorithm_config(config, "unused", item_features, state_dim, k)
    torch.manual_seed(config.seed)
    learner = algo_config.build_learner(spaces=spaces)
    rng = np.random.default_rng(config.seed)
    logger.info("DQN-Off: %d logged transitions, %d ending an episode", n, int(data["done"].sum()))
    for step in tqdm(range(1, config.env_steps + 1), desc="DQN-Off", disable=not progress,
                     leave=False):  # fmt: skip
        rows = rng.integers(0, n, config.batch_size)
        results = learner.update(
            batch=transition_batch(data, rows), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: step}
        )
        if on_log is not None and step % log_every == 0:
            stats = results[DEFAULT_MODULE_ID]
            on_log(step, {key: float(_peek(v)) for key, v in stats.items() if "/" in key})
    module = copy.deepcopy(learner.module[DEFAULT_MODULE_ID].unwrapped())
    return module.eval()


def _peek(value):
    return value.peek() if hasattr(value, "peek") else value
