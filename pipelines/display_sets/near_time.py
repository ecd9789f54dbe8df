"""Shown sets for click logs without impressions: the paper's near-in-time construction.

Chen et al. (2019, §6) simulate each page view of MovieLens as the rated movie plus 39
others, and for Last.fm as the clicked song plus 9 songs "with the nearest time-stamp". Here,
for every click event, the other ``K - 1`` shown items are the distinct items that *other*
users clicked nearest in time (never the clicked item itself, never the user's own events),
so a shown set is what the rest of the catalogue looked like at that moment. The clicked
item then takes a uniformly random slot, so its position carries no signal.

All of it is vectorised over events: events are sorted by time once, and each row looks at
a window of ``±w`` neighbouring events (``w`` grows for the rows that did not find enough
distinct items, up to ``max_window``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CELLS_PER_CHUNK = 4_000_000
"""Bound on rows × window cells processed at once (about 100 MB of int64 temporaries)."""


@dataclass(frozen=True)
class NearTimeSets:
    """Shown sets of the events that found enough neighbours, in input order."""

    rows: np.ndarray
    """int64 [R]: input index of each kept event, ascending."""
    shown: np.ndarray
    """int64 [R, K]: shown items (the clicked one at ``click``)."""
    click: np.ndarray
    """int64 [R]: slot of the clicked item."""
    window: np.ndarray
    """int64 [R]: the ± window that supplied the neighbours."""


def _interleaved_offsets(w: int) -> np.ndarray:
    """``[-1, 1, -2, 2, ...]``: a stable sort by time gap then breaks ties by nearness."""
    steps = np.arange(1, w + 1)
    return np.stack([-steps, steps], axis=1).reshape(-1)


def _rank_in_group(key: np.ndarray) -> np.ndarray:
    """Per row, the 0-based occurrence number of each element among equal ``key`` values,
    counted in column order (e.g. [[5, 7, 5, 5]] → [[0, 0, 1, 2]])."""
    order = np.argsort(key, axis=1, kind="stable")
    s = np.take_along_axis(key, order, axis=1)
    cols = np.broadcast_to(np.arange(key.shape[1]), key.shape)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    rank_sorted = cols - np.maximum.accumulate(np.where(new, cols, 0), axis=1)
    out = np.empty_like(rank_sorted)
    np.put_along_axis(out, order, rank_sorted, axis=1)
    return out


def _neighbours(
    positions: np.ndarray,
    w: int,
    user: np.ndarray,
    time: np.ndarray,
    item: np.ndarray,
    need: int,
    per_user: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For sorted-event ``positions`` [c]: (ok [c], neighbour items [ok.sum(), need])."""
    n = len(user)
    q = positions[:, None] + _interleaved_offsets(w)[None, :]  # [c, 2w]
    inside = (q >= 0) & (q < n)
    qc = np.clip(q, 0, n - 1)
    cand = item[qc]
    valid = inside & (user[qc] != user[positions, None]) & (cand != item[positions, None])
    gap = np.where(valid, np.abs(time[qc] - time[positions, None]), np.iinfo(np.int64).max)
    by_gap = np.argsort(gap, axis=1, kind="stable")
    cand = np.take_along_axis(cand, by_gap, axis=1)
    valid = np.take_along_axis(valid, by_gap, axis=1)
    cand_user = np.take_along_axis(user[qc], by_gap, axis=1)
    # Keep the nearest occurrence of each item (a stable sort keeps gap order among equal
    # keys), then at most ``per_user`` items of any one other user.
    keep = valid & (_rank_in_group(np.where(valid, cand, -1)) == 0)
    keep &= _rank_in_group(np.where(keep, cand_user, -1)) < per_user
    ok = keep.sum(axis=1) >= need
    chosen = keep[ok] & (np.cumsum(keep[ok], axis=1) <= need)
    return ok, cand[ok][chosen].reshape(-1, need)


def near_time_sets(
    user: np.ndarray,
    time: np.ndarray,
    item: np.ndarray,
    *,
    set_size: int,
    seed: int,
    max_window: int = 4096,
    per_user: int | None = None,
) -> NearTimeSets:
    """Build a shown set of ``set_size`` items for every click event that can have one.

    ``user``, ``time`` (int64) and ``item`` (int64, encoded) are aligned [N] arrays in any
    order. An event is left out (the caller counts it as ``short_display_set``) when even
    a window of ``max_window`` events on each side holds fewer than ``set_size - 1``
    distinct items clicked by other users. ``per_user`` caps the items taken from any one
    other user (None: no cap): a set drawn from one other user's burst of clicks shares that
    user's taste, which makes the independent clicked item stand out.
    """
    need = set_size - 1
    n = len(user)
    order = np.lexsort((item, user, time))
    u, t, it = user[order], time[order], item[order]
    neighbours = np.full((n, need), -1, dtype=np.int64)
    window = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    w = max(2 * need, 8)
    while pending.size:
        w = min(w, max_window)
        chunk = max(1, _CELLS_PER_CHUNK // (2 * w))
        still = []
        for lo in range(0, len(pending), chunk):
            part = pending[lo : lo + chunk]
            ok, found = _neighbours(part, w, u, t, it, need, per_user or need)
            neighbours[part[ok]] = found
            window[part[ok]] = w
            still.append(part[~ok])
        pending = np.concatenate(still) if still else pending[:0]
        if w >= max_window:
            break
        w *= 4
    kept_sorted = np.flatnonzero(window > 0)
    rows = order[kept_sorted]
    by_row = np.argsort(rows)
    rows, kept_sorted = rows[by_row], kept_sorted[by_row]
    sets = np.concatenate([it[kept_sorted, None], neighbours[kept_sorted]], axis=1)
    # A random display order per page view; slot of column 0 (the click) is recorded.
    perm = np.argsort(np.random.default_rng(seed).random(sets.shape), axis=1)
    shown = np.take_along_axis(sets, perm, axis=1)
    click = np.argmax(perm == 0, axis=1).astype(np.int64)
    return NearTimeSets(rows=rows, shown=shown, click=click, window=window[kept_sorted])
