"""Networks of the GAN user model (Chen et al. 2019, §4.2, Fig. 2a/b).

``UserModel.encode(history) -> s`` [B, S], ``utility(s, items) -> u`` [B, K] and
``choice_logits(history, shown, mask) -> η·u`` with the no-click option (utility 0) as the
last column [B, K + 1]. Item ``pad_id = n_items`` is padding: its features and embedding
are zero and it is masked out of every choice.
"""

from __future__ import annotations

import numpy as np
import torch
from recrl.models.user_model.config import UserModelConfig
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


class ItemFeatures(nn.Module):
    """f_a = [fixed item features, learned embedding]; the padding row is zero."""

    def __init__(self, features: np.ndarray, embedding_dim: int) -> None:
        super().__init__()
        self.register_buffer("fixed", torch.as_tensor(features, dtype=torch.float32))
        self.pad_id = features.shape[0] - 1
        self.embedding = (
            nn.Embedding(features.shape[0], embedding_dim, padding_idx=self.pad_id)
            if embedding_dim
            else None
        )
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=0.1)
            with torch.no_grad():
                self.embedding.weight[self.pad_id].zero_()
        self.dim = features.shape[1] + embedding_dim
        if self.dim == 0:
            raise ValueError("items need features or a learned embedding (item_embedding_dim > 0)")

    def forward(self, items: Tensor) -> Tensor:
        """items: int64 [...] → float [..., d]."""
        parts = [self.fixed[items]]
        if self.embedding is not None:
            parts.append(self.embedding(items))
        return torch.cat(parts, dim=-1)


class PositionWeightState(nn.Module):
    """Paper eq. 4: s = vec[ELU(Fᵀ W + B)] with F = [f_{t-m}, …, f_{t-1}] ∈ R^{d×m}.

    W ∈ R^{m×n} (row 0 weighs the oldest lag, row m-1 the latest click), B ∈ R^{d×n};
    ``vec`` stacks the n columns, so s[j·d:(j+1)·d] is column j. Padded lags have f = 0.
    """

    def __init__(self, item_dim: int, history_len: int, columns: int) -> None:
        super().__init__()
        # Start near a plain average over lags, so an untrained state is meaningful.
        self.weights = nn.Parameter(1.0 / history_len + 0.1 * torch.randn(history_len, columns))
        self.bias = nn.Parameter(torch.zeros(item_dim, columns))
        self.dim = item_dim * columns

    def forward(self, history_features: Tensor, history_mask: Tensor) -> Tensor:
        """history_features: [B, m, d] (padding rows zero); history_mask unused → [B, d·n]."""
        mixed = torch.einsum("bmd,mn->bdn", history_features, self.weights) + self.bias
        return nn.functional.elu(mixed).transpose(1, 2).reshape(history_features.shape[0], -1)


class LSTMState(nn.Module):
    """s = last hidden state of an LSTM over the real history items, oldest first; a learned
    vector when the history is empty (the LSTM never reads padding)."""

    def __init__(self, item_dim: int, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(item_dim, hidden, batch_first=True)
        self.empty = nn.Parameter(torch.zeros(hidden))
        self.dim = hidden

    def forward(self, history_features: Tensor, history_mask: Tensor) -> Tensor:
        b, m, _ = history_features.shape
        lengths = history_mask.sum(dim=1)
        # Histories are left-padded; shift each row so its real items start at index 0.
        index = (torch.arange(m, device=lengths.device)[None, :] + (m - lengths)[:, None]) % m
        right = torch.gather(
            history_features, 1, index[:, :, None].expand(-1, -1, history_features.shape[2])
        )
        packed = pack_padded_sequence(
            right, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.lstm(packed)
        return torch.where((lengths > 0)[:, None], h[-1], self.empty.expand(b, -1))


class UserModel(nn.Module):
    """State encoder + utility MLP; see the module docstring."""

    def __init__(self, item_features: np.ndarray, config: UserModelConfig) -> None:
        super().__init__()
        self.config = config
        self.items = ItemFeatures(item_features, config.item_embedding_dim)
        self.pad_id = self.items.pad_id
        d = self.items.dim
        self.state = (
            PositionWeightState(d, config.history_len, config.pw_columns)
            if config.state == "pw"
            else LSTMState(d, config.lstm_hidden)
        )
        self.utility_mlp = nn.Sequential(
            nn.Linear(self.state.dim + d, config.utility_hidden),
            nn.ELU(),
            nn.Linear(config.utility_hidden, 1),
        )

    def encode(self, history: Tensor) -> Tensor:
        """history: int64 [B, M] (most recent last, left-padded) → s [B, S]; the last
        ``history_len`` lags are read."""
        history = history[:, -self.config.history_len :]
        mask = history != self.pad_id
        return self.state(self.items(history), mask)

    def utility(self, state: Tensor, items: Tensor) -> Tensor:
        """u(s, a) for state [B, S] and items int64 [B, K] → [B, K].

        The first layer V [s, f_a] + b is computed as (V_s s + b) + V_f f_a, the same
        function as on the concatenation, without repeating s for each of the K items.
        """
        first, activation, last = self.utility_mlp
        s_dim = state.shape[1]
        row = nn.functional.linear(state, first.weight[:, :s_dim], first.bias)  # [B, ℓ]
        per_item = nn.functional.linear(self.items(items), first.weight[:, s_dim:])
        return last(activation(row[:, None, :] + per_item)).squeeze(-1)

    def choice_logits(self, history: Tensor, shown: Tensor, shown_mask: Tensor) -> Tensor:
        """η·u over the shown slots (−inf where masked) and 0 for no-click: [B, K + 1]."""
        u = self.utility(self.encode(history), shown)
        return choice_logits_from_utility(u, shown_mask, self.config.eta)


def choice_logits_from_utility(utility: Tensor, shown_mask: Tensor, eta: float) -> Tensor:
    """[B, K] utilities → [B, K + 1] logits of φ (Lemma 1): η·u, −inf on padded slots, and a
    no-click column of utility 0 (paper §4.1 remark (ii): a constant-reward option)."""
    logits = (eta * utility).masked_fill(~shown_mask, float("-inf"))
    return torch.cat([logits, logits.new_zeros(logits.shape[0], 1)], dim=1)
