"""Rank-one inverse updates (Sherman–Morrison) and the quadratic forms they keep current.

Every UCB-style policy of design.md §6 needs ``A⁻¹`` for a design matrix ``A = I + Σ x xᵀ`` that
grows by one outer product per observation. Re-inverting costs O(d³) per observation; the
Sherman–Morrison identity

    (A + x xᵀ)⁻¹ = A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x)

costs O(d²) and needs no factorisation (``A⁻¹`` stays symmetric because ``A`` is). The same
update changes the quadratic form of any vector ``μ`` by a computable amount,

    μᵀ(A + x xᵀ)⁻¹μ = μᵀA⁻¹μ − (μᵀA⁻¹x)² / (1 + xᵀA⁻¹x),

which REN's slate generation uses to refresh every item's exploration term in O(I·d) per pick.
All functions broadcast over leading batch dimensions (one inverse per user or per item).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sherman_morrison_update(inverse: Tensor, x: Tensor) -> Tensor:
    """Return ``(A + x xᵀ)⁻¹`` from ``inverse = A⁻¹`` (``A`` symmetric positive definite).

    Shapes: ``inverse`` [..., d, d], ``x`` [..., d] -> [..., d, d].
    """
    ax = (inverse @ x.unsqueeze(-1)).squeeze(-1)  # A⁻¹x, [..., d]
    denominator = 1.0 + (x * ax).sum(-1)  # 1 + xᵀA⁻¹x >= 1 for SPD A
    return inverse - ax.unsqueeze(-1) * ax.unsqueeze(-2) / denominator[..., None, None]


def sherman_morrison_scatter(inverses: Tensor, index: Tensor, x: Tensor) -> Tensor:
    """Apply one rank-one update per row of ``x`` to the inverse it names, in row order.

    ``inverses`` [N, d, d] (one per user or per item), ``index`` [M] rows of ``inverses``,
    ``x`` [M, d]. Rows naming the same inverse are applied one after another (the order
    matters for rounding only, not for the result in exact arithmetic). Returns a new tensor.
    """
    out = inverses.clone()
    if index.numel() == 0:
        return out
    # Rows with distinct targets are independent: update them as one batch per "layer",
    # where layer j holds the j-th occurrence of each target.
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    first = torch.ones_like(sorted_index, dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    start = torch.cummax(torch.where(first, torch.arange(len(index)), 0), 0).values
    occurrence = torch.arange(len(index)) - start
    for layer in range(int(occurrence.max()) + 1):
        rows = order[occurrence == layer]
        targets = index[rows]
        out[targets] = sherman_morrison_update(out[targets], x[rows])
    return out


def quadratic_form(inverse: Tensor, vectors: Tensor) -> Tensor:
    """``vᵀA⁻¹v`` for every row ``v`` of ``vectors``.

    Shapes: ``inverse`` [..., d, d], ``vectors`` [..., n, d] -> [..., n]. Clamped at 0 to
    absorb rounding of a tiny negative value before a square root.
    """
    return ((vectors @ inverse) * vectors).sum(-1).clamp_min(0.0)


def quadratic_form_downdate(forms: Tensor, vectors: Tensor, inverse: Tensor, x: Tensor) -> Tensor:
    """Quadratic forms after ``A ← A + x xᵀ``, from the forms before and the *old* inverse.

    ``forms`` [..., n] = ``vᵀA⁻¹v`` per row of ``vectors`` [..., n, d]; ``inverse`` [..., d, d]
    is ``A⁻¹`` before the update, ``x`` [..., d]. Cost O(n·d + d²) instead of O(n·d²):
    ``vᵀ(A + xxᵀ)⁻¹v = vᵀA⁻¹v − (vᵀA⁻¹x)² / (1 + xᵀA⁻¹x)``.
    """
    ax = (inverse @ x.unsqueeze(-1)).squeeze(-1)  # [..., d]
    denominator = 1.0 + (x * ax).sum(-1, keepdim=True)  # [..., 1]
    projection = (vectors @ ax.unsqueeze(-1)).squeeze(-1)  # vᵀA⁻¹x, [..., n]
    return (forms - projection.square() / denominator).clamp_min(0.0)


def identity_inverses(count: int, dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``count`` copies of ``I_d``: the inverse of the ridge prior ``A₀ = I``, [count, d, d]."""
    return torch.eye(dim, dtype=dtype).expand(count, dim, dim).clone()
