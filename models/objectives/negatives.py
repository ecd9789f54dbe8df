"""Negative-action sampling (SNQN / SA2C, Xin et al. 2022; SASRec-CCQL §3.2-3.3; design.md §4
"Negative actions"): ``n_neg`` items per row, never the row's logged action and, by default,
never an item of the row's state (SASRec-CCQL §3.3: negatives are "items with which the user
has never interacted")."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_negatives(
    actions: Tensor,
    n_items: int,
    n_neg: int,
    generator: torch.Generator,
    item_popularity: Tensor | None = None,
    max_rounds: int = 4,
    exclude: Tensor | None = None,
) -> Tensor:
    """Sample ``n_neg`` negatives per row, with replacement, never in ``E_b``.

    ``E_b = {actions[b]} ∪ {exclude[b, j]}``: the logged action, plus (``exclude`` given, e.g.
    the state [B, L]) every item of that row; ids outside ``0..I−1`` (the padding
    ``pad_id = I``) are ignored. With ``exclude=None`` this is "any item but the positive".

    - Uniform (``item_popularity`` None): uniform over the ``I − |E_b|`` allowed items (exact
      up to the float64 rounding of one draw), without resampling: draw ``u`` uniform in
      ``0..I−|E_b|−1`` and return the u-th allowed item (`nth_allowed`). With
      ``exclude=None``, ``u ~ U{0..I−2}`` and ``u + (u ≥ a)``.
    - By popularity (``item_popularity`` [I], counts or probabilities), ``pop`` conditioned on
      ``∉ E_b``. With ``exclude``: inverse-CDF sampling on the allowed mass, exact without any
      resampling (`_popularity_allowed`); a row whose allowed items have no mass at all draws
      uniformly over them. With ``exclude=None``: draw from ``pop`` and redraw collisions
      with ``a`` (rejection sampling) for ``max_rounds`` rounds, without a host sync; a
      collision left after that (probability ``pop(a)^(max_rounds+1)``) falls back to the
      uniform shift.

    A row whose ``E_b`` holds every item (only possible with a catalogue of at most L + 1
    items) falls back to "any item but the positive" for that row.

    Shapes: ``actions`` [B] int, ``exclude`` [B, K] int or None -> [B, n_neg] int64 on
    ``actions``' device; ``generator`` must live on that device too.
    """
    if n_items < 2:
        raise ValueError(f"need n_items >= 2 to sample a negative, got {n_items}.")
    a = actions.long().unsqueeze(1)  # [B, 1]
    shape = (actions.shape[0], n_neg)
    if exclude is None:
        uniform = _uniform_but_action(a, n_items, shape, generator)
    else:
        blocked = _blocked_sorted(torch.cat([a, exclude.long().to(a.device)], dim=1), n_items)
        uniform = _uniform_allowed(a, blocked, n_items, shape, generator)
    if item_popularity is None:
        return uniform
    probs = item_popularity.float().to(a.device)
    if exclude is not None:
        return _popularity_allowed(probs, blocked, n_items, shape, generator, uniform)

    def draw() -> Tensor:
        flat = torch.multinomial(probs, shape[0] * n_neg, replacement=True, generator=generator)
        return flat.view(shape)

    neg = draw()
    for _ in range(max_rounds):  # fixed count, no host sync: a round without clashes is a no-op
        neg = torch.where(neg == a, draw(), neg)
    return torch.where(neg == a, uniform, neg)


def nth_allowed(u: Tensor, blocked: Tensor) -> Tensor:
    """The ``u``-th (0-based, ascending) item id not in ``blocked``.

    ``blocked`` [B, K] must be ascending per row over its real ids, each at most once; any
    entry ≥ I (the fill of `_blocked_sorted`) is never reached, since the result is < I when
    ``u < I − |blocked_b|``. Walking the blocked ids in ascending order, each one at or below
    the running value pushes it up by one. ``u`` [B, N] -> [B, N].
    """
    v = u
    for j in range(blocked.shape[1]):
        v = v + (v >= blocked[:, j : j + 1]).long()
    return v


def _blocked_sorted(items: Tensor, n_items: int) -> Tensor:
    """Per row: the distinct real ids of ``items`` [B, K] ascending; the rest filled with I."""
    real = (items >= 0) & (items < n_items)
    ids, _ = torch.where(real, items, n_items).sort(dim=1)
    repeat = torch.zeros_like(real)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    return torch.where(repeat, n_items, ids)


def _popularity_allowed(
    probs: Tensor,
    blocked: Tensor,
    n_items: int,
    shape: tuple[int, int],
    generator: torch.Generator,
    uniform: Tensor,
) -> Tensor:
    """Draws from ``probs`` [I] conditioned on not being in ``blocked`` [B, K] (ascending, as
    `_blocked_sorted` returns): a point ``p`` uniform on the allowed mass is moved past the
    mass interval of every blocked id at or below it (ascending, as `nth_allowed` moves past
    blocked ids), then located in the cumulative mass. ``uniform`` stands in for rows whose
    allowed mass is 0 and for any float64 boundary case landing on a blocked id."""
    pop = probs.double().clamp(min=0)
    cum = pop.cumsum(0)  # [I]
    real = blocked < n_items
    ids = blocked.clamp(max=n_items - 1)
    mass = torch.where(real, pop[ids], 0.0)  # [B, K]
    start = torch.where(real, cum[ids] - mass, torch.inf)  # where each blocked interval begins
    allowed_mass = cum[-1] - mass.sum(dim=1, keepdim=True)  # [B, 1]
    p = torch.rand(shape, generator=generator, device=probs.device, dtype=torch.float64)
    p = p * allowed_mass
    for j in range(blocked.shape[1]):
        p = p + torch.where(p >= start[:, j : j + 1], mass[:, j : j + 1], 0.0)
    neg = torch.searchsorted(cum, p, right=True).clamp(max=n_items - 1)
    bad = (neg.unsqueeze(2) == blocked.unsqueeze(1)).any(dim=2) | (allowed_mass <= 0)
    return torch.where(bad, uniform, neg)


def _uniform_but_action(
    a: Tensor, n_items: int, shape: tuple[int, int], generator: torch.Generator
) -> Tensor:
    u = torch.randint(n_items - 1, shape, generator=generator, device=a.device)
    return u + (u >= a).long()


def _uniform_allowed(
    a: Tensor, blocked: Tensor, n_items: int, shape: tuple[int, int], generator: torch.Generator
) -> Tensor:
    allowed = n_items - (blocked < n_items).sum(dim=1, keepdim=True)  # [B, 1]
    r = torch.rand(shape, generator=generator, device=a.device, dtype=torch.float64)
    u = (r * allowed.clamp(min=1)).long().clamp(max=n_items - 1)
    u = torch.minimum(u, (allowed - 1).clamp(min=0))
    neg = nth_allowed(u, blocked)
    # Every item blocked (a catalogue of at most L + 1 items): any item but the positive.
    return torch.where(allowed > 0, neg, _uniform_but_action(a, n_items, shape, generator))
