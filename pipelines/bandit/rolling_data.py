"""The data side of the rolling protocol (`recrl.pipelines.bandit.rolling`): a prepared
session log ordered by time, its cut into windows of equal length, the next-click examples a
window's sessions hold, and replay's reward of a slate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from recrl.pipelines.prepare.meta import read_meta
from torch import Tensor


@dataclass(frozen=True)
class TimedSessions:
    """A session log in time order: the clicks of session ``s`` are
    ``items[offsets[s]:offsets[s + 1]]``, oldest first, and it starts at ``start_ns[s]``
    (non-decreasing in ``s``)."""

    session_ids: np.ndarray
    """Session id of each session [S] (the prepared data's ``session_id``)."""
    start_ns: np.ndarray
    """Start time of each session [S] (int64 ns), sorted."""
    offsets: np.ndarray
    """[S + 1] start of each session's clicks in ``items``."""
    items: np.ndarray
    """Item ids of all clicks [N] (int64, ``0 .. n_items - 1``)."""
    n_items: int
    """Catalogue size; ``n_items`` is the padding id."""
    max_len: int
    """Clicks a state holds (the prepared data's ``L``)."""

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.start_ns) + 1 or self.offsets[-1] != len(self.items):
            raise ValueError("offsets must have one entry per session plus the end of items.")
        if np.any(np.diff(self.start_ns) < 0):
            raise ValueError("sessions must be ordered by start_ns.")

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def load_timed_sessions(data_path: str | Path) -> TimedSessions:
    """Pool the transitions of every split of a prepared folder into sessions ordered by start.

    A transition's ``action`` is the click at its ``step``, so a session's clicks are its
    actions in step order (the first click is step 0's action, taken from an empty state).
    """
    root = Path(data_path)
    meta = read_meta(str(root))
    files = [root / name for split in meta["splits"].values() for name in split["files"]]
    events = pd.concat(
        [pd.read_parquet(f, columns=["session_id", "step", "action"]) for f in files],
        ignore_index=True,
    ).sort_values(["session_id", "step"], kind="stable")
    starts = pd.read_parquet(root / "sessions.parquet", columns=["session_id", "start_ns"])
    starts = starts[starts.session_id.isin(events.session_id.unique())]
    starts = starts.sort_values(["start_ns", "session_id"], kind="stable")
    counts = events.groupby("session_id").size()
    session_ids = starts.session_id.to_numpy()
    lengths = counts.loc[session_ids].to_numpy()
    first = np.concatenate([[0], np.cumsum(counts.to_numpy())[:-1]])  # by session id order
    position = pd.Series(first, index=counts.index).loc[session_ids].to_numpy()
    actions = events.action.to_numpy(np.int64)
    # the clicks re-ordered session by session in start order
    items = np.concatenate([actions[p : p + n] for p, n in zip(position, lengths, strict=True)])
    return TimedSessions(
        session_ids=session_ids, start_ns=starts.start_ns.to_numpy(np.int64),
        offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items,
        n_items=int(meta["n_items"]), max_len=int(meta["L"]),
    )  # fmt: skip


def window_bounds(start_ns: np.ndarray, n_windows: int) -> np.ndarray:
    """``n_windows + 1`` bounds T_0 < ... < T_W of windows of equal length in time: window
    ``w`` is [T_w, T_{w+1}); T_0 is the first start and T_W one ns past the last, so every
    session falls in exactly one window."""
    first, last = int(start_ns.min()), int(start_ns.max()) + 1
    inner = [first + (last - first) * w // n_windows for w in range(1, n_windows)]
    return np.array([first, *inner, last], dtype=np.int64)


def assign_windows(start_ns: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Window of each session [S]: the ``w`` with ``bounds[w] <= start < bounds[w + 1]``."""
    start_ns = np.asarray(start_ns)
    if start_ns.min() < bounds[0] or start_ns.max() >= bounds[-1]:
        raise ValueError("a session starts outside [bounds[0], bounds[-1]).")
    return np.searchsorted(bounds, start_ns, side="right") - 1


@dataclass(frozen=True)
class NextClicks:
    """Next-click examples: the ``max_len`` clicks before a click, left-padded, and the click."""

    state: Tensor
    """[N, L] item ids, padding id ``n_items`` on the left."""
    length: Tensor
    """[N] real clicks in ``state`` (0 .. L)."""
    target: Tensor
    """[N] the click that followed."""
    session: Tensor
    """[N] index of the example's session in the ``TimedSessions``."""
    step: Tensor
    """[N] position of the click in its session (0 = the first)."""


def next_clicks(log: TimedSessions, sessions: np.ndarray, min_step: int = 0) -> NextClicks:
    """The examples of the clicks at position ``>= min_step`` of the given sessions (indices
    into ``log``), session by session, in step order."""
    sessions = np.asarray(sessions, dtype=np.int64)
    lengths = log.lengths[sessions]
    starts = log.offsets[sessions]
    session = np.repeat(sessions, lengths)
    base = np.repeat(starts, lengths)
    step = np.arange(len(session)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = step >= min_step
    session, base, step = session[keep], base[keep], step[keep]
    at = base + step  # index of the target click in log.items
    window = at[:, None] - log.max_len + np.arange(log.max_len)  # the L indices before it
    real = window >= base[:, None]
    state = np.where(real, log.items[np.clip(window, 0, None)], log.n_items)
    return NextClicks(
        state=torch.from_numpy(state), length=torch.from_numpy(real.sum(1)),
        target=torch.from_numpy(log.items[at]), session=torch.from_numpy(session),
        step=torch.from_numpy(step),
    )  # fmt: skip


def replay_rewards(slates: Tensor, logged: Tensor) -> Tensor:
    """Replay reward per slate position [U, k]: 1 where the slate item is the logged next item
    ``logged`` [U], else 0. A slate's reward (``.sum(1)``) is 1 exactly when it holds it."""
    return (slates == logged.unsqueeze(1)).to(torch.float32)


def take_clicks(examples: NextClicks, rows: Tensor) -> NextClicks:
    return NextClicks(*(getattr(examples, f.name)[rows] for f in dataclasses.fields(NextClicks)))


def concat_clicks(parts: list[NextClicks]) -> NextClicks:
    return NextClicks(
        *(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(NextClicks))
    )
