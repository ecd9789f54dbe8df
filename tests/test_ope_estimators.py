"""Off-policy estimators of design.md §9 against hand values, known truths and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from recrl.envs.synthetic_log import SyntheticLogConfig, synthetic_log
from recrl.models.ope import (
    ESTIMATORS,
    LoggedFeedback,
    OPEInputError,
    RewardFeatures,
    RewardModelConfig,
    bootstrap_interval,
    cross_fit,
    dm,
    dr,
    fit_reward_model,
    ips,
    row_terms,
    snips,
    support,
    switch_dr,
    target_matrix,
)
from recrl.models.ope.policies import position_frequencies, softmax, top_k, uniform

# a 5-row log over 3 actions
ACTIONS = np.array([0, 1, 2, 0, 1])
REWARDS = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
PSCORE = np.array([0.5, 0.25, 0.25, 0.5, 0.25])
TARGET = np.array([[0.2, 0.4, 0.4]] * 5)
Q_HAT = np.array([[0.5, 0.2, 0.6]] * 5)


def test_hand_values_on_a_five_row_log():
    # w = π(a_i)/μ_i = 0.2/0.5, 0.4/0.25, 0.4/0.25, 0.2/0.5, 0.4/0.25
    w = [0.4, 1.6, 1.6, 0.4, 1.6]
    assert ips(ACTIONS, REWARDS, PSCORE, TARGET).value == pytest.approx((0.4 + 1.6 + 1.6) / 5)
    assert snips(ACTIONS, REWARDS, PSCORE, TARGET).value == pytest.approx(3.6 / sum(w))
    q_pi = 0.2 * 0.5 + 0.4 * 0.2 + 0.4 * 0.6  # 0.42 on every row
    assert dm(TARGET, Q_HAT).value == pytest.approx(0.42)
    q_logged = [0.5, 0.2, 0.6, 0.5, 0.2]
    corrections = [wi * (r - q) for wi, r, q in zip(w, REWARDS, q_logged, strict=True)]
    # 0.4·0.5, 1.6·(−0.2), 1.6·0.4, 0.4·(−0.5), 1.6·0.8 → 0.2 − 0.32 + 0.64 − 0.2 + 1.28 = 1.6
    assert sum(corrections) == pytest.approx(1.6)
    assert dr(ACTIONS, REWARDS, PSCORE, TARGET, Q_HAT).value == pytest.approx(q_pi + 1.6 / 5)
    # switch at tau = 1: only the w = 0.4 rows keep their correction (0.2 − 0.2 = 0)
    switched = switch_dr(ACTIONS, REWARDS, PSCORE, TARGET, Q_HAT, tau=1.0).value
    assert switched == pytest.approx(q_pi + 0.0)
    assert switch_dr(ACTIONS, REWARDS, PSCORE, TARGET, Q_HAT, tau=np.inf).value == pytest.approx(
        q_pi + 1.6 / 5
    )
    assert switch_dr(ACTIONS, REWARDS, PSCORE, TARGET, Q_HAT, tau=0.0).value == pytest.approx(q_pi)


def test_behaviour_policy_on_its_own_log_gives_the_empirical_mean():
    log = synthetic_log(SyntheticLogConfig(n=400), seed=3)
    f = log.feedback
    for name in ("ips", "snips"):
        terms = row_terms(name, f.actions, f.rewards, f.pscore, log.behaviour)
        assert terms.value == pytest.approx(f.rewards.mean(), abs=1e-12)
    # DR's correction has mean zero in expectation: inside its interval of the mean
    q_hat = np.full((f.n, f.n_actions), 0.9)  # a poor model on purpose
    terms = row_terms("dr", f.actions, f.rewards, f.pscore, log.behaviour, q_hat)
    interval = bootstrap_interval(terms, n_bootstrap=300)
    assert interval.low <= f.rewards.mean() <= interval.high


def test_ips_and_dr_are_unbiased_over_many_logs():
    config = SyntheticLogConfig(n=300, n_actions=5)
    errors = {"ips": [], "dr": [], "dm": [], "snips": []}
    for seed in range(300):
        log = synthetic_log(config, seed)
        f = log.feedback
        # a reward model that is wrong by design (independent of the rewards): DR must
        # stay unbiased through its correction, DM may not
        q_hat = np.clip(log.q_true + 0.15, 0, 1)
        for name in errors:
            terms = row_terms(name, f.actions, f.rewards, f.pscore, log.target, q_hat)
            errors[name].append(terms.value - log.true_value)
    for name in ("ips", "dr"):
        e = np.array(errors[name])
        assert abs(e.mean()) < 3 * e.std(ddof=1) / np.sqrt(len(e)), name
    dm_error = np.array(errors["dm"])
    assert dm_error.mean() > 0.1  # DM carries the model's +0.15 error
    assert np.std(errors["dr"]) < np.std(errors["ips"])  # the correction reduces variance


def test_bootstrap_interval_covers_the_truth_at_about_its_level():
    config = SyntheticLogConfig(n=300, n_actions=5)
    covered = []
    for seed in range(40):
        log = synthetic_log(config, seed)
        f = log.feedback
        terms = ips(f.actions, f.rewards, f.pscore, log.target)
        interval = bootstrap_interval(terms, n_bootstrap=200, seed=seed)
        assert interval.low <= terms.value <= interval.high
        covered.append(interval.low <= log.true_value <= interval.high)
    assert np.mean(covered) >= 0.8  # nominal 0.95; 40 logs and a skewed estimator


def test_reward_model_is_fitted_and_cross_fitted_dr_is_close():
    log = synthetic_log(SyntheticLogConfig(n=1500, n_actions=5), seed=0)
    f = log.feedback
    features = RewardFeatures(log.context)
    config = RewardModelConfig(interactions=True, folds=2, max_iter=50)
    model = fit_reward_model(features, f.actions, f.rewards, f.n_actions, config)
    predicted = model.predict(features)
    assert predicted.shape == (f.n, f.n_actions)
    assert np.corrcoef(predicted.ravel(), log.q_true.ravel())[0, 1] > 0.8  # not a constant
    q_hat = cross_fit(features, f.actions, f.rewards, f.n_actions, config, seed=0)
    assert not np.allclose(q_hat, predicted)  # each fold from the other fold's model
    value = dr(f.actions, f.rewards, f.pscore, log.target, q_hat).value
    assert abs(value - log.true_value) < 0.05


def test_bad_propensities_name_the_row_and_column():
    def log(pscore):
        return LoggedFeedback(ACTIONS, REWARDS, pscore, n_actions=3)

    with pytest.raises(OPEInputError, match="no behaviour propensities"):
        log(None)
    with pytest.raises(OPEInputError, match=r"row 2, column 'pscore'.*not > 0") as caught:
        log(np.array([0.5, 0.25, 0.0, 0.5, 0.25]))
    assert caught.value.row == 2 and caught.value.column == "pscore"
    with pytest.raises(OPEInputError, match=r"row 4, column 'pscore'.*above 1"):
        log(np.array([0.5, 0.25, 0.25, 0.5, 1.5]))
    with pytest.raises(OPEInputError, match=r"row 0, column 'pscore'.*missing .*2 rows"):
        log(np.array([np.nan, 0.25, 0.25, np.nan, 0.25]))
    with pytest.raises(OPEInputError, match=r"row 1, column 'action'"):
        LoggedFeedback(np.array([0, 3, 2, 0, 1]), REWARDS, PSCORE, n_actions=3)


def test_target_checks_and_mass_on_never_logged_actions_is_counted():
    f = LoggedFeedback(ACTIONS, REWARDS, PSCORE, n_actions=4)  # action 3 never logged
    target = np.array([[0.1, 0.3, 0.4, 0.2]] * 5)
    found = support(f, target_matrix(f, target))
    assert found.unlogged == ((0, 3),) and found.count == 1
    assert found.mass == pytest.approx(0.2)
    assert support(f, target_matrix(f, top_k(np.tile([3.0, 2, 1, 0], (5, 1)), 2))).mass == 0
    with pytest.raises(OPEInputError, match=r"row 0, column 'target'.*does not sum to 1"):
        target_matrix(f, np.array([[0.5, 0.3, 0.4, 0.2]] * 5))
    with pytest.raises(OPEInputError, match="shape"):
        target_matrix(f, np.ones((5, 3)) / 3)


def test_per_position_targets_and_policy_helpers():
    positions = np.array([0, 1, 0, 1, 1])
    f = LoggedFeedback(ACTIONS, REWARDS, PSCORE, n_actions=3, positions=positions, n_positions=2)
    freq = position_frequencies(ACTIONS, positions, 3, 2)
    np.testing.assert_allclose(freq[:, 0], [0.5, 0, 0.5])  # position 0: actions 0 and 2
    np.testing.assert_allclose(freq[:, 1], [1 / 3, 2 / 3, 0])
    per_row = target_matrix(f, np.broadcast_to(freq, (5, 3, 2)))
    np.testing.assert_allclose(per_row[1], [1 / 3, 2 / 3, 0])
    assert support(f, target_matrix(f, uniform(5, 3))).unlogged == ((0, 1), (1, 2))
    dist = softmax(np.array([[0.0, np.log(3), 5.0]]), mask=np.array([[True, True, False]]))
    np.testing.assert_allclose(dist, [[0.25, 0.75, 0.0]])
    assert set(ESTIMATORS) == {"ips", "snips", "dm", "dr", "switch-dr"}
