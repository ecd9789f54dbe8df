"""Seeded generator of logged e-commerce sessions from a known user model.

The default dataset of recrl: sessions in the input schema of design.md §1, drawn from a user model
whose parameters are saved next to the data, so what a recommender learns can be checked.

Model (internal item index ``i = 0..I-1``; ``normalize`` maps to the unit sphere of ``R^d``;
every ``g`` is a fresh ``N(0, I_d)`` draw):

* categories: unit centroids ``c_k``, ``k < n_categories``; item ``i`` has a uniform category
  ``k(i)`` and embedding ``v_i = normalize(c_k(i) + category_spread · g / √d)``;
* popularity ``p_i ∝ rank_i^-zipf_exponent``, ranks a random permutation of ``1..I``;
* user taste ``u = normalize(c_k + user_spread · g / √d)`` around a uniform favourite ``k``;
* a session has a uniform user, ``min(Geometric(1 / mean_session_length), max_session_length)``
  clicks and initial taste ``s_0 = normalize(u + session_spread · g / √d)``;
* click ``t`` picks item ``i`` with probability ``∝ p_i^popularity_weight · exp(s_t·v_i / T)``,
  ``T = choice_temperature`` (exact inverse-CDF sampling);
* the taste moves toward the clicked item and takes a random-walk step — the sequential signal:
  ``s_{t+1} = normalize((1 - click_pull) · s_t + click_pull · v_i + taste_drift · g / √d)``;
* a click is followed by a separate ``purchase`` row of the same item 1–20 s later (buys are
  separate events, as in YooChoose) with probability ``σ(purchase_affinity_scale · s_t·v_i + b)``;
  ``b`` is calibrated on a pilot run so that purchases are ≈ ``purchase_rate`` of all rows;
* the next click comes a log-normal dwell time (median 30 s, at least 1 s) after the previous
  row, so timestamps strictly increase within a session; sessions start uniformly over
  ``time_span_days`` from ``start_time``.

Randomness is drawn per block of `SESSIONS_PER_BLOCK` sessions from
``SeedSequence(seed, spawn_key=(1, block))`` and the choice kernel avoids BLAS (whose rounding
depends on batch shape and thread count), so the output depends on the config alone — not on
the chunk size used to generate or write it. Same config and library versions ⇒ same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

logger = logging.getLogger(__name__)

SESSIONS_PER_BLOCK = 1024
"""Sessions per RNG block; part of the generative definition (changing it changes the data)."""
_WORLD_STREAM, _BLOCK_STREAM, _PILOT_STREAM = 0, 1, 2
_PILOT_SESSIONS = 1024
_CDF_BLOCK = 32  # items per block of the two-level CDF search
_ROWS_PER_BATCH = 1024  # sessions per choice-kernel batch (keeps [rows, items] in cache)
_NS = 1_000_000_000
_MEDIAN_DWELL_S, _PURCHASE_DELAY_S, _PRICE_MEDIAN = 30.0, (1.0, 20.0), 20.0

COLUMNS = ("session_id", "user_id", "timestamp", "item_id", "event", "category", "price")
ARROW_SCHEMA = pa.schema(
    [(name, pa.int64()) for name in COLUMNS[:4]]
    + [("event", pa.string()), ("category", pa.int64()), ("price", pa.float64())]
)
"""Parquet schema of the sessions (design.md §1; ``timestamp`` in ns since the epoch, UTC)."""


@dataclasses.dataclass(frozen=True)
class SessionGeneratorConfig:
    """Settings of the synthetic session generator (the model is in the module docstring)."""

    seed: int = 0
    """Root seed; the same config gives the same output."""
    n_sessions: int = 5000
    """Number of sessions."""
    n_items: int = 1000
    """Catalogue size."""
    n_users: int = 1500
    """Number of users; each session belongs to a uniformly drawn one."""
    latent_dim: int = 16
    """Dimension ``d`` of item embeddings and tastes."""
    n_categories: int = 20
    """Number of item topics (the ``category`` column)."""
    category_spread: float = 0.7
    """Spread of item embeddings around their category centroid."""
    user_spread: float = 0.8
    """Spread of a user's long-term taste around their favourite category centroid."""
    session_spread: float = 0.5
    """Spread of a session's initial taste around its user's long-term taste."""
    zipf_exponent: float = 1.1
    """Item popularity ``p ∝ rank^-zipf_exponent``."""
    popularity_weight: float = 0.7
    """Exponent ``a`` of popularity in the choice rule ``p_i^a · exp(s·v_i / T)``."""
    choice_temperature: float = 0.15
    """Temperature ``T`` of the taste term; lower is more taste-driven."""
    mean_session_length: float = 8.0
    """Mean of the geometric number of clicks per session, before the cap."""
    max_session_length: int = 50
    """Cap on the number of clicks per session."""
    taste_drift: float = 0.25
    """Scale of the random-walk step of the session taste after each click."""
    click_pull: float = 0.5
    """Weight of the clicked item's embedding in the next taste (0: no sequential pull)."""
    purchase_rate: float = 0.03
    """Target fraction of rows that are purchases."""
    purchase_affinity_scale: float = 4.0
    """Slope of the purchase log-odds in the affinity ``s_t·v_i`` of the clicked item."""
    start_time: int = 1_704_067_200 * _NS
    """Earliest session start, ns since the epoch (2024-01-01 00:00 UTC)."""
    time_span_days: float = 30.0
    """Sessions start uniformly over this many days."""

    def __post_init__(self) -> None:
        checks = [
            ("seed", self.seed >= 0, ">= 0"),
            ("n_sessions", self.n_sessions >= 1, ">= 1"),
            ("n_items", self.n_items >= 2, ">= 2"),
            ("n_users", self.n_users >= 1, ">= 1"),
            ("latent_dim", self.latent_dim >= 2, ">= 2"),
            ("n_categories", 1 <= self.n_categories <= self.n_items, "in [1, n_items]"),
            ("category_spread", self.category_spread >= 0, ">= 0"),
            ("user_spread", self.user_spread >= 0, ">= 0"),
            ("session_spread", self.session_spread >= 0, ">= 0"),
            ("zipf_exponent", self.zipf_exponent >= 0, ">= 0 (0 = uniform popularity)"),
            ("popularity_weight", self.popularity_weight >= 0, ">= 0"),
            ("choice_temperature", self.choice_temperature >= 0.01, ">= 0.01"),
            ("max_session_length", self.max_session_length >= 1, ">= 1"),
            (
                "mean_session_length",
                1 <= self.mean_session_length <= self.max_session_length,
                "in [1, max_session_length]",
            ),
            ("taste_drift", self.taste_drift >= 0, ">= 0"),
            ("click_pull", 0 <= self.click_pull <= 1, "in [0, 1]"),
            ("purchase_rate", 0 <= self.purchase_rate < 1, "in [0, 1)"),
            ("purchase_affinity_scale", self.purchase_affinity_scale >= 0, ">= 0"),
            ("start_time", self.start_time >= 0, ">= 0 (ns since the epoch)"),
            ("time_span_days", self.time_span_days > 0, "> 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"SessionGeneratorConfig.{name} = {value!r}: must be {rule}")


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """Parameters of the user model, indexed by internal item index ``0..n_items-1``."""

    item_embeddings: np.ndarray
    """float32 [I, d]: unit vectors ``v_i``."""
    item_ids: np.ndarray
    """int64 [I]: the ``item_id`` written for internal index ``i`` (``100000 + 7·i``)."""
    popularity: np.ndarray
    """float64 [I]: ``p_i``, sums to 1."""
    categories: np.ndarray
    """int64 [I]: category of each item."""
    prices: np.ndarray
    """float64 [I]: price of each item."""
    category_centroids: np.ndarray
    """float32 [K, d]: unit category centroids ``c_k``."""
    user_tastes: np.ndarray
    """float32 [n_users, d]: long-term tastes ``u``; ``user_id`` is the row index."""
    purchase_bias: float
    """Calibrated bias ``b`` of the purchase log-odds (-inf when ``purchase_rate`` = 0)."""


def _default_threads() -> int:
    return min(4, os.cpu_count() or 1)


def _perturb(centres: np.ndarray, noise: np.ndarray, spread: float) -> np.ndarray:
    """``normalize(centres + spread · noise / √d)`` as float32."""
    x = centres + (spread / math.sqrt(centres.shape[-1])) * noise
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _Draws:
    """Random numbers of a run of sessions; per-click arrays are flat and session-major."""

    users: np.ndarray  # int64 [n]
    lengths: np.ndarray  # int64 [n], clicks per session
    starts: np.ndarray  # int64 [n], ns
    session_noise: np.ndarray  # float32 [n, d]
    choice_u: np.ndarray  # float32 [N]
    drift_noise: np.ndarray  # float32 [N, d]
    purchase_u: np.ndarray  # float64 [N]
    dwell_ns: np.ndarray  # int64 [N], gap before the click (ignored for a session's first)
    delay_ns: np.ndarray  # int64 [N], gap between the click and its purchase


def _draw(config: SessionGeneratorConfig, stream: int, block: int, n: int) -> _Draws:
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(stream, block)))
    d = config.latent_dim
    users = rng.integers(0, config.n_users, size=n)
    geometric = rng.geometric(1.0 / config.mean_session_length, size=n)
    lengths = np.minimum(geometric, config.max_session_length)
    starts = config.start_time + (rng.random(n) * config.time_span_days * 86_400 * _NS).astype(
        np.int64
    )
    session_noise = rng.standard_normal((n, d), dtype=np.float32)
    total = int(lengths.sum())
    dwell_s = _MEDIAN_DWELL_S * np.exp(rng.standard_normal(total))
    lo, hi = _PURCHASE_DELAY_S
    return _Draws(
        users=users,
        lengths=lengths,
        starts=starts,
        session_noise=session_noise,
        choice_u=rng.random(total, dtype=np.float32),
        drift_noise=rng.standard_normal((total, d), dtype=np.float32),
        purchase_u=rng.random(total),
        dwell_ns=(np.maximum(dwell_s, 1.0) * _NS).astype(np.int64),
        delay_ns=((lo + (hi - lo) * rng.random(total)) * _NS).astype(np.int64),
    )


class _ChoiceSampler:
    """Exact inverse-CDF sampling of ``i ∝ p_i^a · exp(s·v_i / T)`` for a batch of tastes.

    The catalogue is padded to blocks of ``_CDF_BLOCK`` items; the CDF is searched over block
    sums, then inside the chosen block, so no full-row ``cumsum`` is needed. Logits come from
    ``einsum`` (a fixed summation order per row), not BLAS, so a row's result does not depend
    on the other rows or on thread counts.
    """

    def __init__(
        self, config: SessionGeneratorConfig, embeddings: np.ndarray, p: np.ndarray, threads: int
    ):
        n_items, d = embeddings.shape
        table = np.zeros((d + 1, -(-n_items // _CDF_BLOCK) * _CDF_BLOCK), dtype=np.float32)
        table[:d, :n_items] = embeddings.T / config.choice_temperature
        table[d, :] = -1e4  # padding items: weight 0 after the clip at -80 below
        table[d, :n_items] = config.popularity_weight * np.log(p)
        self._table = table
        self._n_items = n_items
        self._threads = threads

    def sample(self, tastes: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """tastes: float32 [n, d]; uniforms: float32 [n] in [0, 1) → int64 [n] item indices."""
        aug = np.ones((tastes.shape[0], tastes.shape[1] + 1), dtype=np.float32)
        aug[:, :-1] = tastes
        batches = [slice(lo, lo + _ROWS_PER_BATCH) for lo in range(0, len(aug), _ROWS_PER_BATCH)]
        jobs = [(aug[rows], uniforms[rows]) for rows in batches]
        if len(jobs) > 1 and self._threads > 1:  # numpy releases the GIL in these kernels
            with ThreadPoolExecutor(self._threads) as pool:
                out = np.concatenate(list(pool.map(lambda job: self._sample_rows(*job), jobs)))
        else:
            out = np.concatenate([self._sample_rows(*job) for job in jobs])
        return np.minimum(out, self._n_items - 1)  # float rounding may land on a padding item

    def _sample_rows(self, aug: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        w = np.einsum("nd,di->ni", aug, self._table)  # log-weights [n, padded]
        w -= w.max(axis=1, keepdims=True)
        np.maximum(w, -80.0, out=w)  # weights below e^-80 of the best are moot; no denormals
        np.exp(w, out=w)
        blocks = w.reshape(w.shape[0], -1, _CDF_BLOCK)
        block_cdf = np.cumsum(blocks.sum(axis=2), axis=1)
        target = uniforms * block_cdf[:, -1]
        block = np.minimum((block_cdf < target[:, None]).sum(axis=1), blocks.shape[1] - 1)
        rows = np.arange(w.shape[0])
        before = np.where(block > 0, block_cdf[rows, block - 1], 0.0)
        inner_cdf = np.cumsum(blocks[rows, block], axis=1) + before[:, None]
        inner = np.minimum((inner_cdf < target[:, None]).sum(axis=1), _CDF_BLOCK - 1)
        return block * _CDF_BLOCK + inner


def _simulate_clicks(
    config: SessionGeneratorConfig,
    sampler: _ChoiceSampler,
    embeddings: np.ndarray,
    user_tastes: np.ndarray,
    draws: _Draws,
) -> tuple[np.ndarray, np.ndarray]:
    """Clicked items [N] and affinities ``s_t·v_item`` [N], flat; loops over ``t`` only."""
    offsets = np.cumsum(draws.lengths) - draws.lengths
    state = _perturb(user_tastes[draws.users], draws.session_noise, config.session_spread)
    items = np.empty(int(draws.lengths.sum()), dtype=np.int64)
    affinity = np.empty(items.shape[0], dtype=np.float32)
    active = np.arange(draws.lengths.shape[0])
    pull = np.float32(config.click_pull)
    for t in range(int(draws.lengths.max(initial=0))):
        active = active[draws.lengths[active] > t]
        flat = offsets[active] + t
        s = state[active]
        chosen = sampler.sample(s, draws.choice_u[flat])
        v = embeddings[chosen]
        items[flat] = chosen
        affinity[flat] = np.einsum("nd,nd->n", s, v)
        step = _perturb((1 - pull) * s + pull * v, draws.drift_noise[flat], config.taste_drift)
        state[active] = step
    return items, affinity


def _calibrate_purchase_bias(config: SessionGeneratorConfig, affinity: np.ndarray) -> float:
    """Bias ``b`` with mean σ(scale·affinity + b) = rate / (1 - rate) purchases per click."""
    if config.purchase_rate == 0:
        return -math.inf
    target = config.purchase_rate / (1 - config.purchase_rate)
    x = config.purchase_affinity_scale * affinity.astype(np.float64)
    lo, hi = -60.0, 60.0
    for _ in range(60):  # bisection: the mean is increasing in b
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(x + mid)))) < target else (lo, mid)
    return 0.5 * (lo + hi)


def build_ground_truth(config: SessionGeneratorConfig) -> GroundTruth:
    """Draw the user model of ``config`` and calibrate the purchase bias on a pilot run."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_WORLD_STREAM,)))
    d, n_items, k = config.latent_dim, config.n_items, config.n_categories
    centroids = rng.standard_normal((k, d))
    centroids = (centroids / np.linalg.norm(centroids, axis=1, keepdims=True)).astype(np.float32)
    categories = rng.integers(0, k, size=n_items)
    noise = rng.standard_normal((n_items, d))
    embeddings = _perturb(centroids[categories], noise, config.category_spread)
    ranks = rng.permutation(n_items) + 1.0
    popularity = ranks**-config.zipf_exponent / np.sum(ranks**-config.zipf_exponent)
    log_price = rng.normal(0.0, 0.7, size=k)[categories] + rng.normal(0.0, 0.3, size=n_items)
    favourites = centroids[rng.integers(0, k, size=config.n_users)]
    tastes = _perturb(favourites, rng.standard_normal((config.n_users, d)), config.user_spread)
    pilot = _draw(config, _PILOT_STREAM, 0, _PILOT_SESSIONS)
    sampler = _ChoiceSampler(config, embeddings, popularity, _default_threads())
    _, affinity = _simulate_clicks(config, sampler, embeddings, tastes, pilot)
    return GroundTruth(
        item_embeddings=embeddings,
        item_ids=100_000 + 7 * np.arange(n_items, dtype=np.int64),
        popularity=popularity,
        categories=categories.astype(np.int64),
        prices=np.round(_PRICE_MEDIAN * np.exp(log_price), 2),
        category_centroids=centroids,
        user_tastes=tastes,
        purchase_bias=_calibrate_purchase_bias(config, affinity),
    )


def _events_frame(
    config: SessionGeneratorConfig,
    truth: GroundTruth,
    draws: _Draws,
    first_session: int,
    threads: int,
) -> pd.DataFrame:
    """Simulate the sessions of ``draws`` and lay them out as design.md §1 rows."""
    sampler = _ChoiceSampler(config, truth.item_embeddings, truth.popularity, threads)
    items, affinity = _simulate_clicks(
        config, sampler, truth.item_embeddings, truth.user_tastes, draws
    )
    logit = config.purchase_affinity_scale * affinity.astype(np.float64) + truth.purchase_bias
    buy = draws.purchase_u < 1 / (1 + np.exp(-logit))
    n_clicks = items.shape[0]
    session = np.repeat(np.arange(draws.lengths.shape[0]), draws.lengths)
    offsets = np.cumsum(draws.lengths) - draws.lengths
    is_first = np.zeros(n_clicks, dtype=bool)
    is_first[offsets] = True
    # Gap before each click: the dwell time, plus the purchase delay if the last click was bought.
    gap = np.where(is_first, 0, draws.dwell_ns)
    gap[1:] += np.where(buy[:-1] & ~is_first[1:], draws.delay_ns[:-1], 0)
    elapsed = np.cumsum(gap)
    click_time = draws.starts[session] + elapsed - elapsed[offsets][session]
    # Each click row is followed by its purchase row, if any.
    click_row = np.arange(n_clicks) + np.cumsum(buy) - buy
    source = np.empty(n_clicks + int(buy.sum()), dtype=np.int64)  # click index of each row
    source[click_row] = np.arange(n_clicks)
    is_purchase = np.zeros(source.shape[0], dtype=bool)
    is_purchase[click_row[buy] + 1] = True
    source[is_purchase] = np.flatnonzero(buy)
    item = items[source]
    return pd.DataFrame(
        {
            "session_id": first_session + 1 + session[source],
            "user_id": draws.users[session[source]],
            "timestamp": click_time[source] + np.where(is_purchase, draws.delay_ns[source], 0),
            "item_id": truth.item_ids[item],
            "event": np.array(["click", "purchase"], dtype=object)[is_purchase.astype(np.int64)],
            "category": truth.categories[item],
            "price": truth.prices[item],
        }
    )


def iter_session_chunks(
    config: SessionGeneratorConfig,
    *,
    sessions_per_chunk: int = 16 * SESSIONS_PER_BLOCK,
    ground_truth: GroundTruth | None = None,
    threads: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the sessions in order, as DataFrames of ``sessions_per_chunk`` sessions each.

    ``sessions_per_chunk`` is rounded up to a multiple of `SESSIONS_PER_BLOCK`; memory is about
    2 kB per session of a chunk plus 4 kB × n_items per thread (default: up to 4). Neither the
    chunk size nor ``threads`` changes the concatenated result.
    ``session_id`` runs from 1 to ``n_sessions``.
    """
    if sessions_per_chunk < 1:
        raise ValueError(f"sessions_per_chunk = {sessions_per_chunk}: must be >= 1")
    truth = ground_truth if ground_truth is not None else build_ground_truth(config)
    n_threads = threads if threads is not None else _default_threads()
    blocks_per_chunk = -(-sessions_per_chunk // SESSIONS_PER_BLOCK)
    n_blocks = -(-config.n_sessions // SESSIONS_PER_BLOCK)
    sizes = np.diff(np.minimum(np.arange(n_blocks + 1) * SESSIONS_PER_BLOCK, config.n_sessions))
    for first in range(0, n_blocks, blocks_per_chunk):
        blocks = range(first, min(first + blocks_per_chunk, n_blocks))
        parts = [_draw(config, _BLOCK_STREAM, b, int(sizes[b])) for b in blocks]
        draws = _Draws(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(_Draws)
            }
        )
        frame = _events_frame(config, truth, draws, first * SESSIONS_PER_BLOCK, n_threads)
        logger.debug("generated sessions from block %d: %d rows", first, len(frame))
        yield frame


def generate_sessions(config: SessionGeneratorConfig) -> pd.DataFrame:
    """All sessions of ``config`` in one DataFrame, sorted by (session_id, timestamp)."""
    return pd.concat(list(iter_session_chunks(config)), ignore_index=True)
