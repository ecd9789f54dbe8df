"""GAN user model units: state encoders, choice with no-click, Lemma 2, L2 best response,
losses and metrics on hand-computed examples, baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from recrl.models.user_model.baselines import CooccurrenceKNN, PopularityBaseline
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.losses import (
    adversarial_generator_loss,
    adversarial_reward_loss,
    choice_mask,
    entropy_best_response,
    l2_best_response,
    regularised_value,
    shannon_mle_loss,
)
from recrl.models.user_model.metrics import hit_at_k, precision_metrics
from recrl.models.user_model.network import (
    LSTMState,
    PositionWeightState,
    UserModel,
    choice_logits_from_utility,
)


def test_position_weighted_state_on_a_hand_example():
    pw = PositionWeightState(item_dim=2, history_len=3, columns=2)
    with torch.no_grad():
        pw.weights.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5], [2.0, -1.0]]))
        pw.bias.copy_(torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))
    # lags oldest→latest: f_{t-3} = padding (0), f_{t-2} = (1, 2), f_{t-1} = (3, -1)
    f = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]]])
    s = pw(f, torch.tensor([[False, True, True]]))
    # F W + B per feature row: d=0: [0+0+6, 0+0.5-3] + [0, 1] = [6, -1.5]
    #                          d=1: [0+0-2, 0+1+1] + [-1, 0] = [-3, 2]
    # vec stacks the columns: [col0 d0, col0 d1, col1 d0, col1 d1] = ELU([6, -3, -1.5, 2])
    elu = lambda x: x if x > 0 else math.exp(x) - 1  # noqa: E731
    expected = [elu(6.0), elu(-3.0), elu(-1.5), elu(2.0)]
    assert s.shape == (1, 4)
    assert s[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_lstm_state_ignores_padding_and_learns_an_empty_state():
    torch.manual_seed(0)
    lstm = LSTMState(item_dim=3, hidden=4)
    x = torch.randn(1, 2, 3)
    short = torch.cat([torch.zeros(1, 1, 3), x], dim=1)  # m = 3, one padded lag
    long = torch.cat([torch.full((1, 3, 3), 9.0), x], dim=1)  # m = 5, garbage in padding
    s_short = lstm(short, torch.tensor([[False, True, True]]))
    s_long = lstm(long, torch.tensor([[False, False, False, True, True]]))
    assert torch.allclose(s_short, s_long, atol=1e-6)
    empty = lstm(torch.zeros(2, 3, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(empty, lstm.empty.expand(2, -1))


def test_choice_probabilities_include_no_click_with_utility_zero():
    u = torch.tensor([[1.0, 2.0, 5.0]])
    mask = torch.tensor([[True, True, False]])  # third slot is padding
    probs = torch.softmax(choice_logits_from_utility(u, mask, eta=1.0), dim=1)[0]
    z = math.e + math.e**2 + 1.0
    assert probs.tolist() == pytest.approx([math.e / z, math.e**2 / z, 0.0, 1 / z])
    sharper = torch.softmax(choice_logits_from_utility(u, mask, eta=2.0), dim=1)[0]
    assert sharper[1] / sharper[0] == pytest.approx(math.exp(2.0))


def _maximise_on_simplex(reward, eta, regularizer, steps=3000):
    """Numerical best response of Σ φ r − R(φ)/η over the simplex, in numpy and without the
    closed forms: mirror ascent (exponentiated gradient) for the entropy, projected
    gradient ascent with a bisection projection for the L2 regulariser."""
    r = reward.double().numpy()
    phi = np.full_like(r, 1.0 / r.shape[1])
    for _ in range(steps):
        if regularizer == "shannon":
            phi = phi * np.exp(0.1 * (r - (np.log(phi) + 1) / eta))
            phi /= phi.sum(axis=1, keepdims=True)
        else:
            y = phi + 0.05 * (r - 2 * phi / eta)
            lo, hi = y.min(1, keepdims=True) - 1, y.max(1, keepdims=True)
            for _ in range(50):  # the shift τ with Σ max(y − τ, 0) = 1
                mid = (lo + hi) / 2
                over = np.clip(y - mid, 0, None).sum(1, keepdims=True) > 1
                lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
            phi = np.clip(y - (lo + hi) / 2, 0, None)
    return torch.as_tensor(phi, dtype=reward.dtype)


def test_lemma2_entropy_best_response_is_the_softmax_and_min_max_is_likelihood():
    reward = torch.tensor([[0.3, -1.2, 2.0, 0.0], [1.0, 1.0, -0.5, 0.0]])
    eta = 1.5
    numeric = _maximise_on_simplex(reward, eta, "shannon")
    mask = torch.ones_like(reward, dtype=torch.bool)
    closed = entropy_best_response(reward, mask, eta)
    assert torch.allclose(numeric, closed, atol=1e-4)
    # inner max value = logsumexp(η r)/η, so  max_φ[...] − r(true) = NLL/η  (Lemma 2)
    value = regularised_value(closed, reward, mask, eta, "shannon")
    assert torch.allclose(value, torch.logsumexp(eta * reward, 1) / eta, atol=1e-6)
    click = torch.tensor([2, -1])  # slot 2; no click = the last column
    nll, _ = shannon_mle_loss(eta * reward, click)
    true = torch.stack([reward[0, 2], reward[1, 3]])
    assert float((value - true).mean()) == pytest.approx(float(nll) / eta, abs=1e-6)


def test_l2_best_response_matches_numerical_maximiser():
    reward = torch.tensor([[0.3, -1.2, 2.0, 0.0], [1.0, 0.9, -0.5, 0.0], [0.1, 0.2, 0.0, 0.05]])
    eta = 1.0
    mask = torch.ones_like(reward, dtype=torch.bool)
    closed = l2_best_response(reward, mask, eta)
    numeric = _maximise_on_simplex(reward, eta, "l2")
    assert torch.allclose(closed, numeric, atol=1e-3)
    # ηr/2 = (0.15, -0.6, 1, 0): support {0, 2}, shift τ = (0.15 + 1 − 1)/2 = 0.075
    assert closed[0].tolist() == pytest.approx([0.075, 0.0, 0.925, 0.0], abs=1e-6)
    wide = l2_best_response(torch.tensor([[0.0, 2.5, 0.4]]), mask[:1, :3], eta)
    assert wide[0].tolist() == [0.0, 1.0, 0.0]  # a utility gap ≥ 2/η: a single choice
    assert closed.sum(1).tolist() == pytest.approx([1.0, 1.0, 1.0])
    masked = l2_best_response(reward, torch.tensor([[True, True, False, True]] * 3), eta)
    assert (masked[:, 2] == 0).all() and masked.sum(1).tolist() == pytest.approx([1.0] * 3)


def test_shannon_loss_on_a_hand_computation():
    logits = torch.tensor([[0.0, 1.0, 0.0], [2.0, float("-inf"), 0.0]])  # K = 2 + no-click
    click = torch.tensor([1, -1])
    loss, diag = shannon_mle_loss(logits, click)
    nll0 = -(1.0 - math.log(2 + math.e))
    nll1 = -(0.0 - math.log(math.e**2 + 1))
    assert float(loss) == pytest.approx((nll0 + nll1) / 2)
    assert float(diag["choice/no_click_prob"]) == pytest.approx(
        (1 / (2 + math.e) + 1 / (math.e**2 + 1)) / 2
    )


def test_adversarial_losses_on_a_hand_example():
    reward = torch.tensor([[1.0, 3.0, 0.0]], requires_grad=True)
    mask = torch.ones(1, 3, dtype=torch.bool)
    phi_logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]])).requires_grad_(True)
    g_loss, g_diag = adversarial_generator_loss(phi_logits, reward, mask, eta=1.0)
    # Σφr − ‖φ‖² = 0.5 + 0.75 − (0.25 + 0.0625 + 0.0625) = 0.875
    assert float(g_loss.detach()) == pytest.approx(-0.875)
    # best response: project r/2 = (0.5, 1.5, 0) → (0, 1, 0): value 3 − 1 = 2
    assert float(g_diag["adv/gap_to_best"]) == pytest.approx(2 - 0.875)
    g_loss.backward()
    assert reward.grad is None  # the generator step treats r as fixed
    phi = torch.softmax(phi_logits.detach(), 1)
    r_loss, _ = adversarial_reward_loss(phi, reward, torch.tensor([0]), mask)
    assert float(r_loss.detach()) == pytest.approx(1.25 - 1.0)
    r_loss.backward()
    assert reward.grad.tolist() == [[0.5 - 1.0, 0.25, 0.25]]


def test_hit_at_k_splits_ties_and_skips_no_clicks():
    scores = torch.tensor([[1.0, 1.0, 0.0, 9.0], [0.0, 2.0, 1.0, 0.0], [3.0, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]] * 3)
    click = torch.tensor([0, 2, -1])
    assert hit_at_k(scores, mask, click, 1).tolist() == pytest.approx([0.5, 0.0])
    assert precision_metrics(scores, mask, click) == pytest.approx({"prec1": 0.25, "prec2": 1.0})


def _toy_arrays():
    # pad = 4; page views: history → shown (click slot)
    return DisplaySetArrays(
        history=np.array([[4, 0], [0, 1], [4, 0], [4, 2]]),
        shown=np.array([[1, 2, 3], [2, 3, 4], [1, 3, 4], [0, 3, 1]]),
        click=np.array([0, 0, 0, -1]),
        user=np.array([0, 0, 1, 2]),
        pad_id=4,
    )


def test_popularity_and_cooccurrence_baselines_by_hand():
    data = _toy_arrays()
    pop = PopularityBaseline(4).fit(data)
    assert pop.counts.tolist() == [0, 2, 1, 0, 0]  # clicks: 1, 2, 1
    assert pop.scores(data)[0].tolist() == pytest.approx([math.log(3), math.log(2), 0.0])
    knn = CooccurrenceKNN(4).fit(data)
    # pairs (history → click): (0→1), (0→2), (1→2), (0→1); clicks n_1 = 2, n_2 = 1, n_0 = 0
    query = DisplaySetArrays(
        history=np.array([[1, 0]]), shown=np.array([[2, 1, 3]]), click=np.array([0]),
        user=np.array([0]), pad_id=4,
    )  # fmt: skip
    s = knn.scores(query)[0].tolist()
    # item 2: c(0,2)/√max(0·1, 1) + c(1,2)/√(2·1) = 1 + 1/√2; item 1: c(0,1)=2 → 2/√max(0,1)
    assert s == pytest.approx([1 + 1 / math.sqrt(2), 2.0, 0.0])


def test_user_model_choice_masks_padding_and_is_a_distribution():
    torch.manual_seed(0)
    features = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), np.float32)])
    for state in ("pw", "lstm"):
        model = UserModel(features, UserModelConfig(state=state, history_len=2))
        t = _toy_arrays().tensors()
        logits = model.choice_logits(t["history"], t["shown"], t["shown_mask"])
        probs = torch.softmax(logits, 1)
        assert probs.shape == (4, 4)
        assert torch.allclose(probs.sum(1), torch.ones(4))
        assert (probs[1, 2] == 0) and (probs[2, 2] == 0)  # padded slots
        loss, _ = shannon_mle_loss(logits, t["click"])
        loss.backward()
        assert model.items.embedding.weight.grad[4].abs().sum() == 0  # padding row frozen
    assert choice_mask(t["shown_mask"])[:, -1].all()


def test_split_first_layer_equals_the_mlp_on_the_concatenation():
    torch.manual_seed(0)
    features = np.random.default_rng(0).normal(size=(11, 5)).astype(np.float32)
    features[-1] = 0
    model = UserModel(features, UserModelConfig(history_len=3, item_embedding_dim=2))
    history, items = torch.randint(0, 11, (4, 3)), torch.randint(0, 10, (4, 6))
    s = model.encode(history)
    concat = torch.cat([s[:, None, :].expand(-1, 6, -1), model.items(items)], dim=-1)
    assert torch.allclose(model.utility(s, items), model.utility_mlp(concat).squeeze(-1), atol=1e-6)
