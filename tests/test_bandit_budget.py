"""The computation budget B and the two-stage forms of Tables 5–6 (two-stage paper §4):
one-stage draws, group sizes, 2-Random and 2-N-Dropout-UCB, on catalogues small enough to
check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recrl.models.bandits import BanditContext, Feedback, PolicySizes, make_policy, policy_config
from recrl.models.bandits.budget import CandidateDraw
from recrl.models.bandits.simple import DropoutUCBPolicy, GreedyPolicy
from recrl.models.bandits.two_stage import TwoStageConfig, TwoStagePolicy, topic_groups
from recrl.pipelines.cli import build_parser
from recrl.pipelines.commands.bandit import bandit_config

from benchmarks.two_stage_tables import ML100K_GENRE_ITEMS

ML100K_TOPIC_SIZES = list(ML100K_GENRE_ITEMS)  # items per first genre: 19 topics, 1,682 items


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def ranked_context(n_items: int, dtype: torch.dtype = torch.float64) -> BanditContext:
    """x_i = i (1-dim), θ = 1: greedy's score of item i is i, so its top-k are the largest
    ids it scores."""
    items = torch.arange(n_items, dtype=dtype).unsqueeze(1)
    return BanditContext(torch.tensor([0]), items, torch.ones(1, 1, dtype=dtype))


class CountingGreedy(GreedyPolicy):
    """Greedy that records how many items each ``scores`` call sees."""

    def __init__(self) -> None:
        super().__init__()
        self.scored: list[int] = []

    def scores(self, context: BanditContext) -> torch.Tensor:
        self.scored.append(context.n_items)
        return super().scores(context)


# --- one-stage budget -------------------------------------------------------------------


def test_one_stage_budget_scores_and_recommends_only_its_draws():
    policy = make_policy("n-greedy", PolicySizes(1, 30, 1, 1, seed=4), {"budget": 10})
    twin = CandidateDraw(10, seed=4)  # the same seed: the same draws, round by round
    context, missed_best = ranked_context(30), 0
    for _ in range(20):
        drawn = twin.draw(torch.arange(30))
        assert len(drawn) == 10 and len(set(drawn.tolist())) == 10
        scores, slate = policy.scores_and_select(context, 2)
        # the two largest drawn ids, best first; every other item unscored
        assert slate[0].tolist() == drawn.sort(descending=True).values[:2].tolist()
        assert torch.isfinite(scores[0]).nonzero().squeeze(1).tolist() == drawn.tolist()
        missed_best += 29 not in slate[0].tolist()
    assert missed_best >= 10  # item 29 is drawn with probability 1/3 a round


def test_the_budget_limits_what_the_policy_computes():
    counting = CountingGreedy()
    counting.candidates = CandidateDraw(7, seed=0)
    counting.select(ranked_context(40), 3)
    assert counting.scored == [7]
    unlimited = CountingGreedy()
    assert unlimited.select(ranked_context(40), 3).tolist() == [[39, 38, 37]]
    assert unlimited.scored == [40]


def test_a_budget_as_large_as_the_catalogue_changes_nothing():
    sizes = PolicySizes(1, 6, 1, 1)
    context = ranked_context(6)
    full = make_policy("n-greedy", sizes, {"budget": 6}).select(context, 3)
    assert full.tolist() == make_policy("n-greedy", sizes).select(context, 3).tolist()
    with pytest.raises(ValueError, match="budget of 2 scores cannot fill a slate of 3"):
        make_policy("n-greedy", sizes, {"budget": 2}).select(context, 3)


def test_galm_under_a_budget_reads_the_drawn_items_own_state():
    # after feedback on items 1 and 3, their per-item inverses differ from the others'
    sizes = PolicySizes(n_users=1, n_items=5, item_dim=1, user_dim=1)
    policy = make_policy("s-n-galm-ucb", sizes)
    context = ranked_context(5, dtype=torch.float32)  # the policy's state is float32
    policy.update(Feedback(context, torch.tensor([[1, 3]]), torch.tensor([[1.0, 0.0]])))
    rows = torch.tensor([3, 0, 1])
    restricted = policy.scores(context.restrict(rows))
    torch.testing.assert_close(restricted, policy.scores(context)[:, rows])
    with pytest.raises(ValueError, match="whole catalogue"):
        Feedback(context.restrict(rows), torch.tensor([[0]]), torch.tensor([[1.0]]))


def test_random_under_a_budget_picks_uniformly_among_all_items():
    policy = make_policy("random", PolicySizes(1, 8, 1, 1, seed=1), {"budget": 3})
    counts = np.zeros(8)
    for _ in range(4000):
        counts[policy.select(ranked_context(8), 1)[0, 0]] += 1
    # 4,000 draws of p = 1/8: std 21 per item
    assert np.abs(counts - 500).max() < 90


def test_budget_is_a_setting_of_every_policy_but_ren():
    for name in ("random", "n-greedy", "n-dropout-ucb", "n-glm-ucb", "s-n-gblm-ucb"):
        assert policy_config(name, {"budget": 100}).budget == 100
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['budget'\]"):
        policy_config("ren", {"budget": 100})
    with pytest.raises(ValueError, match="budget must be >= 1"):
        policy_config("n-greedy", {"budget": 0})
    parsed = build_parser().parse_args(
        ["bandit", "--no-mlflow", "--policy", "s-n-galm-ucb", "--set", "budget=100"]
    )
    assert bandit_config(parsed).policy_settings == {"budget": 100}


# --- two-stage budget -------------------------------------------------------------------


@pytest.mark.parametrize("budget", [100, 500])
def test_groups_hold_the_budget_on_movielens_topic_sizes(budget):
    config = TwoStageConfig(budget=budget, min_group_items=1)
    p = config.group_size(5)
    assert p == budget // 5  # the paper's p: the per-recommendation budget
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        order = torch.randperm(19, generator=generator).tolist()
        groups = topic_groups(order, ML100K_TOPIC_SIZES, 5, p)
        held = [sum(ML100K_TOPIC_SIZES[t] for t in group) for group in groups]
        assert min(held) >= p and sum(held) >= budget
    # a larger configured p stays; without a budget p is the configured one
    assert TwoStageConfig(budget=100, min_group_items=50).group_size(5) == 50
    assert TwoStageConfig(min_group_items=7).group_size(5) == 7


def test_two_stage_spends_q_topic_and_b_minus_q_item_scores():
    # 6 topics of 2..20 items (60 items), B = 30, m = 2: p = 15, so groups hold >= 30 items
    sizes = [2, 5, 8, 10, 15, 20]
    topics = torch.repeat_interleave(torch.arange(6), torch.tensor(sizes))
    topic_stage, item_stage = CountingGreedy(), CountingGreedy()
    config = TwoStageConfig(budget=30, min_group_items=1, seed=2)
    policy = TwoStagePolicy(topic_stage, item_stage, topics, config)
    context = ranked_context(60)
    for _ in range(5):
        scores, slate = policy.scores_and_select(context, 2)
        assert torch.isfinite(scores).sum() == 30 - 6
        groups = topic_groups(list(range(5, -1, -1)), sizes, 2, 15)  # topic means rise with id
        assert all(
            topics[item] in group for item, group in zip(slate[0].tolist(), groups, strict=True)
        )
    assert topic_stage.scored == [6] * 5 and item_stage.scored == [24] * 5


# --- 2-Random ---------------------------------------------------------------------------


def test_two_stage_random_draws_a_topic_then_an_item_uniformly_inside_it():
    topics = torch.tensor([0, 0, 0, 1, 2, 2])
    sizes = PolicySizes(1, 6, 1, 1, seed=0, item_topics=topics)
    policy = make_policy("2-random", sizes, {"min_group_items": 1})
    assert policy.reads_representation is False
    context, draws = ranked_context(6), 6000
    counts = np.zeros(6)
    for _ in range(draws):
        counts[policy.select(context, 1)[0, 0]] += 1
    # topic 1/3 each, then uniform inside: 1/9 ×3, 1/3, 1/6 ×2
    expected = draws * np.array([1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 6, 1 / 6])
    assert np.abs(counts - expected).max() < 4 * np.sqrt(draws * (1 / 3) * (2 / 3))
    # two slots: two groups, so two different topics, every pair of topics seen
    pairs = {tuple(sorted(topics[policy.select(context, 2)[0]].tolist())) for _ in range(200)}
    assert pairs == {(0, 1), (0, 2), (1, 2)}


# --- 2-N-Dropout-UCB ----------------------------------------------------------------------


def dropout_context() -> BanditContext:
    """6 items, topics 0,0,1,1,2,2; two MC passes whose UCB (β = 1: mean + std, std of two
    values = |a − b|/√2) ranks item 1 above item 0 inside topic 0, though its mean is lower."""
    passes = torch.tensor(
        [[[0.5, 0.2, 0.9, 0.7, 0.3, 0.1]], [[0.5, 0.6, 0.9, 0.9, 0.3, 0.1]]], dtype=torch.float64
    )
    return BanditContext(
        torch.tensor([0]), torch.zeros(6, 1, dtype=torch.float64),
        torch.zeros(1, 1, dtype=torch.float64), mc_predictions=passes,
    )  # fmt: skip


@pytest.mark.parametrize(("beta", "slate"), [(1.0, [3, 1]), (0.0, [2, 0])])
def test_two_stage_dropout_ucb_scores_topics_and_items_by_hand(beta, slate):
    topics = torch.tensor([0, 0, 1, 1, 2, 2])
    sizes = PolicySizes(1, 6, 1, 1, item_topics=topics)
    policy = make_policy("2-n-dropout-ucb", sizes, {"beta": beta, "min_group_items": 1})
    # callers hand Monte-Carlo passes to N-Dropout-UCB policies, with its passes and rate
    assert isinstance(policy, DropoutUCBPolicy) and policy.config.passes == 5
    context = dropout_context()
    # topic passes = means of their items': t0 (.35, .55), t1 (.8, .9), t2 (.2, .2)
    std = 0.2 / math.sqrt(2)
    expected = torch.tensor([[0.45 + beta * std, 0.85 + beta * std / 2, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(policy.topic_scores(context), expected)
    # topics t1 > t0 > t2 (either β). Slot 0 takes topic 1's best: item 3 (.8 + .14) over
    # item 2 (.9) at β = 1, item 2 at β = 0; slot 1 topic 0's: item 1 (.4 + .28) over item 0
    # (.5) at β = 1, item 0 at β = 0
    assert policy.select(context, 2).tolist() == [slate]
    # one-stage N-Dropout-UCB would show two items of topic 1
    one_stage = make_policy("n-dropout-ucb", PolicySizes(1, 6, 1, 1), {"beta": beta})
    assert sorted(topics[one_stage.select(context, 2)[0]].tolist()) == [1, 1]


def test_a_group_the_draw_left_empty_takes_the_best_candidate_left():
    # topics 0,0,0,0,1; B = q + 2 = 4: two of the five items are scored a round, so topic 1's
    # group is often empty, and its slot then takes the other drawn item of topic 0
    topics = torch.tensor([0, 0, 0, 0, 1])
    config = TwoStageConfig(budget=4, min_group_items=1, seed=0)
    policy = TwoStagePolicy(GreedyPolicy(), GreedyPolicy(), topics, config)
    context, fell_back = ranked_context(5), 0
    for _ in range(30):
        scores, slate = policy.scores_and_select(context, 2)
        drawn = torch.isfinite(scores[0]).nonzero().squeeze(1).tolist()
        assert len(drawn) == 2 and sorted(slate[0].tolist()) == drawn
        fell_back += 4 not in drawn
    assert fell_back > 0
