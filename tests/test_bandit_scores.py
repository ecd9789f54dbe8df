"""Each bandit policy's acquisition score on a hand-computed 3-item example.

Items (d1 = 2): x0 = (1, 0), x1 = (0, 1), x2 = (1, 1). Where a history enters, it is the
single item (1, 0), so A = I + DᵀD = diag(2, 1), A⁻¹ = diag(1/2, 1) and the quadratic forms
xᵀA⁻¹x are (1/2, 1, 3/2).
"""

from __future__ import annotations

import math

import pytest
import torch
from recrl.models.bandits import BanditContext, Feedback, PolicySizes, make_policy, policy_config
from recrl.models.bandits.scores import (
    bilinear_features,
    galm_ucb_scores,
    gblm_ucb_scores,
    glm_ucb_scores,
)

ITEMS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
A_INV = torch.diag(torch.tensor([0.5, 1.0], dtype=torch.float64))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def context(theta=(0.5, -0.5), **extra) -> BanditContext:
    return BanditContext(
        user_ids=torch.tensor([0]),
        item_embeddings=ITEMS,
        user_embeddings=torch.tensor([theta], dtype=torch.float64),
        history_embeddings=torch.tensor([[[1.0, 0.0], [9.0, 9.0]]], dtype=torch.float64),
        history_mask=torch.tensor([[True, False]]),  # the padded row must not count
        **extra,
    )


def sizes() -> PolicySizes:
    return PolicySizes(n_users=1, n_items=3, item_dim=2, user_dim=2)


def ren_with_impressions(name: str, **settings):
    policy = make_policy(name, sizes(), {"history": "context", **settings})
    policy.impressions = torch.tensor([0, 3, 8])  # σ = 1/√(1+n) = 1, 1/2, 1/3
    return policy


def test_ren_full_score():
    # θ = (0.5, -0.5): relevance (0.5, -0.5, 0); λ_d = 0.1, λ_u = 0.3
    scores = ren_with_impressions("ren", lambda_d=0.1, lambda_u=0.3).scores(context())
    expected = [
        0.5 + 0.1 * math.sqrt(0.5) + 0.3 * 1.0,
        -0.5 + 0.1 * 1.0 + 0.3 * 0.5,
        0.0 + 0.1 * math.sqrt(1.5) + 0.3 / 3.0,
    ]
    torch.testing.assert_close(scores[0], torch.tensor(expected, dtype=torch.float64))


def test_ren_default_lambda_u_and_ablations():
    assert policy_config("ren", {"lambda_d": 0.1}).effective_lambda_u == pytest.approx(
        math.sqrt(10) * 0.1
    )
    # REN-1,2: relevance + diversity only
    scores = ren_with_impressions("ren-1,2", lambda_d=0.1).scores(context())
    expected = [0.5 + 0.1 * math.sqrt(0.5), -0.5 + 0.1, 0.1 * math.sqrt(1.5)]
    torch.testing.assert_close(scores[0], torch.tensor(expected, dtype=torch.float64))
    # REN-1,3: relevance + uncertainty with λ_u = √10·λ_d; no history needed
    scores = ren_with_impressions("ren-1,3", lambda_d=0.1).scores(
        BanditContext(torch.tensor([0]), ITEMS, torch.tensor([[0.5, -0.5]], dtype=torch.float64))
    )
    lu = math.sqrt(10) * 0.1
    expected = [0.5 + lu, -0.5 + lu / 2, lu / 3]
    torch.testing.assert_close(scores[0], torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="fixes"):
        policy_config("ren-1,2", {"lambda_u": 0.5})


def test_ren_needs_history_and_counts_impressions():
    policy = make_policy("ren", sizes(), {"lambda_d": 0.1, "history": "context"})
    bare = BanditContext(torch.tensor([0]), ITEMS, torch.tensor([[0.5, -0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="history_embeddings"):
        policy.scores(bare)
    slate = torch.tensor([[2, 0]])
    policy.update(Feedback(context(), slate, torch.tensor([[1.0, 0.0]])))
    assert policy.impressions.tolist() == [1, 0, 1]


def test_ren_recommended_history_is_the_design_matrix():
    # D = the items recommended so far: after recommending item 0 once, A = diag(2, 1)
    policy = make_policy("ren", sizes(), {"lambda_d": 0.1, "lambda_u": 0.0, "history_window": 3})
    bare = BanditContext(torch.tensor([0]), ITEMS, torch.tensor([[0.5, -0.5]], dtype=torch.float64))
    fresh = policy.scores(bare)[0]  # A = I: forms (1, 1, 2)
    expected = [0.5 + 0.1, -0.5 + 0.1, 0.1 * math.sqrt(2)]
    torch.testing.assert_close(fresh, torch.tensor(expected, dtype=torch.float64))
    policy.update(Feedback(bare, torch.tensor([[0]]), torch.tensor([[1.0]])))
    expected = [0.5 + 0.1 * math.sqrt(0.5), -0.5 + 0.1, 0.1 * math.sqrt(1.5)]
    torch.testing.assert_close(policy.scores(bare)[0], torch.tensor(expected, dtype=torch.float64))
    for item in (1, 2, 2):  # the window keeps the last 3 recommendations
        policy.update(Feedback(bare, torch.tensor([[item]]), torch.tensor([[0.0]])))
    assert policy.recommended[0].tolist() == [1, 2, 2]


def test_greedy_and_random():
    greedy = make_policy("greedy", sizes()).scores(context())
    torch.testing.assert_close(greedy[0], torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64))
    n_greedy = make_policy("n-greedy", sizes()).scores(context())
    expected = [sigmoid(0.5), sigmoid(-0.5), 0.5]
    torch.testing.assert_close(n_greedy[0], torch.tensor(expected, dtype=torch.float64))
    random = make_policy("random", sizes())
    slates = torch.cat([random.select(context(), 2) for _ in range(200)])
    assert (slates[:, 0] != slates[:, 1]).all()
    counts = torch.bincount(slates.flatten(), minlength=3)
    assert counts.min() > 100  # each item is in 2/3 of 200 slates on average


def test_glm_ucb_and_linucb_formula():
    theta = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    glm = glm_ucb_scores(ITEMS, theta, A_INV.unsqueeze(0), beta=0.1)
    width = [math.sqrt(0.5), 1.0, math.sqrt(1.5)]
    expected = [sigmoid(1) + 0.1 * width[0], sigmoid(-1) + 0.1 * width[1], 0.5 + 0.1 * width[2]]
    torch.testing.assert_close(glm[0], torch.tensor(expected, dtype=torch.float64))
    lin = glm_ucb_scores(ITEMS, theta, A_INV.unsqueeze(0), beta=0.1, link="identity")
    expected = [1 + 0.1 * width[0], -1 + 0.1 * width[1], 0.1 * width[2]]
    torch.testing.assert_close(lin[0], torch.tensor(expected, dtype=torch.float64))


def test_linucb_update_is_ridge_on_the_sherman_morrison_inverse():
    policy = make_policy("linucb", sizes(), {"beta": 0.1})
    ctx = BanditContext(torch.tensor([0]), ITEMS.float(), torch.zeros(1, 2))
    # one observation: item 0, features with intercept v = (1, 0, 1), reward 1:
    # M = I + vvᵀ, b = v, θ̂ = M⁻¹b = v / (1 + |v|²) = v / 3
    policy.update(Feedback(ctx, torch.tensor([[0]]), torch.tensor([[1.0]])))
    torch.testing.assert_close(
        policy.coefficients[0], torch.tensor([1 / 3, 0.0, 1 / 3], dtype=torch.float32)
    )
    # item 2 with intercept w = (1, 1, 1): mean w·θ̂ = 2/3, |w|²_{M⁻¹} = 3 − (w·v)²/3 = 5/3
    scores = policy.scores(ctx)
    assert scores[0, 2].item() == pytest.approx(2 / 3 + 0.1 * math.sqrt(5 / 3), rel=1e-5)


def test_glm_ucb_fits_a_logistic_model_per_user():
    policy = make_policy("glm-ucb", PolicySizes(2, 3, 2, 2))
    ctx = BanditContext(torch.tensor([0, 1]), ITEMS.float(), torch.zeros(2, 2))
    for _ in range(20):  # user 0 clicks item 0 only, user 1 item 1 only
        policy.update(Feedback(ctx, torch.tensor([[0, 1], [0, 1]]), torch.tensor([[1, 0], [0, 1]])))
    scores = policy.scores(ctx)
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]


def test_dropout_ucb_mean_plus_std():
    mc = torch.tensor([[[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]]])  # [P=2, U=1, I=3]
    policy = make_policy("n-dropout-ucb", sizes(), {"beta": 0.1})
    scores = policy.scores(context().__class__(**{**context().__dict__, "mc_predictions": mc}))
    expected = [2 + 0.1 * math.sqrt(2), 2.0, 2 + 0.1 * math.sqrt(2)]  # unbiased std of (1, 3)
    torch.testing.assert_close(scores[0], torch.tensor(expected))
    with pytest.raises(ValueError, match="mc_predictions"):
        policy.scores(context())


def test_galm_ucb_formula():
    z = torch.tensor([[2.0]], dtype=torch.float64)  # d2 = 1
    item_inverses = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64).view(3, 1, 1)
    scores = galm_ucb_scores(
        ITEMS, z, torch.tensor([1.0, -1.0], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64), A_INV.unsqueeze(0), item_inverses,
        gamma=0.5, beta=0.1,
    )  # fmt: skip
    # logits 0.5·xᵀθ_x + 0.5·θ_z·z = (0.5 + 0.5, -0.5 + 0.5, 0 + 0.5)
    # widths 0.5·‖x‖_{A⁻¹} + 0.5·‖z‖_{A_i⁻¹}, ‖z‖ = √(4·(1, 1/2, 1/4)) = (2, √2, 1)
    expected = [
        sigmoid(1.0) + 0.1 * (0.5 * math.sqrt(0.5) + 0.5 * 2),
        sigmoid(0.0) + 0.1 * (0.5 * 1.0 + 0.5 * math.sqrt(2)),
        sigmoid(0.5) + 0.1 * (0.5 * math.sqrt(1.5) + 0.5 * 1.0),
    ]
    torch.testing.assert_close(scores[0], torch.tensor(expected, dtype=torch.float64))


def test_gblm_ucb_formula_full_and_diagonal():
    z = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    theta = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)  # xᵀΘz = (1, -2, -1)
    # W = I + vvᵀ with v = vec(x0 zᵀ) = (1, 2, 0, 0): W⁻¹ = I − vvᵀ/6
    v = torch.tensor([1.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    w_inv = torch.eye(4, dtype=torch.float64) - torch.outer(v, v) / 6
    full = gblm_ucb_scores(ITEMS, z, theta, w_inv, beta=0.1)
    # forms: 5 − 25/6; 5 (orthogonal); vec(x2 zᵀ) = (1, 2, 1, 2): 10 − 25/6
    expected = [
        sigmoid(1) + 0.1 * math.sqrt(5 / 6),
        sigmoid(-2) + 0.1 * math.sqrt(5),
        sigmoid(-1) + 0.1 * math.sqrt(35 / 6),
    ]
    torch.testing.assert_close(full[0], torch.tensor(expected, dtype=torch.float64))
    # the contraction trick equals the explicit vec(x zᵀ)ᵀ W⁻¹ vec(x zᵀ)
    features = bilinear_features(ITEMS, z)[0]
    explicit = ((features @ w_inv) * features).sum(-1)
    torch.testing.assert_close(explicit, torch.tensor([5 / 6, 5, 35 / 6], dtype=torch.float64))
    # diagonal option: W = diag(1 + v²) = (2, 5, 1, 1); forms Σ (x_a z_b)² / W_ab
    diag = gblm_ucb_scores(ITEMS, z, theta, 1 / (1 + v.square()), beta=0.1)
    forms = [1 / 2 + 4 / 5, 1 + 4, 1 / 2 + 4 / 5 + 1 + 4]
    means = [sigmoid(1), sigmoid(-2), sigmoid(-1)]
    expected = [m + 0.1 * math.sqrt(f) for m, f in zip(means, forms, strict=True)]
    torch.testing.assert_close(diag[0], torch.tensor(expected, dtype=torch.float64))


def _shared_run(name: str, clicks: list[list[int]]):
    policy = make_policy(name, PolicySizes(2, 3, 2, 2), {"beta": 0.0, "lr": 0.05})
    ctx = BanditContext(torch.tensor([0, 1]), ITEMS.float(), torch.eye(2))
    before = policy.scores(ctx)
    for _ in range(30):
        policy.update(Feedback(ctx, torch.tensor([[0, 1], [0, 1]]), torch.tensor(clicks)))
    return policy, ctx, before, policy.scores(ctx)


def test_galm_learns_shared_item_preference_and_widths_shrink():
    # additive model: item preference is shared by all users (no interaction term)
    policy, _, before, after = _shared_run("s-n-galm-ucb", [[1, 0], [1, 0]])
    assert (before[:, 0] == before[:, 1]).all() and (after[:, 0] > after[:, 1] + 0.3).all()
    # items 0 and 1 were shown 60 times, item 2 never: its A_u⁻¹ is still I
    assert torch.equal(policy.item_inverses[2], torch.eye(3))
    assert policy.item_inverses[0].trace() < 1.5


def test_gblm_learns_user_specific_preferences():
    _, _, before, after = _shared_run("s-n-gblm-ucb", [[1, 0], [0, 1]])
    assert after[0, 0] - after[0, 1] > before[0, 0] - before[0, 1] + 0.01
    assert after[1, 1] - after[1, 0] > before[1, 1] - before[1, 0] + 0.01


def test_unknown_policy_and_setting_are_named():
    with pytest.raises(ValueError, match="unknown policy 'ucb9'"):
        make_policy("ucb9", sizes())
    with pytest.raises(ValueError, match="lambda_x"):
        make_policy("ren", sizes(), {"lambda_x": 1.0})
