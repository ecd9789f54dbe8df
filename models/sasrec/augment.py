"""Sequence augmentations for the contrastive objective (CL4SRec, Xie et al. 2020/2022, as used
by SASRec-CCQL §3.4 "temporal augmentations"; design.md §4 "Contrastive").

Every function takes a left-padded batch ``state`` [B, L] (int, real items in the last
``state_len[b]`` positions, most recent last) and returns a new left-padded batch and its
lengths. Padding positions are never read into a real position; outputs are padded again with
``pad_id``. Randomness comes only from the ``generator`` (which must live on ``state``'s
device), and everything is vectorised over the batch.

Counts use ``floor(ratio · n)`` like CL4SRec, except that ``crop`` keeps at least one item of a
non-empty sequence (an empty view would carry no signal about its sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Augmentation = Literal["crop", "mask", "reorder"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ratios of the three CL4SRec augmentations; one is drawn per row and per view."""

    crop_ratio: float = 0.6
    """η: fraction of the real items that ``crop`` keeps (a contiguous run)."""
    mask_ratio: float = 0.3
    """γ_m: fraction of the real items that ``mask`` replaces by the mask token."""
    reorder_ratio: float = 0.6
    """β: fraction of the real items, a contiguous run, that ``reorder`` shuffles."""
    methods: tuple[Augmentation, ...] = ("crop", "mask", "reorder")
    """Augmentations drawn from, uniformly per row."""

    def __post_init__(self) -> None:
        for name in ("crop_ratio", "mask_ratio", "reorder_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value}.")
        unknown = set(self.methods) - {"crop", "mask", "reorder"}
        if not self.methods or unknown:
            raise ValueError(
                f"AugmentConfig.methods must be a non-empty subset of crop/mask/reorder, "
                f"got {self.methods}."
            )


def _count(ratio: float, n: Tensor) -> Tensor:
    """``floor(ratio · n)`` as int64, robust to float error (0.3 · 10 -> 3, not 2)."""
    return torch.floor(ratio * n.double() + 1e-9).long()


def _uniform_offset(span: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform integer in ``[0, span]`` per row (``span`` [B] int64, ≥ 0)."""
    u = torch.rand(span.shape, generator=generator, device=span.device, dtype=torch.float64)
    return torch.minimum(torch.floor(u * (span + 1)).long(), span)


def crop(
    state: Tensor, state_len: Tensor, ratio: float, pad_id: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Keep a random contiguous run of ``max(1, floor(ratio · n))`` of the n real items.

    The run is moved to the end (left-padded again); the new length is returned. Empty rows
    stay empty.
    """
    length = state.shape[1]
    n = state_len.long()
    keep = torch.where(n > 0, _count(ratio, n).clamp(min=1), 0).minimum(n)
    first = (length - n) + _uniform_offset(n - keep, generator)  # absolute index of run start
    pos = torch.arange(length, device=state.device)
    out_real = pos >= (length - keep).unsqueeze(1)
    src = (first - (length - keep)).unsqueeze(1) + pos  # out position p <- src p
    taken = state.gather(1, src.clamp(0, length - 1))
    return taken.masked_fill(~out_real, pad_id), keep.to(state_len.dtype)


def mask(
    state: Tensor, state_len: Tensor, ratio: float, mask_id: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Replace ``floor(ratio · n)`` real items, chosen uniformly without replacement, by
    ``mask_id``. Lengths are unchanged."""
    length = state.shape[1]
    n = state_len.long()
    real = torch.arange(length, device=state.device) >= (length - n).unsqueeze(1)
    keys = torch.rand(state.shape, generator=generator, device=state.device)
    keys = keys.masked_fill(~real, 2.0)  # padding sorts last, so it is never picked
    rank = keys.argsort(dim=1).argsort(dim=1)
    chosen = rank < _count(ratio, n).unsqueeze(1)
    return state.masked_fill(chosen, mask_id), state_len.clone()


def reorder(
    state: Tensor, state_len: Tensor, ratio: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Shuffle a random contiguous run of ``floor(ratio · n)`` real items in place.

    Sort keys: position p for every slot outside the run, ``lo + U·(m − 1)`` inside it
    (``[lo, lo + m)`` is the run), so a stable argsort permutes only the run. Lengths and the
    multiset of items are unchanged.
    """
    length = state.shape[1]
    n = state_len.long()
    m = _count(ratio, n)
    lo = (length - n) + _uniform_offset(n - m, generator)
    pos = torch.arange(length, device=state.device)
    inside = (pos >= lo.unsqueeze(1)) & (pos < (lo + m).unsqueeze(1))
    u = torch.rand(state.shape, generator=generator, device=state.device, dtype=torch.float64)
    inside_key = lo.unsqueeze(1) + u * (m - 1).clamp(min=0).unsqueeze(1)
    keys = torch.where(inside, inside_key, pos.double())
    order = keys.argsort(dim=1, stable=True)
    return state.gather(1, order), state_len.clone()


def random_augment(
    state: Tensor,
    state_len: Tensor,
    config: AugmentConfig,
    pad_id: int,
    mask_id: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """One augmentation per row, drawn uniformly from ``config.methods``; call twice for the
    two views of the contrastive objective."""
    outputs = {
        "crop": lambda: crop(state, state_len, config.crop_ratio, pad_id, generator),
        "mask": lambda: mask(state, state_len, config.mask_ratio, mask_id, generator),
        "reorder": lambda: reorder(state, state_len, config.reorder_ratio, generator),
    }
    pick = torch.randint(
        len(config.methods), (state.shape[0],), generator=generator, device=state.device
    )
    out_state, out_len = state.clone(), state_len.clone()
    for index, name in enumerate(config.methods):
        aug_state, aug_len = outputs[name]()
        row = pick == index
        out_state = torch.where(row.unsqueeze(1), aug_state, out_state)
        out_len = torch.where(row, aug_len, out_len)
    return out_state, out_len
