"""Offline full-ranking evaluation of a prepared split (Xin et al. 2020/2022; SPEC §2).

Every transition of the split is one event: its state (the previous ``L`` items) is scored
against the whole catalogue by a ``score_fn`` and the rank of the true item gives HR@k,
NDCG@k (per click / purchase events) and reward@k, computed batch by batch with
``models.evaluation.ranking`` (sums, merged, finalised once).

A split is read from parquet once (``load_eval_split``) into compact torch tensors; hold on
to the ``EvalData`` and call ``evaluate`` as often as needed (periodic validation does not
re-read parquet). ``EvalConfig.max_rows`` evaluates a fixed prefix of the split, in
(session, step) order, for cheap validation during training.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import Tensor

from models import batch as B
from models.evaluation.ranking import (
    DEFAULT_KS,
    finalize_ranking,
    merge_sums,
    ranking_sums,
)
from pipelines.prepare.meta import read_meta
from pipelines.prepare.reading import resolve_filesystem
from pipelines.prepare.stages import list_to_matrix

logger = logging.getLogger(__name__)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score_fn(state [B, L] int32, state_len [B] int32) -> scores [B, n_items]`` (float).
Called under ``torch.inference_mode()``; put the model in ``eval()`` mode before."""


@dataclass(frozen=True)
class EvalConfig:
    """Offline evaluation protocol of SPEC §2 (Xin et al. 2020, "Self-supervised RL for
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
    """Full-ranking metrics of ``score_fn`` on ``data`` (SPEC §2).

    Batches of ``config.batch_size`` events are moved to ``device`` (default: where ``data``
    lives), scored, ranked and reduced to sums on that device; the only host
    synchronisation is at the end. Returns ``hr_{k}_{click|purchase}``,
    ``ndcg_{k}_{click|purchase}`` (NaN when the evaluated rows have no event of that type),
    ``reward_{k}`` (a total over the evaluated rows), ``eval_rows`` and ``eval_seconds``.
    """
    config = config or EvalConfig()
    rows = data.num_rows if config.max_rows is None else min(config.max_rows, data.num_rows)
    if rows == 0:
        raise ValueError(f"split {data.split!r} has no rows to evaluate")
    start = time.perf_counter()
    totals: dict[str, Tensor] = {}
    with torch.inference_mode():
        for lo in range(0, rows, config.batch_size):
            hi = min(lo + config.batch_size, rows)
            state = data.state[lo:hi].to(device, non_blocking=True)
            state_len = data.state_len[lo:hi].to(device, non_blocking=True)
            scores = score_fn(state, state_len)
            if scores.shape != (hi - lo, data.n_items):
                raise ValueError(
                    f"score_fn returned scores of shape {tuple(scores.shape)}; expected "
                    f"[{hi - lo}, {data.n_items}] (batch, n_items: every item, no pad column)"
                )
            sums = ranking_sums(
                scores,
                data.action[lo:hi].to(scores.device, non_blocking=True),
                data.is_buy[lo:hi].to(scores.device, non_blocking=True),
                data.reward[lo:hi].to(scores.device, non_blocking=True),
                ks=config.ks,
                seen=state if config.exclude_seen else None,
            )
            totals = merge_sums(totals, sums)
    metrics = finalize_ranking(totals)  # float() of each total: the one synchronisation
    seconds = time.perf_counter() - start
    metrics["eval_rows"] = float(rows)
    metrics["eval_seconds"] = seconds
    logger.debug("evaluated %d events of %r in %.2f s", rows, data.split, seconds)
    return metrics


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
