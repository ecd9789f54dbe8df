"""Two-stage topic → item policy (two-stage paper Algs. 1–2): groups, scores, slates, updates."""

from __future__ import annotations

import pytest
import torch
from recrl.models.bandits import BanditContext, Feedback, PolicySizes, make_policy
from recrl.models.bandits.simple import GreedyPolicy
from recrl.models.bandits.two_stage import TwoStageConfig, TwoStagePolicy, topic_groups


def test_topic_groups_grow_until_each_holds_p_items():
    # topics best first 3, 0, 1, 2; sizes 5, 1, 1, 10: both seeds already hold >= 4 items
    assert topic_groups([3, 0, 1, 2], [5, 1, 1, 10], m=2, p=4) == [[3], [0]]
    # sizes all 1, p = 2: group 0 takes topic 1, group 1 takes topic 2 (turns, best first)
    assert topic_groups([3, 0, 1, 2], [1, 1, 1, 1], m=2, p=2) == [[3, 1], [0, 2]]
    # p = 3: a second round; group 0 takes the last topic, group 1 stays short (list empty)
    assert topic_groups([3, 0, 1, 2, 4], [1] * 5, m=2, p=3) == [[3, 1, 4], [0, 2]]
    with pytest.raises(ValueError, match="at least 3 topics"):
        topic_groups([0, 1], [1, 1], m=3, p=1)


def hand_context() -> BanditContext:
    # 5 items, 1-dim embeddings; user θ = 1, so greedy scores are the embeddings
    items = torch.tensor([[2.5], [3.0], [2.0], [0.5], [-1.0]])
    return BanditContext(torch.tensor([0]), items, torch.tensor([[1.0]]))


def hand_policy(**config) -> TwoStagePolicy:
    topics = torch.tensor([0, 0, 1, 1, 2])
    return TwoStagePolicy(GreedyPolicy(), GreedyPolicy(), topics, TwoStageConfig(**config))


def test_scores_and_slate_by_hand():
    policy = hand_policy(min_group_items=3)
    context = hand_context()
    # topic representations = mean item embedding: (2.5+3)/2, (2+0.5)/2, -1
    torch.testing.assert_close(policy.topic_scores(context), torch.tensor([[2.75, 1.25, -1.0]]))
    torch.testing.assert_close(policy.scores(context), torch.tensor([[2.5, 3.0, 2.0, 0.5, -1.0]]))
    # groups: [0] and [1] hold 2 items each < 3, so group 0 also takes topic 2 -> [[0, 2], [1]]
    # slot 0: best of items {0, 1, 4} = item 1; slot 1: best of {2, 3} = item 2
    scores, slate = policy.scores_and_select(context, 2)
    assert slate.tolist() == [[1, 2]]
    assert policy.select(context, 2).tolist() == [[1, 2]]
    # relevance-only top-2 would show two items of topic 0
    assert torch.topk(scores, 2).indices.tolist() == [[1, 0]]


def test_budget_limits_the_candidates():
    # 3 topics + 2 items: the slate may only use 2 of the groups' items, drawn at random
    policy = hand_policy(min_group_items=1, budget=5, seed=3)
    for _ in range(10):
        slate = policy.select(hand_context(), 2)[0].tolist()
        assert len(set(slate)) == 2 and all(0 <= item < 5 for item in slate)
    unlimited = hand_policy(min_group_items=1)
    assert unlimited.select(hand_context(), 2).tolist() == [[1, 2]]


def test_registry_builds_two_stage_galm_and_updates_both_stages():
    topics = torch.tensor([0, 0, 1, 1, 2])
    sizes = PolicySizes(n_users=2, n_items=5, item_dim=1, user_dim=1, item_topics=topics)
    policy = make_policy("2-s-n-galm-ucb", sizes, {"beta": 0.5})
    assert policy.name == "2-s-n-galm-ucb"
    assert policy.topic_policy.config.beta == 0.5 and policy.item_policy.config.beta == 0.5
    context = hand_context()
    # fresh S-N-GALM state (θ = 0, A = I): ρ(0) + β(γ‖(x, 1)‖ + (1−γ)‖(z, 1)‖), γ = 0.5
    x = torch.tensor([2.5, 3.0, 2.0, 0.5, -1.0])
    expected = 0.5 + 0.5 * (0.5 * (x.square() + 1).sqrt() + 0.5 * torch.tensor(2.0).sqrt())
    torch.testing.assert_close(policy.scores(context)[0], expected)
    slate = policy.select(context, 2)
    policy.update(Feedback(context, slate, torch.tensor([[1.0, 0.0]])))
    shown_topics = topics[slate[0]].tolist()
    for topic in range(3):
        changed = not torch.equal(policy.topic_policy.item_inverses[topic], torch.eye(2))
        assert changed == (topic in shown_topics)
    assert policy.item_policy.log.tensors()[2].tolist() == [1.0, 0.0]
    copy = make_policy("2-s-n-galm-ucb", sizes, {"beta": 0.5})
    copy.set_state(policy.get_state())
    torch.testing.assert_close(copy.scores(context), policy.scores(context))
    torch.testing.assert_close(copy.topic_scores(context), policy.topic_scores(context))


def test_two_stage_needs_topics():
    sizes = PolicySizes(n_users=2, n_items=5, item_dim=1, user_dim=1)
    with pytest.raises(ValueError, match="needs item topics"):
        make_policy("2-n-greedy", sizes)
