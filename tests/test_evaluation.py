"""Batched full-ranking evaluation of a prepared split on a hand-written split (design.md §2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from recrl.models.evaluation import true_item_ranks
from recrl.pipelines.evaluation import (
    EvalConfig,
    EvalData,
    evaluate,
    evaluate_with_popularity,
    load_eval_split,
    popularity_score_fn,
    rank_counts,
    ranking_metrics,
)
from recrl.pipelines.prepare.stages import fixed_size_list

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


# Ties: the true item's rank counts every item scoring at least as high, itself included.
#   A (no history, item 1): 0.5 tied by items 2 and 4, 0.9 above -> rank 4
#   B (history [1], item 3): alone on top -> rank 1
#   C (no history, item 2): same row as A -> rank 4
#   D (history [2], item 0): every item at 0.25 -> rank 5 (last, never first)
TIED = torch.zeros(N_ITEMS + 1, N_ITEMS)
TIED[PAD] = torch.tensor([0.9, 0.5, 0.5, 0.1, 0.5])
TIED[1] = torch.tensor([0.2, 0.3, 0.2, 0.8, 0.3])
TIED[2] = torch.full((N_ITEMS,), 0.25)


def tied_scores(state: torch.Tensor, state_len: torch.Tensor) -> torch.Tensor:
    return TIED[state[:, -1].long()]


def test_ties_rank_the_true_item_after_every_equal_score(data):
    m = evaluate(tied_scores, data, EvalConfig(ks=(1, 4, 5)))
    # clicks A, C at rank 4; purchases B at rank 1, D at rank 5
    assert m["hr_1_click"] == 0.0 and m["hr_4_click"] == 1.0
    assert m["ndcg_4_click"] == 1 / math.log2(5)  # both clicks: (2 / log2 5) / 2
    assert m["hr_1_purchase"] == 0.5 and m["ndcg_1_purchase"] == 0.5
    assert m["hr_4_purchase"] == 0.5 and m["hr_5_purchase"] == 1.0
    assert m["ndcg_5_purchase"] == (1.0 + 1 / math.log2(6)) / 2
    assert m["reward_1"] == 1.0 and m["reward_4"] == 1.5 and m["reward_5"] == 2.5
    for batch_size in (1, 2, 3):
        batched = evaluate(tied_scores, data, EvalConfig(ks=(1, 4, 5), batch_size=batch_size))
        assert {k: batched[k] for k in m if k != "eval_seconds"} == {
            k: v for k, v in m.items() if k != "eval_seconds"
        }


def test_rank_counts_bin_ranks_by_event_type():
    ranks = torch.tensor([1, 3, 3, 7, 2, 100, 1])
    is_buy = torch.tensor([False, False, True, False, True, True, True])
    reward = torch.tensor([0.25, 0.25, 1.0, 0.25, 1.0, 1.0, 1.0])
    counts, rewards = rank_counts(ranks, is_buy, reward, ks=(1, 3))
    # columns: rank 0 (never), 1, 2, 3, lower than 3
    assert counts.tolist() == [[0, 1, 0, 1, 1], [0, 1, 1, 1, 1]]
    assert rewards.dtype == torch.float64
    assert rewards.tolist() == [1.25, 3.5]  # rank 1: 0.25 + 1; rank <= 3: 0.25 * 2 + 1 * 3


def test_ranking_metrics_from_counts_match_a_hand_computation():
    counts = torch.tensor([[0, 1, 0, 1, 1], [0, 1, 1, 1, 1]])
    m = ranking_metrics(counts, torch.tensor([1.25, 3.5], dtype=torch.float64), ks=(1, 3))
    assert m["hr_1_click"] == 1 / 3 and m["hr_3_click"] == 2 / 3
    assert m["ndcg_3_click"] == pytest.approx((1.0 + 0.5) / 3)
    assert m["hr_3_purchase"] == 0.75
    assert m["ndcg_3_purchase"] == pytest.approx((1.0 + 1 / math.log2(3) + 0.5) / 4)
    assert m["reward_1"] == 1.25 and m["reward_3"] == 3.5
    empty = ranking_metrics(torch.tensor([[0, 2, 0], [0, 0, 0]]), torch.zeros(1), ks=(1,))
    assert empty["hr_1_click"] == 1.0 and math.isnan(empty["ndcg_1_purchase"])


def test_ndcg_is_the_correctly_rounded_sum_of_the_gains_whatever_the_batching():
    # Random scores with many ties (values on a coarse grid): every batch size gives the
    # same metrics to the last digit, equal to math.fsum of the per-event gains of ranks
    # counted item by item.
    g = torch.Generator().manual_seed(0)
    n, n_items = 300, 40
    scores = torch.randint(0, 12, (n, n_items), generator=g).float() / 4
    data = EvalData(
        state=torch.arange(n, dtype=torch.int32).unsqueeze(1),  # the row id, as a "state"
        state_len=torch.ones(n, dtype=torch.int32),
        action=torch.randint(0, n_items, (n,), generator=g, dtype=torch.int32),
        is_buy=torch.rand(n, generator=g) < 0.3,
        reward=torch.where(torch.rand(n, generator=g) < 0.5, 0.2, 1.0),
        n_items=n_items,
        pad_id=n_items,
    )

    def score_fn(state, state_len):
        return scores[state[:, 0].long()]

    # pessimistic rank, item by item: 1 + #(higher) + #(tied other items)
    ranks = []
    for row, a in zip(scores.tolist(), data.action.tolist(), strict=True):
        higher = sum(v > row[a] for v in row)
        tied_others = sum(v == row[a] for v in row) - 1
        ranks.append(1 + higher + tied_others)
    ranks = torch.tensor(ranks)
    assert (ranks > 1 + (scores > scores.gather(1, data.action.long()[:, None])).sum(1)).any()
    ks = (1, 5, 10)
    runs = [evaluate(score_fn, data, EvalConfig(ks=ks, batch_size=b)) for b in (1, 7, 64, 300)]
    for event, mask in (("click", ~data.is_buy), ("purchase", data.is_buy)):
        for k in ks:
            hit = (ranks <= k) & mask
            gains = (1.0 / torch.log2(ranks[hit].double() + 1.0)).tolist()
            expected = math.fsum(gains) / int(mask.sum())
            assert all(run[f"ndcg_{k}_{event}"] == expected for run in runs), (event, k)
            assert all(run[f"hr_{k}_{event}"] == int(hit.sum()) / int(mask.sum()) for run in runs)
    for k in ks:
        expected = math.fsum(data.reward.double()[ranks <= k].tolist())
        assert all(run[f"reward_{k}"] == expected for run in runs)
    assert 0.0 < runs[0]["hr_10_click"] < 1.0  # the test sees hits and misses
