"""Assigning sessions to train/val/test (design.md §1, "Split")."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def split_sizes(n_sessions: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Session counts per split; rounding leftovers go to train (never below zero)."""
    n_val = min(round(n_sessions * fractions[1]), n_sessions)
    n_test = min(round(n_sessions * fractions[2]), n_sessions - n_val)
    n_train = n_sessions - n_val - n_test
    return n_train, n_val, n_test


def assign_splits(
    session_ids: np.ndarray,
    session_starts: np.ndarray,
    *,
    method: str,
    fractions: tuple[float, float, float],
    seed: int,
) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each session.

    ``session_ids`` must be sorted and unique, so that the result depends only on the set
    of sessions and the seed, never on how the input was partitioned. ``session``: a
    seeded permutation of the sorted ids, cut at the fractions. ``time``: sessions ordered
    by start time (ties by id), the earliest for train and the latest for test.
    """
    n = len(session_ids)
    n_train, n_val, _ = split_sizes(n, fractions)
    if method == "session":
        order = np.random.default_rng(seed).permutation(n)
    elif method == "time":
        order = np.lexsort((np.arange(n), session_starts))
    else:
        raise ValueError(f"unknown split method {method!r}")
    codes = np.empty(n, dtype=np.int8)
    codes[order[:n_train]] = 0
    codes[order[n_train : n_train + n_val]] = 1
    codes[order[n_train + n_val :]] = 2
    return codes
