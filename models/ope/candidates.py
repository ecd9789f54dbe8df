"""Logs whose rows each carry their own candidate set: a session's history, the items the
logging policy could show, the one it showed (design.md §9.6).

The estimators of `recrl.models.ope.estimators` index actions by column. Here row $i$'s
actions are the slots of its candidate list, padded to the longest list: ``items[i, c]`` is
the catalogue id (an index into ``vocabulary``, the sorted raw ids) of slot $c$, or -1 past
the end of the row's list, and ``shown[i]`` is the slot of the logged item. A target policy
is then ``[n, C]`` with no mass on padding, and so are the reward model's predictions.
Everything here is numpy on raw-id arrays; reading files and scoring with a model live in
`recrl.pipelines.ope`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from recrl.models.ope.logged_feedback import OPEInputError, Support
from recrl.models.ope.reward_model import RewardFeatures

# The columns of a candidate log file (design.md §9.6), for its reader and its writers.
SESSION_ID = "session_id"
"""Optional: the session a row belongs to (kept for reference; rows are estimated alone)."""
HISTORY = "history"
"""The session's items before the impression, raw ids, oldest first (may be empty)."""
CANDIDATES = "candidates"
"""Optional: the raw ids the logging policy chose from; without it, the whole catalogue."""
ITEM = "item"
"""The raw id the logging policy showed."""
PROPENSITY = "propensity"
"""μ(item | history, candidates): the logging policy's probability of showing ``item``."""
REWARD = "reward"
"""The reward of the impression (1/0 for a click)."""
EXPECTED_REWARD = "candidate_expected_reward"
"""Optional, simulators only: each candidate's true expected reward, aligned with
``candidates``; with it the target's true value on the log is known."""


@dataclass(frozen=True)
class Ragged:
    """Rows of different lengths as one flat array: row $i$ is
    ``values[offsets[i]:offsets[i + 1]]`` (``offsets``: int64 ``[n + 1]``, from 0)."""

    values: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError("offsets must start at 0 and never decrease")
        if offsets[-1] != len(self.values):
            raise ValueError(f"offsets end at {offsets[-1]}, the values number {len(self.values)}")
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_lists(cls, rows) -> Ragged:
        """From a sequence of sequences (tests, small logs)."""
        lengths = [len(row) for row in rows]
        values = [value for row in rows for value in row]
        return cls(np.asarray(values), np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row_ids(self) -> np.ndarray:
        """The row of each value, ``[len(values)]``."""
        return np.repeat(np.arange(len(self)), self.lengths)

    @property
    def positions(self) -> np.ndarray:
        """Each value's 0-based place within its row."""
        return np.arange(len(self.values)) - self.offsets[self.row_ids]

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def with_values(self, values: np.ndarray) -> Ragged:
        """The same rows holding other values (a mapping of these, say)."""
        return Ragged(values, self.offsets)

    def take(self, rows: np.ndarray) -> Ragged:
        """The rows ``rows`` (indices, in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        source = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(self.values[source], offsets)


@dataclass(frozen=True)
class CandidateSets:
    """Each row's candidate slots (module docstring): ``vocabulary`` ``[V]`` sorted unique raw
    ids; ``items`` int64 ``[n, C]`` indices into it, -1 for padding; ``shown`` int64 ``[n]``,
    the slot of the logged item."""

    vocabulary: np.ndarray
    items: np.ndarray
    shown: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """``[n, C]``: the slot holds a candidate (not padding)."""
        return self.items >= 0

    @property
    def shown_items(self) -> np.ndarray:
        """Vocabulary index of each row's logged item, ``[n]``."""
        return self.items[np.arange(len(self.shown)), self.shown]

    def take(self, rows: np.ndarray) -> CandidateSets:
        return CandidateSets(self.vocabulary, self.items[rows], self.shown[rows])


def candidate_sets(shown: np.ndarray, candidates: Ragged) -> CandidateSets:
    """Slots from each row's logged candidate list (raw ids) and the raw id it showed.

    Refused with an `OPEInputError` naming the first bad row: an empty list (column
    ``candidates``), an id listed twice in one row (``candidates``), a shown item that is not
    in its row's list (``item``)."""
    n = len(candidates)
    if len(shown) != n:
        raise OPEInputError(f"has {len(shown)} rows, the candidates {n}", column="item")
    _first_row(candidates.lengths == 0, "candidates", "is empty: a row needs at least the item "
               "it showed")  # fmt: skip
    vocabulary = np.unique(candidates.values)
    index = np.searchsorted(vocabulary, candidates.values)
    rows = candidates.row_ids
    keys = rows * len(vocabulary) + index  # (row, item), unique per row unless listed twice
    order = np.argsort(keys, kind="stable")
    repeated = np.zeros(n, dtype=bool)
    repeated[rows[order][1:][np.diff(keys[order]) == 0]] = True
    _first_row(repeated, "candidates", "lists an item twice")
    at = np.searchsorted(vocabulary, shown).clip(0, len(vocabulary) - 1)
    known = vocabulary[at] == shown
    shown_keys = np.arange(n) * len(vocabulary) + at
    found = np.searchsorted(keys[order], shown_keys).clip(0, len(keys) - 1)
    listed = known & (keys[order][found] == shown_keys)
    _first_row(~listed, "item", "is not among the row's candidates", values=shown)
    items = np.full((n, int(candidates.lengths.max())), -1, dtype=np.int64)
    items[rows, candidates.positions] = index
    slot = order[found] - candidates.offsets[:-1]
    return CandidateSets(vocabulary, items, slot.astype(np.int64))


def catalogue_sets(shown: np.ndarray, catalogue: np.ndarray) -> CandidateSets:
    """Slots for a log without candidate lists: every row may show any item of
    ``catalogue`` (the target policy's raw ids) or of the log's shown items. Costs
    ``n × V`` memory, as does any target distribution over the whole catalogue."""
    vocabulary = np.unique(np.concatenate([np.asarray(catalogue), np.asarray(shown)]))
    width = len(vocabulary)
    items = np.broadcast_to(np.arange(width, dtype=np.int64), (len(shown), width))
    return CandidateSets(vocabulary, items, np.searchsorted(vocabulary, shown).astype(np.int64))


def vocabulary_index(vocabulary: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Index of each raw id in the sorted ``vocabulary``, -1 where it is absent."""
    if len(vocabulary) == 0 or len(raw) == 0:
        return np.full(len(raw), -1, dtype=np.int64)
    at = np.searchsorted(vocabulary, raw).clip(0, len(vocabulary) - 1)
    return np.where(vocabulary[at] == raw, at, -1).astype(np.int64)


def candidate_support(sets: CandidateSets, target: np.ndarray) -> Support:
    """The target's mass on items that no row of the log shows (design.md §9.4, by catalogue
    item instead of by column): ``unlogged`` lists ``(0, vocabulary index)`` of each such item
    the target puts mass on; ``mass`` is the mean over rows of the mass on them."""
    shown_anywhere = np.zeros(len(sets.vocabulary), dtype=bool)
    shown_anywhere[sets.shown_items] = True
    unlogged = sets.mask & ~shown_anywhere[np.maximum(sets.items, 0)]
    mass = float((target * unlogged).sum(axis=1).mean())
    wanted = np.unique(sets.items[unlogged & (target > 0)])
    return Support(unlogged=tuple((0, int(item)) for item in wanted), mass=mass)


def candidate_features(
    history: Ragged, sets: CandidateSets, scores: np.ndarray | None = None,
    scorable: np.ndarray | None = None,
) -> RewardFeatures:  # fmt: skip
    """Features of the reward model on a candidate log (design.md §9.6), with per-item
    intercepts through ``items``:

    - context $\\phi(x_i)$: $\\log(1 + |h_i|)$, the length of the history $h_i$;
    - pair $\\psi(x_i, a)$: whether item $a$ is already in $h_i$ and, given the policy's
      ``scores`` ``[n, C]``, its log-softmax over the row's ``scorable`` candidates (the
      model's own belief that $a$ comes next). A candidate the model cannot score gets its
      row's lowest value; the target gives it no mass, so $\\hat q$ there only enters the fit.

    ``history``: each row's items as vocabulary indices (-1 for an item not in it)."""
    n, width = sets.items.shape
    vocabulary_size = len(sets.vocabulary)
    known = history.values >= 0
    seen = np.unique(history.row_ids[known] * vocabulary_size + history.values[known])
    keys = np.arange(n)[:, None] * vocabulary_size + np.maximum(sets.items, 0)
    in_history = (np.isin(keys, seen) & sets.mask).astype(np.float64)
    pair = [in_history]
    if scores is not None:
        allowed = sets.mask if scorable is None else scorable & sets.mask
        if not allowed.any(axis=1).all():
            raise ValueError("every row needs a candidate the model scores (leave the others out)")
        logits = np.where(allowed, scores, -np.inf)
        top = logits.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        log_prob = np.where(allowed, logits - log_norm, np.inf)
        floor = log_prob.min(axis=1, keepdims=True)
        pair.append(np.where(allowed, log_prob, floor))
    context = np.log1p(history.lengths.astype(np.float64))[:, None]
    return RewardFeatures(
        context, np.stack(pair, axis=2), np.maximum(sets.items, 0).reshape(n, width)
    )


def _first_row(bad: np.ndarray, column: str, problem: str, values=None) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        more = f" ({rows.size} rows in all)" if rows.size > 1 else ""
        value = "" if values is None else f"value {_plain(values[rows[0]])!r} "
        raise OPEInputError(f"{value}{problem}{more}", row=int(rows[0]), column=column)


def _plain(value):
    """A numpy scalar as the Python number it holds, so a message reads 0.0, not np.float64(0.0)."""
    return value.item() if isinstance(value, np.generic) else value
