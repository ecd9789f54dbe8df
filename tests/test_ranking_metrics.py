"""Full-ranking HR / NDCG / reward on a toy ranking with known ranks (design.md §2)."""

import math

import pytest
import torch
from recrl.models.evaluation import finalize_ranking, merge_sums, ranking_sums, true_item_ranks

PAD = 6  # n_items = 6
SCORES = torch.tensor(
    [
        [0.1, 0.9, 0.5, 0.3, 0.7, 0.0],  # a = 2: 0.9, 0.7 above -> rank 3
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # a = 5: top -> rank 1
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # a = 0: all tied -> pessimistic rank 6
        [0.5, 0.5, 0.9, 0.0, 0.0, 0.0],  # a = 0: 0.9 above, item 1 tied -> rank 3
    ]
)
ACTIONS = torch.tensor([2, 5, 0, 0], dtype=torch.int32)
IS_BUY = torch.tensor([False, True, False, True])
REWARD = torch.tensor([0.2, 1.0, 0.2, 1.0])


def test_ranks_are_pessimistic_on_ties():
    assert true_item_ranks(SCORES, ACTIONS).tolist() == [3, 1, 6, 3]


def test_sums_and_final_metrics_on_toy_ranking():
    sums = ranking_sums(SCORES, ACTIONS, IS_BUY, REWARD, ks=(1, 3, 5))
    values = {key: float(v) for key, v in sums.items()}
    assert values["count_click"] == 2 and values["count_purchase"] == 2
    # k = 1: only row 1 (purchase, rank 1, gain 1/log2(2) = 1)
    assert values["hit_1_click"] == 0 and values["hit_1_purchase"] == 1
    assert values["ndcg_1_purchase"] == pytest.approx(1.0)
    assert values["reward_1"] == pytest.approx(1.0)
    # k = 3: row 0 (click, rank 3, gain 1/log2(4) = 0.5), rows 1 and 3 (purchase, 1 + 0.5)
    assert values["hit_3_click"] == 1 and values["ndcg_3_click"] == pytest.approx(0.5)
    assert values["hit_3_purchase"] == 2 and values["ndcg_3_purchase"] == pytest.approx(1.5)
    assert values["reward_3"] == pytest.approx(0.2 + 1.0 + 1.0)
    # k = 5: row 2 (rank 6) still misses
    assert values["hit_5_click"] == 1 and values["reward_5"] == pytest.approx(2.2)

    final = finalize_ranking(sums)
    assert final["hr_1_click"] == 0.0 and final["hr_1_purchase"] == 0.5
    assert final["hr_3_click"] == pytest.approx(0.5)
    assert final["ndcg_3_click"] == pytest.approx(0.25)
    assert final["hr_3_purchase"] == pytest.approx(1.0)
    assert final["ndcg_3_purchase"] == pytest.approx(0.75)
    assert final["reward_3"] == pytest.approx(2.2)


def test_exclude_seen_removes_history_and_misses_a_seen_target():
    seen = torch.full((4, 3), PAD)
    seen[0, 2] = 1  # item 1 (0.9) leaves the ranking -> row 0 rank 2
    seen[1, 1:] = torch.tensor([0, 5])  # the target itself was seen -> miss
    ranks = true_item_ranks(SCORES, ACTIONS, seen)
    assert ranks.tolist() == [2, 7, 6, 3]
    assert torch.equal(SCORES, SCORES.clone())  # the caller's scores are not modified


def test_batches_accumulate_to_the_whole():
    whole = ranking_sums(SCORES, ACTIONS, IS_BUY, REWARD)
    total: dict = {}
    for rows in (slice(0, 1), slice(1, 4)):
        part = ranking_sums(SCORES[rows], ACTIONS[rows], IS_BUY[rows], REWARD[rows])
        total = merge_sums(total, part)
    assert finalize_ranking(total) == pytest.approx(finalize_ranking(whole))


def test_default_names_and_nan_without_events():
    final = finalize_ranking(ranking_sums(SCORES[:1], ACTIONS[:1], IS_BUY[:1], REWARD[:1]))
    for name in ("hr_20_purchase", "ndcg_5_click", "reward_10", "hr_10_click"):
        assert name in final
    assert not any("@" in name for name in final)
    assert math.isnan(final["hr_20_purchase"])  # no purchase event in this batch


def test_ranks_match_a_sort_on_random_scores():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(32, 50, generator=g)
    actions = torch.randint(50, (32,), generator=g)
    order = scores.argsort(dim=1, descending=True)
    expected = (order == actions.unsqueeze(1)).float().argmax(dim=1) + 1
    assert torch.equal(true_item_ranks(scores, actions), expected)
