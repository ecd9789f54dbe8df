"""Offline full-ranking evaluation of a prepared split (Xin et al. 2020/2022; design.md §2).

Every transition of the split is one event: its state (the previous ``L`` items) is scored
against the whole catalogue by a ``score_fn`` and the rank of the true item (the pessimistic
rank of ``recrl.models.evaluation.true_item_ranks``) gives HR@k, NDCG@k (per click / purchase
events) and reward@k. Batch by batch, only exact counts are kept: how many events of each
type have rank 1, 2, ..., max(k), and the reward of the hits at each k. The metrics are
computed from those counts once, at the end, with the NDCG gains summed exactly, so they do
not depend on the batch size, and an event's rank is all they depend on.

A split is read from parquet once (``load_eval_split``) into compact torch tensors; hold on
to the ``EvalData`` and call ``evaluate`` as often as needed (periodic validation does not
re-read parquet). ``EvalConfig.max_rows`` evaluates a fixed prefix of the split, in
(session, step) order, for cheap validation during training.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import torch
from recrl.models import batch as B
from recrl.models.evaluation.ranking import DEFAULT_KS, EVENTS, true_item_ranks
from recrl.pipelines.prepare.meta import read_meta
from recrl.pipelines.prepare.reading import resolve_filesystem
from recrl.pipelines.prepare.stages import list_to_matrix
from torch import Tensor

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(state [B, L] int32, state_len [B] int32) -> scores [B, n_items]`` (float).
Called under ``torch.inference_mode()``; put the model in ``eval()`` mode before."""


@dataclass(frozen=True)
class EvalConfig:
    """Offline evaluation protocol of design.md §2 (Xin et al. 2020, "Self-supervised RL for
    recommender systems", §4.1): rank all items for each event, HR/NDCG@k per event type
    and reward@k = Σ over hits of the event's reward."""

    batch_size: int = 1024
    """Events scored per ``score_fn`` call (memory: batch_size × n_items scores)."""
    ks: tuple[int, ...] = DEFAULT_KS
    """Cut-offs k of HR@k, NDCG@k and reward@k."""
    exclude_seen: bool = False
    """Remove the items of the state from the ranking (a seen target is then a miss)."""
    max_rows: int | None = None
    """None: every row of the split; N: the first N rows in (session, step) order — a fixed,
    deterministic subset for cheap periodic validation."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs such as (5, 10, 20), got {self.ks}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be None (all rows) or >= 1, got {self.max_rows}")


@dataclass(frozen=True)
class EvalData:
    """The columns of one split that evaluation needs, rows in (session, step) order.

    Shapes: ``state`` [N, L] int32 (padded with ``pad_id``), ``state_len`` [N] int32,
    ``action`` [N] int32, ``is_buy`` [N] bool, ``reward`` [N] float32 — about
    ``4·(L + 3) + 1`` bytes per event (~60 MB for 1 M events with L = 10).
    """

    state: Tensor
    state_len: Tensor
    action: Tensor
    is_buy: Tensor
    reward: Tensor
    n_items: int
    pad_id: int
    split: str = ""

    @property
    def num_rows(self) -> int:
        return int(self.action.shape[0])

    def head(self, rows: int) -> EvalData:
        """The first ``rows`` events (views, no copy)."""
        fields = {
            name: getattr(self, name)[:rows]
            for name in ("state", "state_len", "action", "is_buy", "reward")
        }
        return EvalData(**fields, n_items=self.n_items, pad_id=self.pad_id, split=self.split)


_COLUMNS = (B.SESSION_ID, B.STEP, B.STATE, B.STATE_LEN, B.ACTION, B.IS_BUY, B.REWARD)


def load_eval_split(dataset_dir: str | os.PathLike, split: str) -> EvalData:
    """Read ``{dataset_dir}/{split}/`` (parquet shards of ``recrl prepare``) once.

    Only the columns evaluation needs are read; rows are sorted by (session_id, step) so
    that ``max_rows`` prefixes do not depend on how the shards were written. ``n_items`` and
    ``pad_id`` come from ``meta.json``. Local paths and ``s3://``/``gs://`` URIs work.
    """
    dataset_dir = os.fspath(dataset_dir)
    meta = read_meta(dataset_dir)
    fs, path = resolve_filesystem(dataset_dir)
    table = pq.read_table(f"{path.rstrip('/')}/{split}", columns=list(_COLUMNS), filesystem=fs)
    session = table.column(B.SESSION_ID).to_numpy()
    step = table.column(B.STEP).to_numpy()
    order = np.lexsort((step, session))  # session first, then step

    def column(name: str, dtype: np.dtype) -> Tensor:
        values = table.column(name).to_numpy(zero_copy_only=False)
        return torch.from_numpy(np.ascontiguousarray(values[order], dtype=dtype))

    state = list_to_matrix(table.column(B.STATE))[order]  # a fresh int32 [N, L] copy
    data = EvalData(
        state=torch.from_numpy(np.ascontiguousarray(state, dtype=np.int32)),
        state_len=column(B.STATE_LEN, np.int32),
        action=column(B.ACTION, np.int32),
        is_buy=column(B.IS_BUY, np.bool_),
        reward=column(B.REWARD, np.float32),
        n_items=int(meta["n_items"]),
        pad_id=int(meta["pad_id"]),
        split=split,
    )
    logger.info(
        "loaded %s/%s: %d events, %d items", dataset_dir, split, data.num_rows, data.n_items
    )
    return data


def evaluate(
    score_fn: ScoreFn,
    data: EvalData,
    config: EvalConfig | None = None,
    *,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Full-ranking metrics of ``score_fn`` on ``data`` (design.md §2).

    The evaluated rows are moved to ``device`` (default: where ``data`` lives) once, scored
    in batches of ``config.batch_size`` and reduced to counts on that device; the only host
    synchronisation is at the end. Returns ``hr_{k}_{click|purchase}``,
    ``ndcg_{k}_{click|purchase}`` (NaN when the evaluated rows have no event of that type),
    ``reward_{k}`` (a total over the evaluated rows), ``eval_rows`` and ``eval_seconds``.
    """
    config = config or EvalConfig()
    rows = data.num_rows if config.max_rows is None else min(config.max_rows, data.num_rows)
    if rows == 0:
        raise ValueError(f"split {data.split!r} has no rows to evaluate")
    start = time.perf_counter()
    ks = config.ks
    with torch.inference_mode():
        state = data.state[:rows].to(device, non_blocking=True)
        state_len = data.state_len[:rows].to(device, non_blocking=True)
        ranks = action = None
        for lo in range(0, rows, config.batch_size):
            hi = min(lo + config.batch_size, rows)
            scores = score_fn(state[lo:hi], state_len[lo:hi])
            if scores.shape != (hi - lo, data.n_items):
                raise ValueError(
                    f"score_fn returned scores of shape {tuple(scores.shape)}; expected "
                    f"[{hi - lo}, {data.n_items}] (batch, n_items: every item, no pad column)"
                )
            if ranks is None:  # the score function decides the device
                ranks = torch.empty(rows, dtype=torch.long, device=scores.device)
                action = data.action[:rows].to(scores.device, non_blocking=True)
            seen = state[lo:hi] if config.exclude_seen else None
            # [B] ranks only: no per-batch reductions, and the metrics come from all of them
            ranks[lo:hi] = true_item_ranks(scores, action[lo:hi], seen)
        counts, rewards = rank_counts(
            ranks,
            data.is_buy[:rows].to(ranks.device, non_blocking=True),
            data.reward[:rows].to(ranks.device, non_blocking=True),
            ks,
        )
        metrics = ranking_metrics(counts.cpu(), rewards.cpu(), ks)  # the one synchronisation
    seconds = time.perf_counter() - start
    metrics["eval_rows"] = float(rows)
    metrics["eval_seconds"] = seconds
    logger.debug("evaluated %d events of %r in %.2f s", rows, data.split, seconds)
    return metrics


def rank_counts(
    ranks: Tensor, is_buy: Tensor, reward: Tensor, ks: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Exact sufficient statistics of HR/NDCG/reward@k for ``ks`` from the true items' ranks.

    ``ranks`` [N] int (1-based; anything above ``max(ks)`` is a miss at every k),
    ``is_buy`` [N] bool, ``reward`` [N] float. Returns ``counts`` [2, max(ks) + 2] int64,
    ``counts[e, r]`` = events of type ``EVENTS[e]`` (click, purchase) with rank ``r`` for
    ``1 ≤ r ≤ max(ks)``, ``counts[e, max(ks) + 1]`` those ranked lower (column 0 holds
    nothing: ranks start at 1), and ``rewards`` [len(ks)] float64, the reward of the events
    with rank ≤ k. Integer counts add up exactly in any order; so do float64 sums of a few
    float32 rewards of similar size, such as r_click and r_buy.
    """
    top = max(ks) + 1
    bins = is_buy.long() * (top + 1) + ranks.clamp(0, top)
    counts = torch.bincount(bins, minlength=2 * (top + 1)).view(2, top + 1)
    cutoffs = torch.tensor(ks, device=ranks.device)
    hits = ranks.unsqueeze(1) <= cutoffs  # [N, len(ks)]
    rewards = (reward.double().unsqueeze(1) * hits).sum(0)
    return counts, rewards


def ranking_metrics(counts: Tensor, rewards: Tensor, ks: Sequence[int]) -> dict[str, float]:
    """``hr_{k}_{event}``, ``ndcg_{k}_{event}`` and ``reward_{k}`` from `rank_counts`.

    HR@k = #(rank ≤ k) / #events and NDCG@k = Σ_{rank ≤ k} 1/log2(rank + 1) / #events of
    each type, NaN without events of that type (Xin et al. 2020 §4.1: one relevant item, so
    IDCG = 1); reward@k is a total, as in Xin et al. The NDCG sum is Σ_r counts[r]·gain(r)
    computed exactly and rounded once, so it is the correctly rounded sum of the events'
    float64 gains ``1 / log2(rank + 1)`` whatever the batching. No ``@`` in names (MLflow
    rejects it).
    """
    top = max(ks)
    ranks = torch.arange(1, top + 1, dtype=torch.float64)
    gains = [Fraction(g) for g in (1.0 / torch.log2(ranks + 1.0)).tolist()]  # [top], exact
    table = counts.tolist()
    out: dict[str, float] = {}
    for i, k in enumerate(ks):
        for event, row in zip(EVENTS, table, strict=True):
            total = sum(row)
            hits = row[1 : k + 1]
            ndcg = sum((n * g for n, g in zip(hits, gains, strict=False) if n), Fraction(0))
            out[f"hr_{k}_{event}"] = sum(hits) / total if total else math.nan
            out[f"ndcg_{k}_{event}"] = float(ndcg) / total if total else math.nan
        out[f"reward_{k}"] = float(rewards[i])
    return out


def evaluate_with_popularity(
    score_fn: ScoreFn,
    data: EvalData,
    item_counts: Sequence[int] | np.ndarray | Tensor,
    config: EvalConfig | None = None,
    *,
    device: str | torch.device | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics of score_fn, metrics of the popularity baseline)``, both from `evaluate` with
    the one ``config``: the baseline is scored on exactly the rows the model is (same
    ``max_rows`` prefix, same ``exclude_seen``), so the two compare like with like."""
    config = config or EvalConfig()
    model = evaluate(score_fn, data, config, device=device)
    baseline = evaluate(popularity_score_fn(item_counts), data, config, device=device)
    return model, baseline


def popularity_score_fn(item_counts: Sequence[int] | np.ndarray | Tensor) -> ScoreFn:
    """The popularity baseline: every state gets the same ranking, most frequent item first.

    ``item_counts`` [n_items] are train-split event counts (``meta.json``
    ``item_counts_train``). Ties are broken deterministically by item id, the lower id
    ranking higher: items are ordered by (count desc, id asc) and item at position p of that
    order scores ``n_items - p``. Scores are thus distinct (exact in float32 up to 2^24
    items), so the pessimistic tie rule of ``true_item_ranks`` never applies and the rank
    of item a is exactly its position in that order, plus one.
    """
    counts = np.asarray(item_counts, dtype=np.int64).reshape(-1)
    n_items = counts.shape[0]
    order = np.lexsort((np.arange(n_items), -counts))  # primary: count desc; then id asc
    row = np.empty(n_items, dtype=np.float32)
    row[order] = np.arange(n_items, 0, -1, dtype=np.float32)
    scores = torch.from_numpy(row)

    def score_fn(state: Tensor, state_len: Tensor) -> Tensor:
        return scores.to(state.device).unsqueeze(0).expand(state.shape[0], n_items)

    return score_fn
