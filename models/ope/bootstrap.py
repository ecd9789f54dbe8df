"""Percentile bootstrap intervals for ratio-of-sums estimators (design.md §9.3).

An estimate $\\hat V = \\sum_i v_i / \\sum_i u_i$ (`RowTerms`) is recomputed on $B$ resamples
of the $n$ rows drawn with replacement; the interval at level $1 - \\alpha$ is the
$\\alpha/2$ and $1 - \\alpha/2$ quantiles of those $B$ values (Efron & Tibshirani 1993,
ch. 13). The reward model is held fixed: the interval covers the sampling of the log given
$\\hat q$, not the refit of $\\hat q$ (as Open Bandit Pipeline's intervals do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from recrl.models.ope.estimators import RowTerms


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval and standard error."""

    value: float
    low: float
    high: float
    std_error: float


def bootstrap_interval(
    terms: RowTerms, *, n_bootstrap: int = 1000, alpha: float = 0.05, seed: int = 0,
    chunk: int = 50,
) -> Interval:  # fmt: skip
    """The estimate of ``terms`` with its percentile interval over ``n_bootstrap`` resamples
    (``chunk`` resamples at a time bound the memory to ``chunk × n`` indices)."""
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be >= 2, got {n_bootstrap}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    n = len(terms.values)
    draws = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        rows = rng.integers(0, n, size=(size, n))
        numerator = terms.values[rows].sum(axis=1)
        denominator = terms.weights[rows].sum(axis=1)
        # a resample whose weights all vanish (SNIPS with no supported row) has no estimate
        with np.errstate(invalid="ignore", divide="ignore"):
            draws[start : start + size] = numerator / denominator
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2]) if draws.size else (np.nan,) * 2
    return Interval(
        value=terms.value, low=float(low), high=float(high),
        std_error=float(draws.std(ddof=1)) if draws.size > 1 else float("nan"),
    )  # fmt: skip
