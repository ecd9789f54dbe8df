"""Contrastive augmentations: never touch padding, stay left-padded, keep what they should."""

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recrl.models.sasrec import AugmentConfig, crop, mask, random_augment, reorder

PAD, MASK, L = 100, 101, 10


@st.composite
def batches(draw):
    """A left-padded batch [B, L] of distinct-per-position items, lengths 0..L, and a seed."""
    lengths = draw(st.lists(st.integers(0, L), min_size=1, max_size=8))
    state = torch.full((len(lengths), L), PAD, dtype=torch.int32)
    for b, n in enumerate(lengths):
        items = draw(st.lists(st.integers(0, 99), min_size=n, max_size=n))
        if n:
            state[b, L - n :] = torch.tensor(items, dtype=torch.int32)
    ratio = draw(st.sampled_from([0.0, 0.2, 0.3, 0.5, 0.6, 0.9, 1.0]))
    return state, torch.tensor(lengths, dtype=torch.int32), ratio, draw(st.integers(0, 2**31 - 1))


def real_items(state, state_len, b):
    n = int(state_len[b])
    return state[b, L - n :].tolist() if n else []


def assert_left_padded(state, state_len):
    real = torch.arange(L) >= L - state_len.long().unsqueeze(1)
    assert (state[~real] == PAD).all(), "padding slot holds an item"
    assert (state[real] != PAD).all(), "real slot holds padding"


def is_contiguous_run(run, items):
    return any(items[i : i + len(run)] == run for i in range(len(items) - len(run) + 1))


@settings(max_examples=40, deadline=None)
@given(batches())
def test_crop_keeps_a_contiguous_run_of_the_right_length(batch):
    state, state_len, ratio, seed = batch
    out, out_len = crop(state, state_len, ratio, PAD, torch.Generator().manual_seed(seed))
    assert out.dtype == state.dtype and out_len.dtype == state_len.dtype
    assert_left_padded(out, out_len)
    for b in range(state.shape[0]):
        n = int(state_len[b])
        expected = max(1, int(ratio * n + 1e-9)) if n else 0
        assert int(out_len[b]) == expected
        assert is_contiguous_run(real_items(out, out_len, b), real_items(state, state_len, b))


@settings(max_examples=40, deadline=None)
@given(batches())
def test_mask_keeps_length_and_masks_only_real_items(batch):
    state, state_len, ratio, seed = batch
    out, out_len = mask(state, state_len, ratio, MASK, torch.Generator().manual_seed(seed))
    assert torch.equal(out_len, state_len)
    changed = out != state
    assert (out[changed] == MASK).all()
    real = torch.arange(L) >= L - state_len.long().unsqueeze(1)
    assert not changed[~real].any()  # padding untouched
    for b in range(state.shape[0]):
        assert int(changed[b].sum()) == int(ratio * int(state_len[b]) + 1e-9)


@settings(max_examples=40, deadline=None)
@given(batches())
def test_reorder_preserves_multiset_and_permutes_one_contiguous_window(batch):
    state, state_len, ratio, seed = batch
    out, out_len = reorder(state, state_len, ratio, torch.Generator().manual_seed(seed))
    assert torch.equal(out_len, state_len)
    assert_left_padded(out, out_len)
    for b in range(state.shape[0]):
        before, after = real_items(state, state_len, b), real_items(out, out_len, b)
        assert Counter(before) == Counter(after)
        moved = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
        if moved:  # all changes inside one window of floor(ratio * n) items
            assert moved[-1] - moved[0] < int(ratio * len(before) + 1e-9)


def test_reorder_actually_shuffles_a_full_window():
    state = torch.arange(L, dtype=torch.int32).repeat(64, 1)
    out, _ = reorder(state, torch.full((64,), L), 1.0, torch.Generator().manual_seed(0))
    assert (out != state).any(dim=1).float().mean() > 0.9


@settings(max_examples=25, deadline=None)
@given(batches())
def test_random_augment_is_deterministic_and_left_padded(batch):
    state, state_len, ratio, seed = batch
    config = AugmentConfig(crop_ratio=ratio, mask_ratio=ratio, reorder_ratio=ratio)
    one = random_augment(state, state_len, config, PAD, MASK, torch.Generator().manual_seed(seed))
    two = random_augment(state, state_len, config, PAD, MASK, torch.Generator().manual_seed(seed))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    out, out_len = one
    real = torch.arange(L) >= L - out_len.long().unsqueeze(1)
    assert (out[~real] == PAD).all()
    assert (out[real] != PAD).all()
    assert ((out_len == 0) == (state_len == 0)).all()  # an empty history stays empty


def test_augment_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="crop_ratio"):
        AugmentConfig(crop_ratio=1.5)
    with pytest.raises(ValueError, match="methods"):
        AugmentConfig(methods=("shuffle",))
