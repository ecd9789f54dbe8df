"""Numeric precision of the SASRec forward passes (design.md §3: bf16 autocast on GPU)."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")
"""``auto``: bf16 autocast on CUDA, float32 elsewhere; ``fp32``: never autocast; ``bf16``:
autocast on every device (CPU too, where it is slower but shows the bf16 numerics)."""


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The dtype to autocast the forward passes to on ``device_type`` (``cuda``/``cpu``),
    or None for plain float32. Losses are computed in float32 either way: the objectives
    cast their inputs with ``.float()``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and device_type == "cuda"):
        return torch.bfloat16
    return None
