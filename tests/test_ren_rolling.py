"""The rolling temporal protocol (``recrl.pipelines.bandit.rolling``): windows cut by time,
replay rewards, next-click examples, and no window trained on its own or later sessions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recrl.models.bandits.registry import PolicySizes, make_policy
from recrl.pipelines.bandit.rolling import PolicyEntry, RollingConfig, run_rolling, serve_window
from recrl.pipelines.bandit.rolling_data import (
    NextClicks,
    TimedSessions,
    assign_windows,
    next_clicks,
    replay_rewards,
    window_bounds,
)


def tiny_log() -> TimedSessions:
    """Nine sessions over 8 items, starting at t = 0, 5, ..., 40; L = 2."""
    sessions = [[0, 1, 2], [1, 2], [3, 4, 5, 3], [2, 3], [5, 6, 7], [0, 7], [6, 5, 4], [1, 1]]
    sessions.append([7, 0])
    lengths = [len(s) for s in sessions]
    return TimedSessions(
        session_ids=np.arange(100, 109), start_ns=np.arange(0, 45, 5, dtype=np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        items=np.array([i for s in sessions for i in s], dtype=np.int64), n_items=8, max_len=2,
    )  # fmt: skip


def test_windows_cut_by_time_are_exact_and_disjoint():
    start = np.array([0, 3, 9, 10, 19, 20, 29, 30], dtype=np.int64)
    bounds = window_bounds(start, 3)
    # [0, 31) in three: T = 0, 10, 20, 31 (the last one ns past the last start)
    assert bounds.tolist() == [0, 10, 20, 31]
    windows = assign_windows(start, bounds)
    assert windows.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # a start on T_w opens window w
    for w in range(3):
        inside = start[windows == w]
        assert (inside >= bounds[w]).all() and (inside < bounds[w + 1]).all()
    assert np.bincount(windows).sum() == len(start)  # each session in exactly one window
    with pytest.raises(ValueError, match="outside"):
        assign_windows(np.array([31]), bounds)


def test_replay_reward_counts_hits_exactly():
    slates = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [3, 1, 0]])
    logged = torch.tensor([2, 7, 9, 0])
    rewards = replay_rewards(slates, logged)
    assert rewards.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert rewards.sum(1).tolist() == [1, 0, 1, 1]
    assert rewards.sum().item() == 3


def test_next_clicks_hold_the_clicks_before_each_click():
    log = tiny_log()
    examples = next_clicks(log, np.array([0, 2]), min_step=1)
    pad = 8
    # session 0 = [0, 1, 2], session 2 = [3, 4, 5, 3]; L = 2, left padding
    assert examples.state.tolist() == [[pad, 0], [0, 1], [pad, 3], [3, 4], [4, 5]]
    assert examples.length.tolist() == [1, 2, 1, 2, 2]
    assert examples.target.tolist() == [1, 2, 4, 5, 3]
    assert examples.session.tolist() == [0, 0, 2, 2, 2]
    assert examples.step.tolist() == [1, 2, 1, 2, 3]
    assert next_clicks(log, np.array([1])).state.tolist() == [[pad, pad], [pad, 1]]


def test_serving_feeds_back_round_by_round_in_session_order():
    """REN's per-session history must hold the session's earlier slates: with a panel of 2,
    round 1 serves step 1 of both sessions and round 2 step 2 of the first only."""
    examples = NextClicks(
        state=torch.zeros(3, 2, dtype=torch.long), length=torch.ones(3, dtype=torch.long),
        target=torch.tensor([0, 2, 2]), session=torch.tensor([4, 4, 6]),
        step=torch.tensor([1, 2, 1]),
    )  # fmt: skip
    # λ_d = 1, λ_u = √10: at round 2, item 0 scores 1 + 1/√2 + √10/√2 = 3.94 (A = diag(2, 1),
    # shown once) and item 2 0.5 + √0.375 + √10 = 4.27 (never shown)
    policy = make_policy("ren", PolicySizes(2, 3, 2, 2), {"lambda_d": 1.0})
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    users = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    rewards, slates = serve_window(
        policy, examples, torch.tensor([0, 0, 1]), items, users, panel_size=2, slate_size=1
    )
    # round 1: item 0 for user 0, item 1 for user 1 (each its best relevance, nothing shown
    # yet); round 2: user 0 again, and REN moves to item 2
    assert slates.squeeze(1).tolist() == [0, 2, 1]
    assert rewards.tolist() == [1.0, 1.0, 0.0]
    assert policy.impressions.tolist() == [1, 1, 1]
    assert policy.recommended[0, -2:].tolist() == [0, 2]


def test_no_window_trains_on_its_own_or_later_sessions():
    log = tiny_log()
    config = RollingConfig(
        n_windows=3, slate_size=2, sessions_per_window=None, hidden_size=4, batch_size=4,
        initial_steps=3, finetune_steps=2, panel_size=2,
        policies=(PolicyEntry("ren", "ren", {"lambda_d": 0.1}), PolicyEntry("random", "random")),
    )  # fmt: skip
    result = run_rolling(config, log)
    # starts 0..40, T = 0, 13, 27, 41: windows [0, 5, 10], [15, 20, 25], [30, 35, 40]
    assert result.bounds.tolist() == [0, 13, 27, 41]
    assert [w.window for w in result.windows] == [1, 2]
    for window in result.windows:
        trained = log.start_ns[window.trained_sessions]
        assert trained.max() < window.start_ns  # nothing from the window or later
    assert result.windows[0].trained_sessions.tolist() == [0, 1, 2]
    assert result.windows[1].trained_sessions.tolist() == [0, 1, 2, 3, 4, 5]
    # served steps: clicks after the first of sessions 3-5 (1 + 2 + 1) and 6-8 (2 + 1 + 1)
    assert [w.steps for w in result.windows] == [4, 4]
    assert [w.sessions for w in result.windows] == [3, 3]
    for window in result.windows:
        for reward in window.rewards.values():
            assert reward * window.steps == pytest.approx(round(reward * window.steps))


def test_collected_fine_tuning_reads_only_past_hits():
    """``finetune_on = 'collected'``: each policy's model fine-tunes on the steps its slates
    hit; still nothing from the served window or later."""
    log = tiny_log()
    config = RollingConfig(
        n_windows=3, slate_size=3, sessions_per_window=None, hidden_size=4, batch_size=4,
        initial_steps=3, finetune_steps=2, panel_size=2, finetune_on="collected",
        policies=(PolicyEntry("greedy", "greedy"), PolicyEntry("random", "random")),
    )  # fmt: skip
    result = run_rolling(config, log)
    first, second = result.windows
    assert first.trained_sessions.tolist() == [0, 1, 2]  # window 0, every click
    # window 2's model may add only sessions 3-5 (served in window 1), and only where greedy hit
    added = sorted(set(second.trained_sessions.tolist()) - {0, 1, 2})
    assert set(added) <= {3, 4, 5}
    assert log.start_ns[second.trained_sessions].max() < second.start_ns
    assert (len(added) > 0) == (first.rewards["greedy"] > 0)
    with pytest.raises(ValueError, match="finetune_on"):
        RollingConfig(finetune_on="all")
