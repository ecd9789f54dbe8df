"""REN's lazy-greedy slate (argmax over an array of bounds) against its heap reference."""

from __future__ import annotations

import pytest
import torch
from recrl.models.bandits.ren import (
    history_inverses,
    ren_slate,
    ren_slate_lazy,
    ren_slate_lazy_heap,
)
from recrl.models.bandits.sherman_morrison import identity_inverses


def instance(seed: int, n_items: int, dim: int, users: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randn(n_items, dim, generator=generator, dtype=dtype) / dim**0.5
    theta = torch.randn(users, dim, generator=generator, dtype=dtype) / dim**0.5
    history = torch.randn(users, 20, dim, generator=generator, dtype=dtype) / dim**0.5
    mask = torch.rand(users, 20, generator=generator) < 0.8
    impressions = torch.randint(0, 30, (n_items,), generator=generator)
    return items, theta, history_inverses(history, mask), impressions


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_slate_equals_the_heap_reference_on_random_instances(seed, dtype):
    items, theta, inverse, impressions = instance(seed, 500, 12, 3, dtype)
    for lambda_d, lambda_u in ((0.1, 0.3), (1.0, 0.0), (5.0, 0.1)):
        args = (items, theta, inverse, impressions, 40)
        lazy = ren_slate_lazy(*args, lambda_d=lambda_d, lambda_u=lambda_u)
        heap = ren_slate_lazy_heap(*args, lambda_d=lambda_d, lambda_u=lambda_u)
        assert lazy.shape == (3, 40) and lazy.dtype == torch.long
        assert torch.equal(lazy, heap), (lambda_d, lambda_u)
        assert all(len(set(row)) == 40 for row in lazy.tolist())


def test_the_diversity_term_changes_the_slate_and_matches_the_eager_version():
    # a large λ_d must move the slate away from the top-k of relevance: the test can fail
    items, theta, inverse, impressions = instance(5, 300, 8, 2, torch.float64)
    args = (items, theta, inverse, impressions, 25)
    lazy = ren_slate_lazy(*args, lambda_d=3.0, lambda_u=0.0)
    top = ren_slate_lazy(*args, lambda_d=0.0, lambda_u=0.0)
    assert not torch.equal(lazy.sort(1).values, top.sort(1).values)
    assert torch.equal(lazy, ren_slate(*args, lambda_d=3.0, lambda_u=0.0))


def test_exact_ties_go_to_the_lower_id_like_the_heap():
    # Four copies of each of five embeddings and no relevance: every pick is a tie between
    # copies with bit-identical scores. The first pick is the lowest id of the best
    # embedding; its copies then fall (their forms shrink), so the next pick is another one.
    generator = torch.Generator().manual_seed(7)
    unique = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    items = unique.repeat(4, 1)  # item i has embedding i % 5
    theta = torch.zeros(2, 3, dtype=torch.float64)
    inverse = identity_inverses(2, 3, torch.float64)
    args = (items, theta, inverse, torch.zeros(20, dtype=torch.long), 20)
    lazy = ren_slate_lazy(*args, lambda_d=1.0, lambda_u=0.0)
    assert torch.equal(lazy, ren_slate_lazy_heap(*args, lambda_d=1.0, lambda_u=0.0))
    first = int(unique.norm(dim=1).argmax())  # A = I: the score is ‖μ‖
    assert lazy[:, 0].tolist() == [first, first]
    assert all(sorted(row) == list(range(20)) for row in lazy.tolist())  # the whole catalogue
    for row in lazy.tolist():  # among copies of one embedding, lower ids are picked first
        for e in range(5):
            copies = [item for item in row if item % 5 == e]
            assert copies == sorted(copies)


def test_all_equal_items_give_the_ids_in_order():
    items = torch.ones(6, 2)
    args = (items, torch.zeros(1, 2), identity_inverses(1, 2), torch.zeros(6, dtype=torch.long))
    assert ren_slate_lazy(*args, 6, lambda_d=0.5, lambda_u=0.2).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert ren_slate_lazy_heap(*args, 6, lambda_d=0.5, lambda_u=0.2).tolist() == [
        [0, 1, 2, 3, 4, 5]
    ]


def test_non_finite_scores_are_refused():
    items = torch.ones(4, 2)
    items[2, 0] = float("nan")
    args = (items, torch.zeros(1, 2), identity_inverses(1, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="not finite"):
        ren_slate_lazy(*args, 2, lambda_d=0.5, lambda_u=0.0)
