"""Session split: deterministic from the seed, disjoint, complete, 80/10/10 (design.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from recrl.pipelines.prepare.split import assign_splits, split_sizes

FRACTIONS = (0.8, 0.1, 0.1)


def by_session(ids, starts=None, *, method="session", seed=0, fractions=FRACTIONS):
    ids = np.asarray(ids)
    starts = np.zeros(len(ids), np.int64) if starts is None else np.asarray(starts)
    codes = assign_splits(ids, starts, method=method, fractions=fractions, seed=seed)
    return dict(zip(ids.tolist(), codes.tolist(), strict=True))


def test_sizes_are_80_10_10_and_every_session_in_exactly_one_split():
    ids = np.arange(1000) * 7 + 3
    codes = assign_splits(ids, np.zeros(1000), method="session", fractions=FRACTIONS, seed=0)
    assert codes.dtype == np.int8
    assert np.bincount(codes, minlength=3).tolist() == [800, 100, 100]
    assert set(codes.tolist()) == {0, 1, 2}  # one code per session: disjoint and complete


def test_same_seed_same_split_other_seed_other_split():
    ids = np.arange(1000)
    assert by_session(ids, seed=7) == by_session(ids, seed=7)
    other = by_session(ids, seed=8)
    assert other != by_session(ids, seed=7)
    assert sorted(other.values()).count(2) == 100  # still 80/10/10


def test_split_is_random_not_a_prefix():
    codes = assign_splits(np.arange(1000), np.zeros(1000), method="session", fractions=FRACTIONS,
                          seed=0)  # fmt: skip
    assert 0 < np.count_nonzero(codes[:800]) < 200  # val/test sessions spread over the ids


def test_split_depends_on_the_set_of_sessions_not_on_the_input_order():
    rng = np.random.default_rng(1)
    raw = rng.choice(10**9, size=500, replace=False)
    first = by_session(np.unique(raw), seed=3)  # callers pass sorted unique ids
    second = by_session(np.unique(rng.permutation(np.concatenate([raw, raw[:50]]))), seed=3)
    assert first == second


def test_string_session_ids():
    ids = np.array(sorted(f"user{i}" for i in range(20)), dtype=object)
    split = by_session(ids, seed=0)
    assert list(split.values()).count(1) == 2 and list(split.values()).count(2) == 2


def test_time_split_puts_the_latest_sessions_in_test():
    rng = np.random.default_rng(0)
    ids = np.arange(1000)
    starts = rng.permutation(1000) * 1_000_000_000
    codes = assign_splits(ids, starts, method="time", fractions=FRACTIONS, seed=0)
    rank = np.argsort(np.argsort(starts))  # 0 = earliest session
    assert (codes[rank < 800] == 0).all()
    assert (codes[(rank >= 800) & (rank < 900)] == 1).all()
    assert (codes[rank >= 900] == 2).all()
    # The seed plays no part in a time split.
    assert (assign_splits(ids, starts, method="time", fractions=FRACTIONS, seed=5) == codes).all()


def test_time_split_breaks_ties_by_session_id():
    codes = assign_splits(np.arange(5), np.array([7, 7, 7, 7, 7]), method="time",
                          fractions=(0.6, 0.2, 0.2), seed=0)  # fmt: skip
    assert codes.tolist() == [0, 0, 0, 1, 2]
    codes = assign_splits(np.arange(5), np.array([9, 1, 5, 1, 3]), method="time",
                          fractions=(0.6, 0.2, 0.2), seed=0)  # fmt: skip
    assert codes.tolist() == [2, 0, 1, 0, 0]


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown split method 'user'"):
        assign_splits(np.arange(3), np.zeros(3), method="user", fractions=FRACTIONS, seed=0)


@pytest.mark.parametrize(
    ("n", "fractions", "sizes"),
    [
        (1000, FRACTIONS, (800, 100, 100)),
        (10, FRACTIONS, (8, 1, 1)),
        (7, FRACTIONS, (5, 1, 1)),  # 0.7 rounds up for val and test; train takes the rest
        (4, FRACTIONS, (4, 0, 0)),  # 0.4 rounds down
        (0, FRACTIONS, (0, 0, 0)),
        (3, (0.0, 0.5, 0.5), (0, 2, 1)),  # rounding never makes train negative
        (5, (1.0, 0.0, 0.0), (5, 0, 0)),
        (5, (0.0, 0.0, 1.0), (0, 0, 5)),
    ],
)
def test_split_sizes_rounding(n, fractions, sizes):
    assert split_sizes(n, fractions) == sizes


@given(
    st.integers(0, 10_000),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_split_sizes_always_add_up(n, val, share):
    test = share * (1 - val)  # val + test <= 1
    sizes = split_sizes(n, (1 - val - test, val, test))
    assert sum(sizes) == n
    assert min(sizes) >= 0


def test_split_with_zero_train_fraction_assigns_every_session_once():
    codes = assign_splits(np.arange(3), np.zeros(3), method="session", fractions=(0.0, 0.5, 0.5),
                          seed=0)  # fmt: skip
    assert np.bincount(codes, minlength=3).tolist() == [0, 2, 1]
