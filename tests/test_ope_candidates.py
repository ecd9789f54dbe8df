"""Candidate logs (design.md §9.6) in pure numpy: slots, target policies over candidates,
support, the reward model's features and per-item intercepts, and the synthetic sequential
log whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.envs.synthetic_session_log import (
    SessionLogConfig,
    draw_session_log,
    session_contexts,
)
from recrl.models.ope import (
    LoggedFeedback,
    OPEInputError,
    RewardFeatures,
    RewardModelConfig,
    bootstrap_interval,
    cross_fit,
    fit_reward_model,
    row_terms,
)
from recrl.models.ope.candidates import (
    Ragged,
    candidate_features,
    candidate_sets,
    candidate_support,
    catalogue_sets,
    vocabulary_index,
)
from recrl.models.ope.policies import TargetPolicyConfig, top_k


def test_slots_of_candidate_lists_and_of_a_whole_catalogue():
    lists = Ragged.from_lists([[30, 10], [20, 10, 40], [40]])
    sets = candidate_sets(np.array([10, 40, 40]), lists)
    np.testing.assert_array_equal(sets.vocabulary, [10, 20, 30, 40])
    np.testing.assert_array_equal(sets.items, [[2, 0, -1], [1, 0, 3], [3, -1, -1]])
    np.testing.assert_array_equal(sets.shown, [1, 2, 0])  # slot of the shown item in its list
    np.testing.assert_array_equal(sets.shown_items, [0, 3, 3])
    whole = catalogue_sets(np.array([50, 20]), np.array([30, 20, 10]))
    np.testing.assert_array_equal(whole.vocabulary, [10, 20, 30, 50])  # catalogue ∪ shown
    np.testing.assert_array_equal(whole.items, [[0, 1, 2, 3], [0, 1, 2, 3]])
    np.testing.assert_array_equal(whole.shown, [3, 1])
    np.testing.assert_array_equal(lists.take(np.array([2, 0])).values, [40, 30, 10])


def test_bad_candidate_lists_name_the_row_and_column():
    def slots(shown, rows):
        return candidate_sets(np.array(shown), Ragged.from_lists(rows))

    with pytest.raises(OPEInputError, match=r"row 1, column 'item': value 30 is not among"):
        slots([10, 30], [[10, 20], [10, 20]])
    with pytest.raises(OPEInputError, match=r"row 1, column 'candidates': lists an item twice"):
        slots([10, 20], [[10, 20], [20, 5, 20]])
    with pytest.raises(OPEInputError, match=r"row 0, column 'candidates': is empty"):
        slots([10, 20], [[], [20]])


def test_top_k_and_softmax_over_each_rows_candidates():
    scores = np.array([[1.0, 3.0, 2.0, 9.0], [5.0, 5.0, 0.0, 0.0]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    np.testing.assert_allclose(top_k(scores, 1, mask=mask), [[0, 1, 0, 0], [1, 0, 0, 0]])
    # k = 3 but row 1 allows 2 candidates: 1/2 each (ties by the lower slot for k = 1 above)
    np.testing.assert_allclose(top_k(scores, 3, mask=mask), [[1 / 3] * 3 + [0], [0.5, 0.5, 0, 0]])
    soft = TargetPolicyConfig(temperature=2.0).distribution(scores, mask)
    e = np.exp(np.array([1.0, 3.0, 2.0]) / 2)
    np.testing.assert_allclose(soft[0], [*(e / e.sum()), 0.0])
    np.testing.assert_allclose(soft[1], [0.5, 0.5, 0, 0])
    greedy = TargetPolicyConfig(policy="top_k", top_k=2)
    assert greedy.name == "top_2" and TargetPolicyConfig().name == "softmax_t1"
    np.testing.assert_allclose(greedy.distribution(scores, mask)[0], [0, 0.5, 0.5, 0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TargetPolicyConfig(temperature=0.0)


def test_mass_on_items_no_row_shows_is_counted():
    # item 30 (vocabulary index 2) is a candidate of both rows but never shown
    sets = candidate_sets(np.array([10, 20]), Ragged.from_lists([[10, 30], [20, 30, 10]]))
    target = np.array([[0.25, 0.75, 0.0], [0.5, 0.2, 0.3]])
    found = candidate_support(sets, target)
    assert found.unlogged == ((0, 2),)
    assert found.mass == pytest.approx((0.75 + 0.2) / 2)
    assert candidate_support(sets, np.array([[1.0, 0, 0], [1.0, 0, 0]])).count == 0


def test_features_are_history_membership_and_the_models_log_softmax():
    sets = candidate_sets(np.array([10, 20]), Ragged.from_lists([[10, 30], [20, 30, 10]]))
    history = Ragged.from_lists([[2, -1, 2], []])  # vocabulary indices; -1: not in it
    scores = np.array([[0.0, np.log(3.0), -np.inf], [1.0, -np.inf, 1.0]])
    scorable = np.array([[True, True, False], [True, False, True]])
    features = candidate_features(history, sets, scores, scorable)
    np.testing.assert_allclose(features.context[:, 0], np.log1p([3, 0]))
    np.testing.assert_array_equal(features.pair[:, :, 0], [[0, 1, 0], [0, 0, 0]])  # 30 seen
    # row 0: log(1/4), log(3/4); row 1: log(1/2) twice, the unscored slot its row's lowest
    np.testing.assert_allclose(features.pair[0, :2, 1], np.log([0.25, 0.75]))
    np.testing.assert_allclose(features.pair[1, :, 1], np.log([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(features.items, [[0, 2, 0], [1, 2, 0]])  # padding -> 0


def test_reward_model_intercepts_follow_the_item_in_each_slot():
    # two items at alternating slots; item 1 is clicked, item 0 never: with no other
    # feature, q̂ must follow the item, not the slot
    n = 400
    flip = np.arange(n) % 2 == 1
    items = np.where(flip[:, None], [[1, 0]], [[0, 1]])
    shown = np.arange(n) // 2 % 2  # every (slot, item) pair is logged
    rewards = (items[np.arange(n), shown] == 1).astype(float)
    features = RewardFeatures(np.zeros((n, 1)), items=items)
    config = RewardModelConfig(folds=2)
    model = fit_reward_model(features, shown, rewards, n_actions=2, config=config)
    q_hat = model.predict(features)
    assert q_hat.shape == (n, 2)
    clicked = items == 1
    assert q_hat[clicked].min() > 0.9 and q_hat[~clicked].max() < 0.1
    assert cross_fit(features, shown, rewards, 2, config).shape == (n, 2)


@pytest.fixture(scope="module")
def contexts():
    return session_contexts(SessionGeneratorConfig(n_items=80), SessionLogConfig(sessions=150))


def test_the_logging_policy_on_its_own_log_gives_the_empirical_mean(contexts):
    log = draw_session_log(contexts, SessionLogConfig(), seed=1)
    sets = log.candidate_sets()
    np.testing.assert_array_equal(sets.vocabulary[sets.items], log.candidates)
    f = LoggedFeedback(sets.shown, log.reward, log.propensity, n_actions=sets.items.shape[1])
    for name in ("ips", "snips"):
        terms = row_terms(name, f.actions, f.rewards, f.pscore, log.behaviour)
        assert terms.value == pytest.approx(log.reward.mean(), abs=1e-12)
    # the truth of the logging policy is Σ μ q per row; its log's mean is near it
    interval = bootstrap_interval(row_terms("ips", f.actions, f.rewards, f.pscore, log.behaviour))
    assert interval.low <= log.true_value(log.behaviour) <= interval.high


def test_ips_and_dr_are_unbiased_for_a_model_like_target_over_many_logs(contexts):
    config = SessionLogConfig()
    # a target that knows the click model roughly: greedy on a noisy affinity
    embedding = contexts.world.item_embeddings.astype(float)
    errors = {"ips": [], "dr": [], "dm": []}
    for seed in range(100):
        log = draw_session_log(contexts, config, seed)
        sets = log.candidate_sets()
        internal = np.searchsorted(contexts.world.item_ids, log.candidates)
        score = np.einsum("nd,ncd->nc", contexts.taste, embedding[internal])
        target = TargetPolicyConfig(temperature=0.2).distribution(score, sets.mask)
        f = LoggedFeedback(sets.shown, log.reward, log.propensity, n_actions=sets.items.shape[1])
        history = contexts.history.with_values(
            vocabulary_index(sets.vocabulary, contexts.history.values)
        )
        features = candidate_features(history, sets, score, sets.mask)
        model = RewardModelConfig(folds=2, max_iter=50)
        q_cross = cross_fit(features, f.actions, f.rewards, len(sets.vocabulary), model, seed=seed)
        truth = log.true_value(target)
        for name in errors:
            terms = row_terms(name, f.actions, f.rewards, f.pscore, target, q_cross)
            errors[name].append(terms.value - truth)
    for name in ("ips", "dr"):
        e = np.array(errors[name])
        assert abs(e.mean()) < 3 * e.std(ddof=1) / np.sqrt(len(e)), (name, e.mean())
    assert np.std(errors["dr"]) < np.std(errors["ips"])  # the reward model earns its keep
    assert np.mean(np.abs(errors["dm"])) < 0.1  # a fitted model, not a constant
