"""Every objective against a hand computation on tiny tensors (arithmetic in the comments)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from recrl.models.objectives import (
    ce_loss,
    cql_loss,
    info_nce_loss,
    negative_td_loss,
    propensity_factor,
    sa2c_advantage,
    sa2c_weights,
    sac_weights,
    sample_negatives,
    td_loss,
    td_target,
)
from recrl.models.objectives.negatives import nth_allowed
from recrl.models.sasrec import QHead, SASRecConfig, SASRecEncoder

LN = math.log


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype))


# ---------------------------------------------------------------- CE


def test_ce_unweighted_and_per_sample_weighted():
    # row 0: logits [0, 0, 0], a = 1 -> p = 1/3 -> nll = ln 3
    # row 1: logits [0, ln 2, 0], a = 1 -> p = 2/4 -> nll = ln 2
    logits = t([[0.0, 0.0, 0.0], [0.0, LN(2), 0.0]], requires_grad=True)
    actions = torch.tensor([1, 1], dtype=torch.int32)
    loss, diag = ce_loss(logits, actions)
    close(loss, (LN(3) + LN(2)) / 2)
    close(diag["loss/ce"], (LN(3) + LN(2)) / 2)

    # weights [2, 0.5]: (2 ln 3 + 0.5 ln 2) / 2, one weight per sample (not per batch)
    weights = t([2.0, 0.5], requires_grad=True)
    loss, diag = ce_loss(logits, actions, weights)
    close(loss, (2 * LN(3) + 0.5 * LN(2)) / 2)
    close(diag["loss/ce_unweighted"], (LN(3) + LN(2)) / 2)
    close(diag["ce/weight_mean"], 1.25)
    loss.backward()
    assert weights.grad is None  # stop-gradient
    # d/dlogits row 0 = w0 / B * (softmax - onehot) = 1 * ([1/3, 1/3, 1/3] - [0, 1, 0])
    close(logits.grad[0], [1 / 3, -2 / 3, 1 / 3])


# ---------------------------------------------------------------- TD


def test_double_q_target_bootstraps_from_the_next_value_unless_done():
    # next_value = Q_target(s', argmax_a Q_online(s', a)), one value per row (the greedy
    # pick itself is tested with the networks, in test_gathered_update.py)
    next_value = t([4.0, 7.0])
    reward = t([0.2, 1.0])
    done = torch.tensor([False, True])
    y = td_target(next_value, reward, done, gamma=0.5)
    # row 0: 0.2 + 0.5 * 1 * 4 = 2.2; row 1: done -> 1.0 + 0 = 1.0 (7 is masked)
    close(y, [2.2, 1.0])
    # without done, row 1 bootstraps from 7: 1 + 0.5 * 7 = 4.5
    close(td_target(next_value, reward, ~done, 0.5)[1], 4.5)
    assert not td_target(next_value.requires_grad_(), reward, done, 0.5).requires_grad


def test_td_loss_hand_computed_and_gradient_only_on_taken_action():
    q = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    actions = torch.tensor([2, 0])
    y = t([2.2, 1.0])
    loss, diag = td_loss(q.gather(1, actions[:, None]).squeeze(1), y)
    # Q(s, a) = [3, 4]; y - Q = [-0.8, -3]; loss = 0.5 * (0.64 + 9) / 2 = 2.41
    close(loss, 2.41)
    close(diag["q/td_error"], 1.9)  # (0.8 + 3) / 2
    close(diag["q/mean"], 3.5)
    close(diag["q/max"], 4.0)
    close(diag["q/target_mean"], 1.6)
    loss.backward()
    # dL/dQ(s, a) = -(y - Q) / B = [0.4, 1.5]; zero elsewhere
    close(q.grad, [[0.0, 0.0, 0.4], [1.5, 0.0, 0.0]])


def test_negative_td_target_uses_s_prime_equal_s():
    q = t([[1.0, 4.0, 2.0], [3.0, 0.0, 5.0]], requires_grad=True)
    stay_value = t([6.0, 4.0])  # Q_target(s, argmax_a Q_online(s, a)) per row
    negatives = torch.tensor([[0, 2], [1, 1]])
    loss, diag = negative_td_loss(q.gather(1, negatives), stay_value, gamma=0.5)
    # y- = 0 + 0.5 * [6, 4] = [3, 2] (no done mask: the user stays in s)
    # row 0: Q(s, a-) = [1, 2] -> 0.5 * ((3-1)^2 + (3-2)^2) = 2.5
    # row 1: Q(s, a-) = [0, 0] -> 0.5 * (4 + 4) = 4  (a duplicate counts twice)
    # sum over negatives, mean over rows: (2.5 + 4) / 2 = 3.25
    close(loss, 3.25)
    close(diag["q/neg_target_mean"], 2.5)
    close(diag["q/neg_mean"], 0.75)  # (1 + 2 + 0 + 0) / 4
    loss.backward()
    # dL/dQ(s, a-) = -(y- - Q) / B: row 0 -> [-1, -0.5], row 1 -> item 1 twice: 2 * -1
    close(q.grad, [[-1.0, 0.0, -0.5], [0.0, -2.0, 0.0]])
    stay_value.requires_grad_()
    negative_td_loss(q.gather(1, negatives), stay_value, gamma=0.5)[0].backward()
    assert stay_value.grad is None  # the target is a constant


# ---------------------------------------------------------------- SAC / SA2C weights


def test_sa2c_advantage_clipped_at_0_and_10():
    q = t([[1.0, 2.0, 3.0], [5.0, 0.0, 0.0], [0.0, 30.0, 0.0]])
    actions = torch.tensor([2, 1, 1])
    negatives = torch.tensor([[0, 1], [0, 2], [0, 2]])
    q_data, q_neg = q.gather(1, actions[:, None]).squeeze(1), q.gather(1, negatives)
    adv, diag = sa2c_advantage(q_data, q_neg)
    # row 0: 3 - mean(3, 1, 2) = 1
    # row 1: 0 - mean(0, 5, 0) = -5/3 -> clipped to 0
    # row 2: 30 - mean(30, 0, 0) = 20 -> clipped to 10
    close(adv, [1.0, 0.0, 10.0])
    close(diag["q/advantage_mean"], (1 - 5 / 3 + 20) / 3)
    close(diag["q/advantage_clip_low_frac"], 1 / 3)
    close(diag["q/advantage_clip_high_frac"], 1 / 3)
    weights, _ = sa2c_weights(q_data, q_neg)  # smooth = 0: weight = advantage
    close(weights, [1.0, 0.0, 10.0])


def test_propensity_factor_clipped_and_smoothed():
    counts = t([1.0, 1.0, 98.0])  # pop = [0.01, 0.01, 0.98]
    logits = t([[LN(8), 0.0, 0.0], [LN(98), 0.0, 0.0], [0.0, 0.0, 0.0]])
    actions = torch.tensor([0, 2, 2])
    # row 0: pi = 8/10 = 0.8, pop 0.01 -> 80 -> clip 10
    # row 1: pi = 1/100 = 0.01, pop 0.98 -> 0.0102 -> clip 0.1
    # row 2: pi = 1/3, pop 0.98 -> 0.3401 (inside the clip)
    factor, _ = propensity_factor(logits, actions, counts, smooth=1.0)
    close(factor, [10.0, 0.1, (1 / 3) / 0.98])
    factor, _ = propensity_factor(logits, actions, counts, smooth=0.5)
    close(factor, [10**0.5, 0.1**0.5, ((1 / 3) / 0.98) ** 0.5])
    close(propensity_factor(logits, actions, counts, smooth=0.0)[0], [1.0, 1.0, 1.0])

    q = t([[3.0, 1.0, 2.0]] * 3)
    negatives = torch.tensor([[1, 2]] * 3)
    # advantages: row 0 a=0 -> 3 - 2 = 1; rows 1, 2 a=2 -> 2 - mean(2, 1, 2) = 1/3
    q_data, q_neg = q.gather(1, actions[:, None]).squeeze(1), q.gather(1, negatives)
    weights, _ = sa2c_weights(q_data, q_neg, actions, logits, counts, smooth=1.0)
    close(weights, [1.0 * 10, (1 / 3) * 0.1, (1 / 3) * (1 / 3) / 0.98])
    with pytest.raises(ValueError, match="needs actions, logits and item_popularity"):
        sa2c_weights(q_data, q_neg, actions, logits, None, smooth=1.0)


def test_sac_weights_are_detached_q_of_taken_action():
    q = t([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    w, diag = sac_weights(q[:, 1])
    close(w, [-2.0, 3.0])
    assert not w.requires_grad
    close(diag["ce/weight_negative_frac"], 0.5)


def test_gradients_reach_q_head_from_td_but_not_through_ce_weights():
    torch.manual_seed(0)
    encoder = SASRecEncoder(12, SASRecConfig(hidden_size=8, max_len=4))
    q_head = QHead(8, 12)
    state = torch.tensor([[12, 12, 3, 4], [1, 2, 3, 4]])
    state_len = torch.tensor([2, 4])
    actions = torch.tensor([5, 6])
    s = encoder(state, state_len)
    q = q_head(s)

    q_data = q.gather(1, actions[:, None]).squeeze(1)
    weights, _ = sac_weights(q_data)
    ce, _ = ce_loss(encoder.supervised_logits(s), actions, weights)
    ce.backward(retain_graph=True)
    assert q_head.linear.weight.grad is None  # the CE weight carries no gradient to Q
    assert encoder.supervised_bias.grad.abs().sum() > 0

    td, _ = td_loss(q_data, t([1.0, 0.5]))
    td.backward()
    assert q_head.linear.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- CQL


def test_cql_with_negatives_and_with_all_items():
    tau, alpha = 0.5, 0.1
    # q / tau = ln of small integers, so exp(q / tau) is exact
    q = 0.5 * torch.log(t([[1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 1.0, 2.0]]))
    actions = torch.tensor([0, 3])
    negatives = torch.tensor([[2, 2], [0, 1]])
    q_data = q.gather(1, actions[:, None]).squeeze(1)
    q_set = q.gather(1, torch.cat([actions[:, None], negatives], dim=1))  # {a_data} ∪ negatives
    loss, diag = cql_loss(q_data, q_set, alpha, tau)
    # row 0: A = {0, 2, 2}: exp(q/tau) = 1 + 3 + 3 = 7 -> 0.5 ln 7 - Q(s, 0) = 0.5 ln 7 - 0
    # row 1: A = {3, 0, 1}: 2 + 4 + 1 = 7 -> 0.5 ln 7 - 0.5 ln 2 = 0.5 ln 3.5
    gap = (0.5 * LN(7) + 0.5 * LN(3.5)) / 2
    close(diag["q/cql_gap"], gap)
    close(loss, alpha * gap)

    loss_all, diag_all = cql_loss(q_data, q, alpha, tau)  # A(s) = every item
    # row 0: 1 + 2 + 3 + 4 = 10 -> 0.5 ln 10; row 1: 4 + 1 + 1 + 2 = 8 -> 0.5 ln 8 - 0.5 ln 2
    gap_all = (0.5 * LN(10) + 0.5 * LN(4)) / 2
    close(diag_all["q/cql_gap"], gap_all)
    close(loss_all, alpha * gap_all)


def test_cql_negatives_affect_loss_and_gradient():
    """The reference code's bug: its negatives had no effect. Ours push their Q down."""
    q = t([[1.0, 2.0, 3.0]], requires_grad=True)
    loss_a, _ = cql_loss(q[:, 0], q[:, [0, 1]], 1.0, 1.0)  # A(s) = {a_data = 0, a- = 1}
    loss_b, _ = cql_loss(q[:, 0], q[:, [0, 2]], 1.0, 1.0)  # A(s) = {a_data = 0, a- = 2}
    assert not torch.allclose(loss_a, loss_b)
    loss_b.backward()
    # d/dQ of ln(e^1 + e^3) - Q_0: softmax over {0, 2} minus one-hot(0)
    p = math.exp(3) / (math.exp(1) + math.exp(3))
    close(q.grad, [[(1 - p) - 1, 0.0, p]])


# ---------------------------------------------------------------- contrastive


def test_info_nce_hand_computed_for_b_equals_2():
    # views v0 = e1, v1 = e2 (view 1), v2 = e1, v3 = -e2 (view 2); positives (0,2), (1,3)
    # i=0: pos cos 1, negatives v1, v3 cos 0 -> -log(e^(1/T) / (e^(1/T) + 2)); same for i=2
    # i=1: pos cos -1, negatives v0, v2 cos 0 -> -log(e^(-1/T) / (e^(-1/T) + 2)); same for i=3
    # mean = 0.5 * (ln(1 + 2 e^(-1/T)) + ln(1 + 2 e^(1/T)))
    z1 = t([[1.0, 0.0], [0.0, 1.0]])
    z2 = t([[1.0, 0.0], [0.0, -1.0]])
    for temp in (1.0, 0.5):
        loss, diag = info_nce_loss(z1, z2, temperature=temp)
        expected = 0.5 * (LN(1 + 2 * math.exp(-1 / temp)) + LN(1 + 2 * math.exp(1 / temp)))
        close(loss, expected)
    close(diag["co/pos_cos"], 0.0)  # (1 - 1 + 1 - 1) / 4
    close(diag["co/acc"], 0.5)  # views 0 and 2 find their positive, 1 and 3 do not
    # L2 normalisation: scaling a view changes nothing
    close(info_nce_loss(3 * z1, z2, temperature=0.5)[0], loss)


# ---------------------------------------------------------------- negatives


@settings(max_examples=40, deadline=None)
@given(
    n_items=st.integers(2, 40),
    batch=st.integers(1, 16),
    n_neg=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    skewed=st.booleans(),
    by_popularity=st.booleans(),
)
def test_negatives_never_equal_the_positive(n_items, batch, n_neg, seed, skewed, by_popularity):
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(n_items, (batch,), generator=g, dtype=torch.int32)
    popularity = None
    if by_popularity:
        popularity = torch.rand(n_items, generator=g) + 0.01
        if skewed:  # one item holds almost all the mass: the fallback must kick in
            popularity[actions[0]] = 1e6
    neg = sample_negatives(actions, n_items, n_neg, g, item_popularity=popularity)
    assert neg.shape == (batch, n_neg)
    assert neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < n_items)).all()
    assert (neg != actions.long().unsqueeze(1)).all()


def test_uniform_negatives_are_uniform_over_the_other_items():
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(torch.zeros(4000, dtype=torch.long), 4, 3, g)
    freq = torch.bincount(neg.flatten(), minlength=4).float() / neg.numel()
    assert freq[0] == 0
    torch.testing.assert_close(freq[1:], torch.full((3,), 1 / 3), atol=0.02, rtol=0)


def test_popularity_negatives_follow_popularity_without_the_positive():
    g = torch.Generator().manual_seed(0)
    counts = t([50.0, 10.0, 30.0, 10.0])
    neg = sample_negatives(torch.zeros(4000, dtype=torch.long), 4, 3, g, item_popularity=counts)
    freq = torch.bincount(neg.flatten(), minlength=4).float() / neg.numel()
    # conditioned on != 0: [0, 10, 30, 10] / 50
    torch.testing.assert_close(freq, t([0.0, 0.2, 0.6, 0.2]), atol=0.02, rtol=0)


# Negatives are items absent from the state (SASRec-CCQL §3.3) by default.


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(2, 40),
    batch=st.integers(1, 16),
    state_len=st.integers(0, 6),
    n_neg=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    by_popularity=st.booleans(),
)
def test_negatives_never_hit_the_state_or_the_positive(
    n_items, batch, state_len, n_neg, seed, by_popularity
):
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(n_items, (batch,), generator=g)
    state = torch.randint(n_items, (batch, 6), generator=g)
    state[:, : 6 - state_len] = n_items  # left padding (pad_id = n_items) is ignored
    popularity = torch.rand(n_items, generator=g) + 0.01 if by_popularity else None
    neg = sample_negatives(actions, n_items, n_neg, g, item_popularity=popularity, exclude=state)
    assert neg.shape == (batch, n_neg) and neg.dtype == torch.int64
    assert ((neg >= 0) & (neg < n_items)).all()
    assert (neg != actions.unsqueeze(1)).all()
    blocked = torch.cat([actions.unsqueeze(1), state], dim=1)
    full = torch.stack([torch.isin(torch.arange(n_items), row).all() for row in blocked])
    # a row whose state and action cover the catalogue falls back to "any but the positive"
    hits_state = (neg.unsqueeze(2) == state.unsqueeze(1)).any(dim=2)
    assert not hits_state[~full].any()


def test_nth_allowed_enumerates_the_allowed_items_in_order():
    # Blocked ids ascending, each once, filled with I = 7: the u-th allowed item, exactly.
    blocked = torch.tensor([[1, 3, 4, 7], [0, 6, 7, 7], [7, 7, 7, 7]])
    allowed = [[0, 2, 5, 6], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6]]
    for row, items in enumerate(allowed):
        u = torch.arange(len(items)).unsqueeze(0)
        assert nth_allowed(u, blocked[row : row + 1]).tolist() == [items]


def test_state_excluding_negatives_are_uniform_over_the_rest():
    g = torch.Generator().manual_seed(0)
    actions = torch.zeros(4000, dtype=torch.long)
    state = torch.tensor([[5, 1, 1, 3]]).expand(4000, 4)  # pad 5, item 1 twice, item 3
    neg = sample_negatives(actions, 5, 3, g, exclude=state)
    freq = torch.bincount(neg.flatten(), minlength=5).float() / neg.numel()
    torch.testing.assert_close(freq, t([0.0, 0.0, 0.5, 0.0, 0.5]), atol=0.02, rtol=0)
    # exclude=None keeps the earlier behaviour: any item but the positive
    old = sample_negatives(actions, 5, 3, g)
    freq = torch.bincount(old.flatten(), minlength=5).float() / old.numel()
    torch.testing.assert_close(freq, t([0.0, 0.25, 0.25, 0.25, 0.25]), atol=0.02, rtol=0)


def test_state_excluding_popularity_negatives_follow_popularity_on_the_rest():
    g = torch.Generator().manual_seed(0)
    counts = t([50.0, 10.0, 30.0, 10.0, 0.0])
    state = torch.tensor([[5, 2]]).expand(4000, 2)  # item 2 (the most popular left) is seen
    neg = sample_negatives(
        torch.zeros(4000, dtype=torch.long), 5, 3, g, item_popularity=counts, exclude=state
    )
    freq = torch.bincount(neg.flatten(), minlength=5).float() / neg.numel()
    # conditioned on not in {0, 2}: [0, 10, 0, 10, 0] / 20
    torch.testing.assert_close(freq, t([0.0, 0.5, 0.0, 0.5, 0.0]), atol=0.03, rtol=0)
