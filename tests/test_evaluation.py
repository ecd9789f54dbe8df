"""Batched full-ranking evaluation of a prepared split on a hand-written toy split (SPEC §2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.evaluation import true_item_ranks
from pipelines.evaluation import (
    EvalConfig,
    evaluate,
    evaluate_with_popularity,
    load_eval_split,
    popularity_score_fn,
)
from pipelines.prepare.stages import fixed_size_list

N_ITEMS, PAD, L = 5, 5, 3
COUNTS = [3, 7, 7, 0, 5]  # popularity order: 1, 2 (tie, lower id first), 4, 0, 3

# Rows in (session, step) order; written to parquet shuffled, across two shards.
#   A: session 3 step 0, no history, click item 1
#   B: session 3 step 1, history [1], purchase item 3
#   C: session 8 step 0, no history, click item 2
#   D: session 8 step 1, history [2], purchase item 0
SESSION = [3, 3, 8, 8]
STEP = [0, 1, 0, 1]
STATE = [[PAD, PAD, PAD], [PAD, PAD, 1], [PAD, PAD, PAD], [PAD, PAD, 2]]
STATE_LEN = [0, 1, 0, 1]
ACTION = [1, 3, 2, 0]
IS_BUY = [False, True, False, True]
REWARD = [0.25, 1.0, 0.25, 1.0]  # 0.25 (exact in float32) plays r_click

# Scores depend on the last item of the state only (row = that item, PAD row for no history).
TABLE = torch.zeros(N_ITEMS + 1, N_ITEMS)
TABLE[PAD] = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7])  # A: item 1 top -> rank 1; C: item 2 -> 3
TABLE[1] = torch.tensor([0.0, 0.95, 0.4, 0.6, 0.8])  # B: item 3 below 0.95, 0.8 -> rank 3
TABLE[2] = torch.tensor([0.3, 0.5, 0.1, 0.9, 0.7])  # D: item 0 below 0.5, 0.9, 0.7 -> rank 4
KS = (1, 3)


def fixed_scores(state: torch.Tensor, state_len: torch.Tensor) -> torch.Tensor:
    return TABLE[state[:, -1].long()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("prepared")
    meta = {"n_items": N_ITEMS, "pad_id": PAD, "L": L, "item_counts_train": COUNTS}
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "val").mkdir()
    table = pa.table(
        {
            "session_id": pa.array(SESSION, pa.int64()),
            "step": pa.array(STEP, pa.int32()),
            "state": fixed_size_list(np.array(STATE)),
            "state_len": pa.array(STATE_LEN, pa.int32()),
            "action": pa.array(ACTION, pa.int32()),
            "reward": pa.array(REWARD, pa.float32()),
            "is_buy": pa.array(IS_BUY, pa.bool_()),
            "next_state": fixed_size_list(np.full((4, L), PAD)),
            "next_state_len": pa.array([1, 2, 1, 2], pa.int32()),
            "done": pa.array([False, True, False, True]),
        }
    )
    shuffled = table.take([3, 1, 2, 0])  # D, B | C, A: not in session order
    pq.write_table(shuffled.slice(0, 2), root / "val" / "part-0.parquet")
    pq.write_table(shuffled.slice(2), root / "val" / "part-1.parquet")
    return str(root)


@pytest.fixture(scope="module")
def data(dataset):
    return load_eval_split(dataset, "val")


def test_load_sorts_by_session_and_keeps_compact_dtypes(data):
    assert data.num_rows == 4 and data.n_items == N_ITEMS and data.pad_id == PAD
    assert data.action.tolist() == ACTION
    assert data.state.tolist() == STATE and data.state_len.tolist() == STATE_LEN
    assert data.state.dtype == torch.int32 and data.action.dtype == torch.int32
    assert data.is_buy.tolist() == IS_BUY and data.reward.tolist() == REWARD


def test_metrics_match_hand_computation(data):
    m = evaluate(fixed_scores, data, EvalConfig(ks=KS))
    # ranks: A 1 (click), B 3 (purchase), C 3 (click), D 4 (purchase)
    assert m["hr_1_click"] == 0.5 and m["ndcg_1_click"] == 0.5
    assert m["hr_1_purchase"] == 0.0 and m["ndcg_1_purchase"] == 0.0
    assert m["reward_1"] == pytest.approx(0.25)
    assert m["hr_3_click"] == 1.0
    assert m["ndcg_3_click"] == pytest.approx((1.0 + 0.5) / 2)  # 1/log2(2), 1/log2(4)
    assert m["hr_3_purchase"] == 0.5 and m["ndcg_3_purchase"] == pytest.approx(0.5 / 2)
    assert m["reward_3"] == pytest.approx(0.25 + 1.0 + 0.25)
    assert m["eval_rows"] == 4.0 and m["eval_seconds"] >= 0.0
    assert not any("@" in name for name in m)


def test_default_ks_give_the_protocol_names(data):
    m = evaluate(fixed_scores, data)
    expected = {
        f"{name}_{k}_{event}"
        for name in ("hr", "ndcg")
        for k in (5, 10, 20)
        for event in ("click", "purchase")
    }
    expected |= {"reward_5", "reward_10", "reward_20", "eval_rows", "eval_seconds"}
    assert set(m) == expected
    assert m["hr_5_click"] == 1.0 and m["hr_5_purchase"] == 1.0  # every rank <= 5 items


def test_exclude_seen_removes_history_items(data):
    m = evaluate(fixed_scores, data, EvalConfig(ks=KS, exclude_seen=True))
    # B: seen item 1 (0.95) leaves the ranking -> rank 2; D: seen item 2 scores below -> 4
    assert m["ndcg_3_purchase"] == pytest.approx(1 / math.log2(3) / 2)
    assert m["ndcg_3_click"] == pytest.approx(0.75)


def test_max_rows_takes_the_first_rows_in_session_order(data):
    m = evaluate(fixed_scores, data, EvalConfig(ks=KS, max_rows=2))  # rows A and B
    assert m["eval_rows"] == 2.0
    assert m["hr_3_click"] == 1.0 and m["ndcg_3_click"] == 1.0
    assert m["hr_3_purchase"] == 1.0 and m["ndcg_3_purchase"] == pytest.approx(0.5)
    assert m["reward_3"] == pytest.approx(1.25)
    one = evaluate(fixed_scores, data, EvalConfig(ks=KS, max_rows=1))  # row A: no purchase
    assert math.isnan(one["hr_3_purchase"]) and one["hr_1_click"] == 1.0
    assert evaluate(fixed_scores, data, EvalConfig(max_rows=100))["eval_rows"] == 4.0


def test_batch_size_not_dividing_rows_gives_the_same_metrics(data):
    one_batch = evaluate(fixed_scores, data, EvalConfig(ks=KS, batch_size=1024))
    for batch_size in (1, 3):
        batched = evaluate(fixed_scores, data, EvalConfig(ks=KS, batch_size=batch_size))
        for name, value in one_batch.items():
            if name != "eval_seconds":
                assert batched[name] == value, (batch_size, name)


def test_popularity_ranks_break_ties_by_item_id(data):
    score_fn = popularity_score_fn(COUNTS)
    state = torch.full((N_ITEMS, L), PAD, dtype=torch.int32)
    scores = score_fn(state, torch.zeros(N_ITEMS, dtype=torch.int32))
    assert scores.shape == (N_ITEMS, N_ITEMS)
    ranks = true_item_ranks(scores, torch.arange(N_ITEMS))
    assert ranks.tolist() == [4, 1, 2, 5, 3]  # items 0..4

    # on the split: A (item 1) rank 1, B (item 3) rank 5, C (item 2) rank 2, D (item 0) rank 4
    m = evaluate(score_fn, data, EvalConfig(ks=KS))
    assert m["hr_1_click"] == 0.5 and m["hr_3_click"] == 1.0
    assert m["ndcg_3_click"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
    assert m["hr_3_purchase"] == 0.0 and m["reward_3"] == pytest.approx(0.5)


@pytest.mark.parametrize("max_rows", [None, 1])
def test_popularity_baseline_is_scored_on_the_models_rows(data, max_rows):
    # One config for both, so a row limit cannot apply to the baseline alone.
    seen = []

    def recording(state, state_len):
        seen.append(state.clone())
        return fixed_scores(state, state_len)

    config = EvalConfig(ks=KS, max_rows=max_rows)
    model, baseline = evaluate_with_popularity(recording, data, COUNTS, config)
    rows = 4 if max_rows is None else 1
    assert model["eval_rows"] == baseline["eval_rows"] == rows
    assert torch.equal(torch.cat(seen), data.state[:rows])
    alone = evaluate(popularity_score_fn(COUNTS), data.head(rows), config)
    del alone["eval_seconds"], baseline["eval_seconds"]
    assert baseline == pytest.approx(alone, nan_ok=True)
    if max_rows == 1:  # row A alone: item 1, the most popular, is a click hit at rank 1
        assert baseline["hr_1_click"] == 1.0 and math.isnan(baseline["hr_3_purchase"])


def test_wrong_score_shape_and_bad_config_are_refused(data):
    def pad_column(state, state_len):
        return torch.zeros(state.shape[0], N_ITEMS + 1)

    with pytest.raises(ValueError, match="expected"):
        evaluate(pad_column, data)
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ValueError, match="max_rows"):
        EvalConfig(max_rows=0)
