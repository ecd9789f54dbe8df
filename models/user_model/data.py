"""Display-set records in memory: what the user model and its baselines train on.

One row per page view (design.md §5): the user's previous clicks, the items shown and which of
them was clicked, or none. `recrl.pipelines.display_sets` builds and stores them; this module
only holds the arrays, so `models/` never depends on how they were read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

NO_CLICK = -1
"""``click`` value of a page view in which the user clicked none of the shown items."""


@dataclass(frozen=True)
class DisplaySetArrays:
    """Page views as aligned numpy arrays; item ids are encoded ``0..n_items-1``."""

    history: np.ndarray
    """int64 [N, m]: previous clicked items, most recent last, left-padded with ``pad_id``."""
    shown: np.ndarray
    """int64 [N, K]: the shown items in display order, right-padded with ``pad_id``."""
    click: np.ndarray
    """int64 [N]: position of the clicked item in ``shown``, or `NO_CLICK`."""
    user: np.ndarray
    """int64 [N]: encoded user of each page view."""
    pad_id: int
    """Padding id (= n_items)."""

    def __post_init__(self) -> None:
        n = len(self.click)
        for name in ("history", "shown", "user"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, click has {n}")
        if n and ((self.click < NO_CLICK) | (self.click >= self.shown.shape[1])).any():
            raise ValueError(f"click must lie in [-1, {self.shown.shape[1]})")

    def __len__(self) -> int:
        return len(self.click)

    @property
    def shown_mask(self) -> np.ndarray:
        """bool [N, K]: the slot holds a real item."""
        return self.shown != self.pad_id

    def subset(self, rows: np.ndarray) -> DisplaySetArrays:
        """The page views at ``rows`` (indices or a boolean mask)."""
        return DisplaySetArrays(
            self.history[rows], self.shown[rows], self.click[rows], self.user[rows], self.pad_id
        )

    def tensors(self, rows: np.ndarray | slice | None = None) -> dict[str, Tensor]:
        """``history``, ``shown``, ``shown_mask`` and ``click`` as torch tensors."""
        rows = slice(None) if rows is None else rows
        return {
            "history": torch.as_tensor(self.history[rows]),
            "shown": torch.as_tensor(self.shown[rows]),
            "shown_mask": torch.as_tensor(self.shown_mask[rows]),
            "click": torch.as_tensor(self.click[rows]),
        }
