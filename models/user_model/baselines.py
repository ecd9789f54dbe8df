"""Click-prediction baselines of paper Table 1, on the same display sets.

Each has ``fit(train)`` and ``scores(data) -> float [N, K]`` over the shown slots (higher
= more likely clicked); `recrl.models.user_model.metrics` turns scores into prec@k.

* `PopularityBaseline`: how often the item was clicked in the training page views.
* `CooccurrenceKNN` (IKNN, Hidasi et al. 2015): item-to-item cosine similarity from how
  often an item was clicked right after another one was in the user's last m clicks;
  a candidate scores the summed similarity to the history.
* `LogisticClickModel` (the W&D-LR family): each shown item clicked or not, independently,
  logit = b_item + wᵀ f_a + w_xᵀ (mean history features ⊙ f_a), trained with binary
  cross-entropy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from recrl.models.user_model.data import DisplaySetArrays
from torch import Tensor, nn


def _clicked_items(data: DisplaySetArrays) -> np.ndarray:
    rows = np.flatnonzero(data.click >= 0)
    return data.shown[rows, data.click[rows]]


class PopularityBaseline:
    """score(a) = log(1 + training clicks on a): as logits, the choice model P(a) ∝ 1 + n_a."""

    def __init__(self, n_items: int) -> None:
        self.counts = np.zeros(n_items + 1, dtype=np.float64)

    def fit(self, train: DisplaySetArrays) -> PopularityBaseline:
        self.counts[:] = np.bincount(_clicked_items(train), minlength=len(self.counts))
        self.counts[-1] = 0.0
        return self

    def scores(self, data: DisplaySetArrays) -> Tensor:
        return torch.as_tensor(np.log1p(self.counts[data.shown]))


class CooccurrenceKNN:
    """score(a | h) = Σ_{b ∈ h} c(b, a) / √(n_b · n_a), c(b, a) = training page views whose
    history holds b and whose click is a, n_x = clicks on x. Pairs are kept sparse (sorted
    int64 keys), so memory grows with the observed pairs, not with n_items²."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.keys = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64)
        self.clicks = np.zeros(n_items + 1)

    def fit(self, train: DisplaySetArrays) -> CooccurrenceKNN:
        rows = np.flatnonzero(train.click >= 0)
        clicked = train.shown[rows, train.click[rows]]
        history = train.history[rows]
        real = history != train.pad_id
        pairs = (
            history[real] * (self.n_items + 1)
            + np.broadcast_to(clicked[:, None], history.shape)[real]
        )
        self.keys, counts = np.unique(pairs, return_counts=True)
        self.clicks = np.bincount(clicked, minlength=self.n_items + 1).astype(np.float64)
        b, a = np.divmod(self.keys, self.n_items + 1)
        self.values = counts / np.sqrt(np.maximum(self.clicks[b] * self.clicks[a], 1.0))
        return self

    def scores(self, data: DisplaySetArrays) -> Tensor:
        out = np.zeros(data.shown.shape, dtype=np.float64)
        if len(self.keys) == 0:
            return torch.as_tensor(out)
        for lag in range(data.history.shape[1]):  # m vectorised lookups, one per lag
            b = data.history[:, lag]
            keys = b[:, None] * (self.n_items + 1) + data.shown
            at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            hit = (self.keys[at] == keys) & (b != data.pad_id)[:, None]
            out += np.where(hit, self.values[at], 0.0)
        return torch.as_tensor(out)


class LogisticClickModel(nn.Module):
    """Independent click probability per shown item (see the module docstring)."""

    def __init__(self, item_features: np.ndarray, *, epochs: int = 3, lr: float = 1e-2,
                 batch_size: int = 512, seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.register_buffer("features", torch.as_tensor(item_features, dtype=torch.float32))
        n_rows, dim = item_features.shape
        self.pad_id = n_rows - 1
        self.item_bias = nn.Embedding(n_rows, 1, padding_idx=self.pad_id)
        nn.init.zeros_(self.item_bias.weight)
        # Without item features the model is the item bias alone (a learned popularity).
        self.linear = nn.Linear(2 * dim, 1) if dim else None
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed

    def logits(self, history: Tensor, shown: Tensor) -> Tensor:
        bias = self.item_bias(shown).squeeze(-1)
        if self.linear is None:
            return bias
        f_hist = self.features[history]
        real = (history != self.pad_id).to(f_hist.dtype)[:, :, None]
        mean_hist = (f_hist * real).sum(1) / real.sum(1).clamp(min=1.0)
        f = self.features[shown]
        x = torch.cat([f, mean_hist[:, None, :] * f], dim=-1)
        return self.linear(x).squeeze(-1) + bias

    def fit(self, train: DisplaySetArrays) -> LogisticClickModel:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            order = rng.permutation(len(train))
            for lo in range(0, len(order), self.batch_size):
                b = train.tensors(order[lo : lo + self.batch_size])
                logits = self.logits(b["history"], b["shown"])
                label = torch.zeros_like(logits)
                rows = torch.nonzero(b["click"] >= 0).squeeze(1)
                label[rows, b["click"][rows]] = 1.0
                loss = nn.functional.binary_cross_entropy_with_logits(
                    logits[b["shown_mask"]], label[b["shown_mask"]]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return self

    @torch.no_grad()
    def scores(self, data: DisplaySetArrays) -> Tensor:
        out = [
            self.logits(b["history"], b["shown"])
            for b in (data.tensors(slice(lo, lo + 4096)) for lo in range(0, len(data), 4096))
        ]
        return torch.cat(out) if out else torch.empty(0, data.shown.shape[1])


def softmax_log_likelihood(scores: Tensor, data: DisplaySetArrays) -> float:
    """Mean log-probability of the clicked slot when ``scores`` are used as logits of a
    choice among the shown items (clicked page views only) — for models that are not
    choice models, this scores the ranking signal on the likelihood scale."""
    t = data.tensors()
    rows = t["click"] >= 0
    logp = torch.log_softmax(scores[rows].masked_fill(~t["shown_mask"][rows], -math.inf), dim=1)
    return float(logp.gather(1, t["click"][rows][:, None]).mean())
