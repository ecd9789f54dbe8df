"""SASRec backbone (Kang & McAuley 2018) as used by every SASRec variant (design.md §3).

States are left-padded: ``state[b, L - state_len[b]:]`` holds the real items, most recent last,
and the positions before it hold ``pad_id = n_items``. Which positions are real is decided from
``state_len`` alone, never from the ids, so whatever sits in a padded slot cannot leak in.

Deliberate differences from the public SASRec-CCQL reference code (design.md §8):
- the final LayerNorm is applied once (the reference applies it twice);
- attention really has ``num_heads`` heads (the reference always uses one);
- pre-LayerNorm on queries, keys and values alike (the original SASRec normalises the queries
  only), and boolean masks through ``scaled_dot_product_attention`` instead of a -2**32 constant;
- an empty history (``state_len == 0``) maps to a learned vector instead of whatever the
  transformer produces from a row of padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SASRecConfig:
    """Hyperparameters of the SASRec encoder and its supervised head (design.md §3).

    The catalogue size ``n_items`` is data, not a hyperparameter: it is passed to
    ``SASRecEncoder`` next to this config (it comes from the prepared ``meta.json``).
    """

    hidden_size: int = 64
    """H: width of item/position embeddings and of every hidden state."""
    max_len: int = 10
    """L: number of past items in a state (must match the prepared transitions)."""
    num_blocks: int = 1
    """Number of transformer blocks."""
    num_heads: int = 1
    """Attention heads per block; ``hidden_size`` must be divisible by it."""
    dropout: float = 0.1
    """Dropout on embeddings, attention weights, and both residual branches."""
    ffn_size: int | None = None
    """Inner width of the position-wise FFN; None means ``hidden_size`` (as in SASRec)."""
    tie_supervised_head: bool = False
    """Score items with the item-embedding table (plus a bias) instead of a separate linear."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` with a hint on how to fix an inconsistent setting."""
        for name in ("hidden_size", "max_len", "num_blocks", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads}); pick e.g. num_heads in "
                f"{[h for h in range(1, 9) if self.hidden_size % h == 0]}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.ffn_size is not None and self.ffn_size < 1:
            raise ValueError(f"ffn_size must be >= 1 or None (= hidden_size), got {self.ffn_size}.")


class MultiHeadSelfAttention(nn.Module):
    """``num_heads``-head self-attention on [B, L, H] with a boolean mask [B, 1, L, L]."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        batch, length, hidden = x.shape
        # [B, L, 3H] -> 3 x [B, heads, L, H / heads]
        q, k, v = (
            self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        )
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(batch, length, hidden))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + Drop(Attn(LN(x)))`` then ``x + Drop(FFN(LN(x)))``."""

    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_size)
        self.attn = MultiHeadSelfAttention(hidden_size, num_heads, dropout)
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, ffn_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_size, hidden_size),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), allowed))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRecEncoder(nn.Module):
    """Left-padded item sequence -> state vector ``s`` [B, H], plus the supervised head.

    ``encode_sequence`` returns the hidden state of every position; ``encode`` (= ``forward``)
    picks the last real position, or the learned ``empty_state`` when ``state_len == 0``.

    Args:
        n_items: catalogue size I; item ids are ``0..I-1``, ``pad_id = I``, ``mask_id = I + 1``.
        config: hyperparameters (defaults of design.md §3).

    The item table has ``I + 1`` rows; row ``pad_id`` is zero and receives no gradient
    (``padding_idx``). The mask token of the contrastive ``mask`` augmentation is a separate
    learned vector (``mask_embedding``), so the item table and the tied head stay ``I + 1``/``I``.
    """

    def __init__(self, n_items: int, config: SASRecConfig | None = None) -> None:
        super().__init__()
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}.")
        self.config = config = config or SASRecConfig()
        self.n_items = n_items
        h = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, h, padding_idx=n_items)
        self.mask_embedding = nn.Parameter(torch.empty(h))
        self.position_embedding = nn.Embedding(config.max_len, h)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(h, config.num_heads, config.ffn_size or h, config.dropout)
            for _ in range(config.num_blocks)
        )
        self.final_norm = nn.LayerNorm(h)
        # State of an empty history; zero at init, so its logits start as the head's bias.
        self.empty_state = nn.Parameter(torch.zeros(h))
        self.supervised_bias = nn.Parameter(torch.zeros(n_items))
        self.supervised_weight = (
            None if config.tie_supervised_head else nn.Parameter(torch.empty(n_items, h))
        )
        self.reset_parameters()

    @property
    def pad_id(self) -> int:
        return self.n_items

    @property
    def mask_id(self) -> int:
        """Token id that ``recrl.models.sasrec.augment.mask`` should write into masked positions."""
        return self.n_items + 1

    def reset_parameters(self) -> None:
        std = self.config.hidden_size**-0.5  # scaled by sqrt(H) in `embed`: unit variance
        nn.init.normal_(self.item_embedding.weight, std=std)
        with torch.no_grad():
            self.item_embedding.weight[self.pad_id].zero_()
        nn.init.normal_(self.mask_embedding, std=std)
        nn.init.normal_(self.position_embedding.weight, std=std)
        if self.supervised_weight is not None:
            nn.init.normal_(self.supervised_weight, std=std)

    def real_positions(self, state_len: Tensor) -> Tensor:
        """Bool [B, L]: True where a position holds a real item (the last ``state_len``)."""
        positions = torch.arange(self.config.max_len, device=state_len.device)
        return positions >= self.config.max_len - state_len.unsqueeze(1)

    def embed(self, state: Tensor, real: Tensor) -> Tensor:
        """[B, L] ids -> [B, L, H]: sqrt(H)·item + position, zero at padded positions."""
        is_mask = state == self.mask_id
        items = self.item_embedding(state.masked_fill(is_mask, self.pad_id).long())
        items = torch.where(is_mask.unsqueeze(-1), self.mask_embedding, items)
        x = items * math.sqrt(self.config.hidden_size) + self.position_embedding.weight
        return self.embedding_dropout(x) * real.unsqueeze(-1)

    def attention_mask(self, real: Tensor) -> Tensor:
        """Bool [B, 1, L, L], True = query i may attend key j.

        Causal (j <= i) and j must be real. A padded query has no real key at or before it, so
        it is also allowed its own position: every softmax row then has at least one allowed
        entry and no NaN appears, while real queries still never see a padded key.
        """
        length = real.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=real.device)
        return (causal & (real.unsqueeze(1) | eye)).unsqueeze(1)

    def encode_sequence(self, state: Tensor, state_len: Tensor) -> Tensor:
        """Hidden states of all positions, [B, L, H] (final LayerNorm applied once).

        Padded positions carry finite values that depend on nothing but the parameters; use
        ``encode`` for the state vector.
        """
        if state.shape[-1] != self.config.max_len:
            raise ValueError(
                f"state has length {state.shape[-1]} but SASRecConfig.max_len is "
                f"{self.config.max_len}; prepare the data and configure the model with the same L."
            )
        real = self.real_positions(state_len)
        allowed = self.attention_mask(real)
        x = self.embed(state, real)
        for block in self.blocks:
            x = block(x, allowed) * real.unsqueeze(-1)
        return self.final_norm(x)

    def encode(self, state: Tensor, state_len: Tensor) -> Tensor:
        """State vector ``s`` [B, H] from ``state`` [B, L] (int) and ``state_len`` [B] (int).

        Left padding puts the last real item at position L-1 for every non-empty row;
        ``state_len`` must lie in ``[0, L]`` (not checked here to avoid a device sync).
        """
        last = self.encode_sequence(state, state_len)[:, -1]
        return torch.where((state_len == 0).unsqueeze(-1), self.empty_state, last)

    def forward(self, state: Tensor, state_len: Tensor) -> Tensor:
        return self.encode(state, state_len)

    def supervised_logits(self, s: Tensor) -> Tensor:
        """Logits over the catalogue [B, I] from ``s`` [B, H]; the pad id gets no score."""
        weight = self.supervised_weight
        if weight is None:
            weight = self.item_embedding.weight[: self.n_items]
        return F.linear(s, weight, self.supervised_bias)

    def score_all(self, state: Tensor, state_len: Tensor) -> Tensor:
        """Supervised-head scores of every item [B, I] for full ranking (design.md §2)."""
        return self.supervised_logits(self.encode(state, state_len))


class QHead(nn.Module):
    """Q(s, ·) for every item: a linear map [B, H] -> [B, I] (design.md §3, "Q head").

    ``forward`` scores the whole catalogue; `at` scores a few items per row, which is all a
    TD, CQL or SA2C term reads, at a cost independent of I.
    """

    def __init__(self, hidden_size: int, n_items: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, n_items)

    def forward(self, s: Tensor) -> Tensor:
        return self.linear(s)

    def at(self, s: Tensor, items: Tensor) -> Tensor:
        """Q(s_b, items[b, k]) [B, K] from ``s`` [B, H] and ``items`` [B, K] (int)."""
        return linear_columns(s, self.linear.weight, self.linear.bias, items)

    @torch.no_grad()
    def greedy(self, s: Tensor, rows: int = 64) -> Tensor:
        """``argmax_a Q(s_b, a)`` [B] over every item, ``rows`` rows of ``s`` [B, H] at a time.

        The same products and ties (lowest item id) as ``forward(s).argmax(1)``, but each
        [rows, I] block is reduced while it is still in cache and its memory is reused by
        the next block; a whole [B, I] block is written out and read back (and, at 36 MB
        for B = 512, I = 17,834, freshly mapped on every call by the C allocator), which on
        a CPU costs as much again as the product.
        """
        return torch.cat([self.linear(block).argmax(dim=1) for block in s.split(rows)])

    @torch.no_grad()
    def mean(self, s: Tensor) -> Tensor:
        """Mean of Q(s, ·) over the rows of ``s`` [B, H] and every item, a detached scalar.

        Q is linear in s, so ``mean_{b,i} (W_i·s_b + c_i) = mean_b(s_b)·mean_i(W_i) +
        mean_i(c_i)``: a diagnostic without the [B, I] product.
        """
        weight, bias = self.linear.weight.float(), self.linear.bias.float()
        return (s.float().mean(dim=0) * weight.mean(dim=0)).sum() + bias.mean()


def linear_columns(s: Tensor, weight: Tensor, bias: Tensor, items: Tensor) -> Tensor:
    """Columns ``items`` of ``F.linear(s, weight, bias)`` without the full product.

    ``out[b, k] = s_b · weight[items[b, k]] + bias[items[b, k]]``; shapes ``s`` [B, H],
    ``weight`` [I, H], ``bias`` [I], ``items`` [B, K] int -> [B, K] in float32. Only the K
    rows of each sample are read (and receive gradient), so the cost is B·K·H instead of
    B·I·H. Products and sums are elementwise, so autocast leaves them in float32.
    """
    items = items.long()
    rows = F.embedding(items, weight)  # [B, K, H]
    return (rows.float() * s.float().unsqueeze(1)).sum(dim=-1) + bias[items].float()
