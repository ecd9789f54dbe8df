"""A synthetic sequential log with known truth: a logging policy recommends one item at every
click of sessions from `recrl.envs.session_generator`, and a simulated user clicks on it with
a known probability (design.md §9.6).

The world is a `SessionGeneratorConfig`'s user model: unit item embeddings $v_i$ and
popularity $p_i$. Its sessions give the contexts: each click of a session is one row, whose
history $h$ is every earlier event of the session (clicks and purchases, raw ids, oldest
first). At each row

* a retrieval stage draws ``n_candidates`` distinct items with probability $\\propto p_i$
  (Gumbel top-$C$);
* the logging policy shows candidate $a$ with probability
  $\\mu(a \\mid x) = (1 - \\epsilon)\\, p_a^{\\beta} / \\sum_{c} p_c^{\\beta} + \\epsilon / C$
  (popularity, with an $\\epsilon$-uniform floor so that every candidate has support);
* the user clicks the shown item with probability
  $q(x, a) = \\sigma\\big(b + \\alpha\\, \\bar h(x)^\\top v_a\\big)$, where
  $\\bar h(x) = \\mathrm{normalize}\\big(\\sum_{j} \\lambda^{k_j} v_{h_j}\\big)$ weighs the item
  $k_j$ steps from the end of the history by $\\lambda^{k_j}$ ($\\bar h = 0$ for an empty
  history). With $\\lambda = 1 -$ ``click_pull`` this is the generator's own taste update
  $s_{t+1} \\approx (1 - \\text{pull})\\, s_t + \\text{pull}\\, v_{i_t}$ without its noise, so a
  model that predicts the next click also finds the items clicked here.

The recommendation does not change the session (it is a side slot), so the contexts are
fixed by the world and ``skip_sessions``, and each ``seed`` redraws candidates, shown items
and clicks on them. A target policy's true value on one log is
$\\frac1n \\sum_i \\sum_a \\pi(a \\mid x_i)\\, q(x_i, a)$, exact given the contexts, as in
`recrl.envs.synthetic_log`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from recrl.envs.session_generator import (
    GroundTruth,
    SessionGeneratorConfig,
    build_ground_truth,
    iter_session_chunks,
)
from recrl.models.ope import candidates as columns
from recrl.models.ope.candidates import CandidateSets, Ragged, candidate_sets


@dataclass(frozen=True)
class SessionLogConfig:
    """Which sessions become rows, and the logging policy and click model on them."""

    sessions: int = 500
    """Sessions whose clicks become the log's rows (about 8 rows per session by default)."""
    skip_sessions: int = 0
    """Sessions of the world's generator passed over first: set it to the ``n_sessions`` a
    model was trained on, and the log's histories are sessions that model never saw."""
    n_candidates: int = 20
    """Candidates C that the logging policy chooses from at each row."""
    logging_power: float = 1.0
    """β of the logging policy's popularity term p_a^β (0: uniform over the candidates)."""
    logging_epsilon: float = 0.2
    """ε, the logging policy's uniform share: every candidate has μ ≥ ε/C."""
    recency_decay: float = 0.5
    """λ, the weight of a history item per step back (the generator's 1 − click_pull)."""
    click_bias: float = -2.0
    """b of the click model σ(b + α·h̄ᵀv_a): the log-odds of a click with no affinity."""
    affinity_scale: float = 4.0
    """α of the click model: how much the history–item affinity raises the click odds."""

    def __post_init__(self) -> None:
        checks = [
            ("sessions", self.sessions >= 1, ">= 1"),
            ("skip_sessions", self.skip_sessions >= 0, ">= 0"),
            ("n_candidates", self.n_candidates >= 1, ">= 1"),
            ("logging_power", self.logging_power >= 0, ">= 0"),
            ("logging_epsilon", 0 < self.logging_epsilon <= 1, "in (0, 1]"),
            ("recency_decay", 0 < self.recency_decay <= 1, "in (0, 1]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(
                    f"SessionLogConfig.{name} = {getattr(self, name)!r}: must be {rule}"
                )


@dataclass(frozen=True)
class SessionContexts:
    """The rows' contexts, fixed by the world and the config: ``history`` (raw ids),
    ``session_id`` ``[n]`` and the affinity direction ``taste`` $\\bar h(x_i)$ ``[n, d]``."""

    world: GroundTruth
    history: Ragged
    session_id: np.ndarray
    taste: np.ndarray

    @property
    def n(self) -> int:
        return len(self.session_id)


def world_of(generated: str | Path) -> SessionGeneratorConfig:
    """The settings of a dataset ``recrl generate`` wrote (its ``generator.json``): the world
    its sessions, and any model trained on them, come from. Pair it with
    ``skip_sessions = world.n_sessions`` for histories that model never saw."""
    saved = json.loads((Path(generated) / "generator.json").read_text())["config"]
    return SessionGeneratorConfig(**saved)


def session_contexts(world: SessionGeneratorConfig, config: SessionLogConfig) -> SessionContexts:
    """Generate the sessions after ``config.skip_sessions`` and one row per click (module
    docstring). ``world`` fixes the user model; its ``n_sessions`` is ignored."""
    generator = dataclasses.replace(world, n_sessions=config.skip_sessions + config.sessions)
    truth = build_ground_truth(generator)
    frame = pd.concat(list(iter_session_chunks(generator, ground_truth=truth)), ignore_index=True)
    frame = frame[frame["session_id"] > config.skip_sessions].reset_index(drop=True)
    session = frame["session_id"].to_numpy()
    raw = frame["item_id"].to_numpy()
    first = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    start = np.repeat(first, np.diff(np.r_[first, len(session)]))  # first row of each row's session
    rows = np.flatnonzero(frame["event"].to_numpy() == "click")
    lengths = rows - start[rows]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    source = np.repeat(start[rows] - offsets[:-1], lengths) + np.arange(offsets[-1])
    history = Ragged(raw[source], offsets)
    steps_back = np.repeat(lengths, lengths) - 1 - history.positions
    weight = config.recency_decay ** steps_back.astype(np.float64)
    embedding = truth.item_embeddings.astype(np.float64)
    internal = np.searchsorted(truth.item_ids, history.values)
    taste = np.zeros((len(rows), embedding.shape[1]))
    np.add.at(taste, history.row_ids, weight[:, None] * embedding[internal])
    norm = np.linalg.norm(taste, axis=1, keepdims=True)
    taste = np.divide(taste, norm, out=np.zeros_like(taste), where=norm > 0)
    return SessionContexts(truth, history, session[rows], taste)


@dataclass(frozen=True)
class SyntheticSessionLog:
    """One log over ``contexts`` with what an estimator does not see: the logging policy's
    whole distribution ``behaviour`` and the click probabilities ``q_true``, both ``[n, C]``
    over the row's ``candidates`` (raw ids ``[n, C]``)."""

    contexts: SessionContexts
    candidates: np.ndarray
    shown: np.ndarray  # [n] slot of the shown item
    propensity: np.ndarray  # [n] behaviour[i, shown[i]]
    reward: np.ndarray  # [n] 0/1 clicks
    behaviour: np.ndarray
    q_true: np.ndarray

    def true_value(self, target: np.ndarray) -> float:
        """$\\frac1n \\sum_i \\sum_a \\pi(a \\mid x_i)\\, q(x_i, a)$ for ``target`` ``[n, C]``."""
        return float((target * self.q_true).sum(axis=1).mean())

    @property
    def shown_items(self) -> np.ndarray:
        return self.candidates[np.arange(len(self.shown)), self.shown]

    def candidate_sets(self) -> CandidateSets:
        """The slots an estimator sees; slot c is column c of ``candidates``."""
        n, width = self.candidates.shape
        offsets = np.arange(n + 1, dtype=np.int64) * width
        return candidate_sets(self.shown_items, Ragged(self.candidates.ravel(), offsets))

    def frame(self) -> pd.DataFrame:
        """The log in the file format of design.md §9.6, expected rewards included."""
        history = self.contexts.history
        return pd.DataFrame({
            columns.SESSION_ID: self.contexts.session_id,
            columns.HISTORY: np.split(history.values, history.offsets[1:-1]),
            columns.CANDIDATES: list(self.candidates),
            columns.ITEM: self.shown_items,
            columns.PROPENSITY: self.propensity,
            columns.REWARD: self.reward,
            columns.EXPECTED_REWARD: list(self.q_true),
        })  # fmt: skip

    def write(self, path: str | Path) -> Path:
        """Write `frame` as parquet to ``path``, atomically (a temporary sibling, renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.frame().to_parquet(staging, index=False)
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)
        return path


def draw_session_log(
    contexts: SessionContexts, config: SessionLogConfig, seed: int
) -> SyntheticSessionLog:
    """Candidates, the logging policy's choice and the click at every row (module docstring)."""
    world = contexts.world
    n, n_items = contexts.n, len(world.popularity)
    width = config.n_candidates
    if width > n_items:
        raise ValueError(f"n_candidates = {width}: the world has only {n_items} items")
    rng = np.random.default_rng(seed)
    log_p = np.log(world.popularity)
    keys = log_p[None, :] + rng.gumbel(size=(n, n_items))  # Gumbel top-C: draws ∝ p, no repeats
    internal = np.argpartition(-keys, width - 1, axis=1)[:, :width]
    weight = world.popularity[internal] ** config.logging_power
    behaviour = (1 - config.logging_epsilon) * weight / weight.sum(axis=1, keepdims=True)
    behaviour += config.logging_epsilon / width
    shown = np.minimum((behaviour.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), width - 1)
    affinity = np.einsum("nd,ncd->nc", contexts.taste, world.item_embeddings[internal])
    q_true = 1 / (1 + np.exp(-(config.click_bias + config.affinity_scale * affinity)))
    rows = np.arange(n)
    reward = (rng.random(n) < q_true[rows, shown]).astype(np.float64)
    return SyntheticSessionLog(
        contexts=contexts, candidates=world.item_ids[internal], shown=shown,
        propensity=behaviour[rows, shown], reward=reward, behaviour=behaviour, q_true=q_true,
    )  # fmt: skip
