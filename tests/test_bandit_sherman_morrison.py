"""Sherman–Morrison inverses and the incremental REN slate against their references."""

from __future__ import annotations

import math

import pytest
import torch
from recrl.models.bandits.ren import (
    history_inverses,
    ren_slate,
    ren_slate_lazy,
    ren_slate_recompute,
)
from recrl.models.bandits.sherman_morrison import (
    identity_inverses,
    quadratic_form,
    quadratic_form_downdate,
    sherman_morrison_scatter,
    sherman_morrison_update,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def test_rank_one_updates_equal_a_fresh_inverse_after_many_steps():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, 6, generator=generator, dtype=torch.float64)  # 500 steps, 3 users
    inverse = identity_inverses(3, 6, torch.float64)
    a = torch.eye(6, dtype=torch.float64).repeat(3, 1, 1)
    for step in range(500):
        inverse = sherman_morrison_update(inverse, x[step])
        a = a + x[step].unsqueeze(-1) * x[step].unsqueeze(-2)
    torch.testing.assert_close(inverse, torch.linalg.inv(a), rtol=1e-9, atol=1e-12)
    # float32, as the policies run: still close after 500 updates
    inverse32 = identity_inverses(3, 6)
    for step in range(500):
        inverse32 = sherman_morrison_update(inverse32, x[step].float())
    torch.testing.assert_close(inverse32.double(), torch.linalg.inv(a), rtol=1e-3, atol=1e-5)


def test_scatter_applies_repeated_targets_in_turn():
    generator = torch.Generator().manual_seed(1)
    index = torch.tensor([2, 0, 2, 2, 1, 0])
    x = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    out = sherman_morrison_scatter(identity_inverses(4, 4, torch.float64), index, x)
    for target in range(4):
        rows = x[index == target]
        a = torch.eye(4, dtype=torch.float64) + rows.T @ rows
        torch.testing.assert_close(out[target], torch.linalg.inv(a))


def test_quadratic_form_downdate_matches_recomputation():
    generator = torch.Generator().manual_seed(2)
    vectors = torch.randn(2, 50, 5, generator=generator, dtype=torch.float64)
    inverse = identity_inverses(2, 5, torch.float64)
    forms = quadratic_form(inverse, vectors)
    for _ in range(20):
        x = torch.randn(2, 5, generator=generator, dtype=torch.float64)
        forms = quadratic_form_downdate(forms, vectors, inverse, x)
        inverse = sherman_morrison_update(inverse, x)
    torch.testing.assert_close(forms, quadratic_form(inverse, vectors))


def test_ren_slate_hand_example_differs_from_top_k():
    # μ0 = μ1 = (1, 0), μ2 = (0, 1), θ = (0.2, 0.1), λ_d = 1, no history, no impressions.
    # Scores (1.2, 1.2, 1.1): top-2 would be {0, 1}. After picking 0, A = diag(2, 1) and
    # item 1's form drops to 1/2: 0.2 + √0.5 = 0.907 < 1.1, so REN picks item 2.
    items = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    theta = torch.tensor([[0.2, 0.1]], dtype=torch.float64)
    inverse = identity_inverses(1, 2, torch.float64)
    for slate_fn in (ren_slate, ren_slate_lazy, ren_slate_recompute):
        slate = slate_fn(items, theta, inverse, torch.zeros(3), 2, lambda_d=1.0, lambda_u=0.0)
        assert slate.tolist() == [[0, 2]]


def test_incremental_slate_equals_recompute_slate():
    generator = torch.Generator().manual_seed(3)
    items = torch.randn(300, 8, generator=generator, dtype=torch.float64)
    theta = 0.3 * torch.randn(4, 8, generator=generator, dtype=torch.float64)
    history = torch.randn(4, 60, 8, generator=generator, dtype=torch.float64)
    mask = torch.rand(4, 60, generator=generator) < 0.7
    inverse = history_inverses(history, mask)
    impressions = torch.randint(0, 50, (300,), generator=generator)
    for lambda_d, lambda_u in ((0.5, 0.2), (2.0, 0.0), (0.05, math.sqrt(10) * 0.05)):
        fast = ren_slate(
            items, theta, inverse, impressions, 30, lambda_d=lambda_d, lambda_u=lambda_u
        )
        slow = ren_slate_recompute(
            items, theta, inverse, impressions, 30, lambda_d=lambda_d, lambda_u=lambda_u
        )
        lazy = ren_slate_lazy(
            items, theta, inverse, impressions, 30, lambda_d=lambda_d, lambda_u=lambda_u
        )
        assert torch.equal(fast, slow) and torch.equal(lazy, slow)
        assert all(len(set(row)) == 30 for row in fast.tolist())


def test_lazy_slate_with_duplicate_items_and_whole_catalogue():
    # exact ties (duplicated embeddings, as in SYN-M/L) resolve to the lower id, like argmax
    generator = torch.Generator().manual_seed(4)
    unique = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    items = unique.repeat(3, 1)  # 18 items, three copies each
    theta = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    inverse = identity_inverses(2, 3, torch.float64)
    args = (items, theta, inverse, torch.zeros(18, dtype=torch.long), 18)
    slow = ren_slate_recompute(*args, lambda_d=0.7, lambda_u=0.0)
    assert torch.equal(ren_slate_lazy(*args, lambda_d=0.7, lambda_u=0.0), slow)
    assert torch.equal(ren_slate(*args, lambda_d=0.7, lambda_u=0.0), slow)


def test_history_inverse_ignores_padding():
    history = torch.tensor([[[1.0, 0.0], [5.0, 5.0]]], dtype=torch.float64)
    inverse = history_inverses(history, torch.tensor([[True, False]]))
    torch.testing.assert_close(
        inverse[0], torch.diag(torch.tensor([0.5, 1.0], dtype=torch.float64))
    )
