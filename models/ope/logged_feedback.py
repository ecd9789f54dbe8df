"""Logged bandit feedback with recorded propensities, and the checks every estimator relies on
(design.md §9.1).

A log is $n$ rows $(x_i, a_i, r_i, \\mu_i)$: the context, the action the behaviour policy
$\\mu$ took, its reward and the recorded propensity $\\mu_i = \\mu(a_i \\mid x_i)$; optionally
the slate position $k_i$ the action was shown at (Open Bandit logs one row per position, and
its propensities are per position). A target policy is its action distribution
$\\pi(\\cdot \\mid x_i)$ for every row: ``[n, A]``, or ``[n, A, K]`` per position, from which
`target_matrix` selects each row's own position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DISTRIBUTION_TOLERANCE = 1e-6
"""How far a target row may sum from 1 (float rounding of a softmax, say)."""


class OPEInputError(ValueError):
    """Logged data or a target policy an estimator cannot use. Names the row (0-based in the
    arrays) and the column, so that a caller reading a file can point at its line."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        self.message = message
        self.row = row
        self.column = column
        where = ", ".join(
            part
            for part in (
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class LoggedFeedback:
    """One log, validated on construction.

    ``actions``: int ``[n]`` in ``0..n_actions-1``; ``rewards``: float ``[n]``;
    ``pscore``: the behaviour propensity of the logged action, float ``[n]`` in ``(0, 1]``;
    ``positions``: int ``[n]`` in ``0..n_positions-1`` or None.
    """

    actions: np.ndarray
    rewards: np.ndarray
    pscore: np.ndarray | None
    n_actions: int
    positions: np.ndarray | None = None
    n_positions: int = 1

    def __post_init__(self) -> None:
        actions = _as_1d(self.actions, "action")
        n = len(actions)
        if n == 0:
            raise OPEInputError("the log has no rows")
        rewards, pscore = checked_outcomes(self.rewards, self.pscore, n)
        if not np.issubdtype(actions.dtype, np.integer):
            _first(actions != np.round(actions), "action", "is not an integer id", actions)
            actions = actions.astype(np.int64)
        _first((actions < 0) | (actions >= self.n_actions), "action",
               f"is outside 0..{self.n_actions - 1}", actions)  # fmt: skip
        positions = self.positions
        if positions is not None:
            positions = _as_1d(positions, "position", n=n).astype(np.int64)
            _first((positions < 0) | (positions >= self.n_positions), "position",
                   f"is outside 0..{self.n_positions - 1}", positions)  # fmt: skip
        object.__setattr__(self, "actions", actions.astype(np.int64))
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "pscore", pscore)
        object.__setattr__(self, "positions", positions)

    @property
    def n(self) -> int:
        return len(self.actions)


def checked_outcomes(rewards, pscore, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``rewards`` and ``pscore`` as float64 ``[n]``, refused (`OPEInputError`, first bad row)
    when the propensities are absent, missing, $\\le 0$ or $> 1$, or a reward is not finite.
    `LoggedFeedback` checks with it, and so do readers that learn the action ids later."""
    if pscore is None:
        raise OPEInputError(
            "the log has no behaviour propensities; off-policy estimates need "
            "μ(a_i|x_i) for every logged action (Open Bandit: propensity_score)",
            column="pscore",
        )
    rewards = _as_1d(rewards, "reward", n=n).astype(np.float64)
    pscore = _as_1d(pscore, "pscore", n=n).astype(np.float64)
    _first(~np.isfinite(rewards), "reward", "is not a finite number", rewards)
    _first(np.isnan(pscore), "pscore", "is missing (a propensity is required)", pscore)
    _first(pscore <= 0, "pscore", "is not > 0: the logged action had no support, so "
           "its weight π/μ is undefined", pscore)  # fmt: skip
    _first(pscore > 1, "pscore", "is above 1, not a probability", pscore)
    return rewards, pscore


def target_matrix(feedback: LoggedFeedback, action_dist: np.ndarray) -> np.ndarray:
    """The target's distribution at each row's own position, ``[n, A]``, checked.

    ``action_dist``: ``[n, A]`` (one distribution per row) or ``[n, A, K]`` (one per position,
    Open Bandit's layout; needs ``feedback.positions``). Each row must be a distribution:
    entries in ``[0, 1]`` summing to 1."""
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim == 3:
        if feedback.positions is None:
            raise OPEInputError("a per-position target [n, A, K] needs the log's positions")
        if dist.shape[2] != feedback.n_positions:
            raise OPEInputError(
                f"the target has {dist.shape[2]} positions, the log {feedback.n_positions}"
            )
        dist = dist[np.arange(feedback.n), :, feedback.positions]
    if dist.shape != (feedback.n, feedback.n_actions):
        raise OPEInputError(
            f"the target's action distribution has shape {dist.shape}; expected "
            f"[n, A] = [{feedback.n}, {feedback.n_actions}] (or [n, A, K] per position)"
        )
    _first((dist < 0).any(axis=1) | ~np.isfinite(dist).all(axis=1), "target",
           "has a negative or non-finite probability", dist.min(axis=1))  # fmt: skip
    sums = dist.sum(axis=1)
    _first(np.abs(sums - 1) > DISTRIBUTION_TOLERANCE, "target", "does not sum to 1", sums)
    return dist


@dataclass(frozen=True)
class Support:
    """Where the target puts mass that the log never shows (design.md §9.4).

    ``unlogged``: ``(position, action)`` pairs (position 0 without positions) that no row of
    the log takes; ``mass``: the target's mean probability on them, $\\frac1n\\sum_i
    \\sum_{a\\ \\text{unlogged}} \\pi(a \\mid x_i)$. IPS and SNIPS see no reward there (they
    count it as 0, a downward bias of up to ``mass`` × the largest reward); DM and DR cover
    it with the reward model's prediction only."""

    unlogged: tuple[tuple[int, int], ...]
    mass: float

    @property
    def count(self) -> int:
        return len(self.unlogged)


def support(feedback: LoggedFeedback, target: np.ndarray) -> Support:
    """The target's mass on never-logged actions (per position when the log has them).
    ``target``: ``[n, A]`` from `target_matrix`."""
    positions = feedback.positions if feedback.positions is not None else np.zeros(feedback.n, int)
    n_positions = feedback.n_positions if feedback.positions is not None else 1
    logged = np.zeros((n_positions, feedback.n_actions), dtype=bool)
    logged[positions, feedback.actions] = True
    unlogged_rows = ~logged[positions]  # [n, A]: action a never logged at row i's position
    mass = float((target * unlogged_rows).sum(axis=1).mean())
    wanted = np.zeros_like(logged)
    np.logical_or.at(wanted, positions, target > 0)
    pairs = np.argwhere(wanted & ~logged)
    return Support(unlogged=tuple((int(k), int(a)) for k, a in pairs), mass=mass)


def _as_1d(values, column: str, *, n: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise OPEInputError(f"expected a 1-d array, got shape {array.shape}", column=column)
    if n is not None and len(array) != n:
        raise OPEInputError(f"has {len(array)} rows, the actions {n}", column=column)
    return array


def _first(bad: np.ndarray, column: str, problem: str, values: np.ndarray) -> None:
    """Raise naming the first row where ``bad`` holds, its value and how many rows are bad."""
    rows = np.flatnonzero(bad)
    if rows.size:
        more = f" ({rows.size} rows in all)" if rows.size > 1 else ""
        raise OPEInputError(
            f"value {_plain(values[rows[0]])!r} {problem}{more}", row=int(rows[0]), column=column
        )


def _plain(value):
    """A numpy scalar as the Python number it holds, so a message reads 0.0, not np.float64(0.0)."""
    return value.item() if isinstance(value, np.generic) else value
