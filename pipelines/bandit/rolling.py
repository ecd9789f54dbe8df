"""The REN paper's rolling temporal protocol on a real session log, scored by replay.

REN (Wang et al., AAAI 2022, "Joint Learning and Exploration Procedure in Temporal Data")
cuts the data into time intervals [T_0, T_1), ..., [T_{M-1}, T_M] and, for each interval in
turn: (1) the sequence model is trained on the past, (2) it serves the interval and collects
feedback, (3) it is fine-tuned on that interval, (4) repeat. Here, on a prepared session log
(``recrl prepare``; YooChoose by default):

- **Windows.** Sessions are ordered by start time and cut into ``n_windows`` intervals of equal
  length in time; a session belongs to the window its first event falls in (sessions last
  minutes, windows weeks). Window 0 only trains.
- **Representation.** A SASRec encoder with its tied next-item head (design.md §3), trained by
  full-catalogue cross-entropy on next clicks: ``initial_steps`` on every click of window 0,
  then ``finetune_steps`` more after each served window, so window ``w`` is served by a model
  that has read windows before ``w`` only. Fine-tuning reads (``finetune_on``) either every
  click of the windows just served — the log, not the policy, decides what the user does
  next, so one model is shared by all policies — or only the clicks that the policy's slates
  held (the feedback its recommendations collected, the paper's step 3; one model per policy).
- **Serving.** Every click after a session's first is one step: the user state θ is the
  encoder's output on the clicks before it, each policy recommends a slate of ``slate_size``
  items out of the whole catalogue, and replay scores it: reward 1 when the logged next item is
  in the slate, else 0 (Li et al. 2011's replay, for slates; the log has no propensities).
  ``panel_size`` sessions are served side by side: round ``r`` is the ``r``-th step of each of
  them, then the policy gets the round's feedback (``BanditPolicy.update``: REN's impression
  counts and per-session recommended history) before the next round. Policies keep their state
  across windows.
- **Scores.** The item vector is ``[μ_i, b_i]`` and the user vector ``[θ, 1]``, so the
  relevance ``μᵀθ`` every policy reads is exactly the trained head's logit. A window's reward
  is the mean replay reward over its served steps (an online hit rate at ``slate_size``).

What replay can and cannot show is in design.md §6.7.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from recrl.models.bandits.adam import Adam
from recrl.models.bandits.interface import BanditContext, BanditPolicy, Feedback
from recrl.models.bandits.registry import PolicySizes, make_policy
from recrl.models.bandits.sequence_representation import encoder_adam_step
from recrl.models.sasrec.encoder import SASRecConfig, SASRecEncoder
from recrl.pipelines.bandit.rolling_data import (
    NextClicks,
    TimedSessions,
    assign_windows,
    concat_clicks,
    load_timed_sessions,
    next_clicks,
    replay_rewards,
    take_clicks,
    window_bounds,
)
from torch import Tensor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyEntry:
    """One served policy: a label for tables and figures, a registry name and its settings."""

    label: str
    """Name in results, tables and figures (two REN settings need two labels)."""
    policy: str
    """A name of ``recrl.models.bandits.POLICIES``."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Settings of the policy's config (``lambda_d``, ...)."""


def _default_policies() -> tuple[PolicyEntry, ...]:
    return (
        PolicyEntry("ren", "ren", {"lambda_d": 0.1}),
        PolicyEntry("greedy", "greedy"),
        PolicyEntry("random", "random"),
    )


@dataclass(frozen=True)
class RollingConfig:
    """Rolling temporal protocol (REN paper, "Joint Learning and Exploration Procedure in
    Temporal Data"), scored by replay; module docstring."""

    data_path: str = "data/rc15"
    """A ``recrl prepare`` output folder (``sessions.parquet`` with start times, and the
    transitions of every split, which are pooled and re-cut by time)."""
    n_windows: int = 6
    """Time windows of equal length; window 0 trains only, windows 1.. are served."""
    slate_size: int = 20
    """Items recommended per step, out of the whole catalogue."""
    policies: tuple[PolicyEntry, ...] = field(default_factory=_default_policies)
    """Policies served on the same steps. REN's ``lambda_d`` = 0.1 is the top of the paper's
    range {0.001, ..., 0.1}: smaller values leave the trained head's ranking almost intact."""
    sessions_per_window: int | None = 500
    """Sessions served per window, drawn uniformly without replacement (None: all); sized,
    with the step counts, so that a seed costs a few CPU minutes. ``logged`` fine-tuning
    reads every session of its windows, served or not."""
    panel_size: int = 256
    """Sessions served side by side; one round is one step of each, then feedback."""
    hidden_size: int = 32
    """Width of the encoder and of μ, θ (the REN paper's RNNs use 32)."""
    num_blocks: int = 1
    """Transformer blocks of the encoder."""
    dropout: float = 0.2
    """Encoder dropout while training."""
    lr: float = 0.005
    """Adam learning rate of training and fine-tuning (on the YooChoose sample, hit rate @ 20
    on window 1 after 50, 150 and 300 steps on window 0: 0.16, 0.25, 0.34)."""
    batch_size: int = 256
    """Next-click examples per Adam step, drawn uniformly from the training windows."""
    initial_steps: int = 300
    """Adam steps on window 0 before window 1 is served (hit rate @ 20 on window 1 is about
    0.34 after 300 and 0.38 after 400: more steps give a stronger model, at CPU cost)."""
    finetune_steps: int = 100
    """Adam steps after each served window, before the next is served."""
    train_windows: int = 1
    """Fine-tuning reads the last ``train_windows`` served windows before the next one (1:
    the window just served, as in the paper's step 3); initial training reads window 0."""
    finetune_on: Literal["logged", "collected"] = "logged"
    """What fine-tuning reads: ``logged`` — every click of those windows (one model, shared by
    all policies: the log, not the slate, decides the clicks); ``collected`` — only the steps
    of the served sessions whose slate held the logged click, the feedback the policy's own
    recommendations collected (the paper's step 3; one model per policy, so exploration can
    change what is learnt)."""
    seed: int = 0
    """Seed of the encoder's initialisation, its minibatches, the served sessions and the
    policies' own randomness."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` saying how to fix an inconsistent setting."""
        if self.n_windows < 2:
            raise ValueError(
                f"n_windows must be >= 2 (one to train, one to serve), got {self.n_windows}."
            )
        for name in ("slate_size", "panel_size", "hidden_size", "num_blocks", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RollingConfig.{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("initial_steps", "finetune_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"RollingConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if self.finetune_on not in ("logged", "collected"):
            raise ValueError(
                f"finetune_on must be 'logged' or 'collected', not {self.finetune_on!r}."
            )
        if self.train_windows < 1:
            raise ValueError(f"train_windows must be >= 1, got {self.train_windows}.")
        if self.sessions_per_window is not None and self.sessions_per_window < 1:
            raise ValueError(
                f"sessions_per_window must be >= 1 or None (all), got {self.sessions_per_window}."
            )
        labels = [entry.label for entry in self.policies]
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"policies need distinct labels, at least one; got {labels}.")


class NextClickModel:
    """SASRec with its tied next-click head, trained by full-catalogue cross-entropy."""

    def __init__(self, n_items: int, max_len: int, config: RollingConfig) -> None:
        torch.manual_seed(config.seed)  # the encoder's initialisation
        self.encoder = SASRecEncoder(
            n_items,
            SASRecConfig(
                hidden_size=config.hidden_size, max_len=max_len, num_blocks=config.num_blocks,
                dropout=config.dropout, tie_supervised_head=True,
            ),
        )  # fmt: skip
        self.encoder.eval()
        self.config = config
        self.n_items = n_items
        self.generator = torch.Generator().manual_seed(config.seed)
        self._optimisers = {name: Adam(p, config.lr) for name, p in self.encoder.named_parameters()}

    def fit(self, examples: NextClicks, steps: int) -> float:
        """``steps`` Adam steps of cross-entropy on uniform minibatches; the last loss."""
        loss = torch.full((), float("nan"))
        if steps == 0 or len(examples.target) == 0:
            return float(loss)
        self.encoder.train()
        try:
            for _ in range(steps):
                rows = torch.randint(
                    len(examples.target), (self.config.batch_size,), generator=self.generator
                )
                state = self.encoder.encode(examples.state[rows], examples.length[rows])
                logits = self.encoder.supervised_logits(state)
                loss = F.cross_entropy(logits, examples.target[rows])
                encoder_adam_step(self.encoder, self._optimisers, loss)
        finally:
            self.encoder.eval()
        return float(loss.detach())

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        """``[μ_i, b_i]`` [I, H + 1]: the head's weights and bias."""
        weight = self.encoder.item_embedding.weight[: self.n_items]
        return torch.cat([weight, self.encoder.supervised_bias.unsqueeze(1)], 1)

    @torch.no_grad()
    def user_vectors(self, state: Tensor, length: Tensor, chunk: int = 4096) -> Tensor:
        """``[θ, 1]`` [N, H + 1], so that ``[μ_i, b_i]ᵀ[θ, 1]`` is the head's logit."""
        theta = torch.cat(
            [self.encoder.encode(state[i : i + chunk], length[i : i + chunk])
             for i in range(0, len(state), chunk)]
        )  # fmt: skip
        return torch.cat([theta, torch.ones(len(theta), 1)], 1)


@dataclass(frozen=True)
class WindowResult:
    """One served window."""

    window: int
    """Index ``w`` (1 .. n_windows - 1)."""
    start_ns: int
    """T_w."""
    end_ns: int
    """T_{w+1} (exclusive)."""
    sessions: int
    """Sessions served (after subsampling)."""
    steps: int
    """Steps served (clicks after a session's first)."""
    trained_sessions: np.ndarray
    """Indices (into the log) of every session the representation had trained on before this
    window was served."""
    train_loss: dict[str, float]
    """Policy label -> the last cross-entropy of its model's latest training (NaN when that
    training had no rows: a policy that collected no hits)."""
    rewards: dict[str, float]
    """Policy label -> mean replay reward per step."""
    distinct_items: dict[str, int]
    """Policy label -> distinct items recommended in the window."""


@dataclass(frozen=True)
class RollingResult:
    config: RollingConfig
    bounds: np.ndarray
    """Window bounds T_0 .. T_W (int64 ns)."""
    windows: list[WindowResult]
    wall_s: float


def serve_window(
    policy: BanditPolicy,
    examples: NextClicks,
    user_ids: Tensor,
    items: Tensor,
    users: Tensor,
    *,
    panel_size: int,
    slate_size: int,
) -> tuple[Tensor, Tensor]:
    """Serve the steps ``examples`` (session by session, in step order) to ``policy``.

    ``user_ids`` [N] is the policy's user id of each step's session, ``items`` [I, d] the item
    vectors, ``users`` [N, d] each step's user vector. Sessions are taken ``panel_size`` at a
    time in their order; round ``r`` of a panel serves its sessions' ``r``-th steps, and the
    policy gets that round's feedback before the next. Returns the replay reward [N] and the
    slates [N, k] of every step, in the order of ``examples``.
    """
    session_rank = torch.unique_consecutive(examples.session, return_inverse=True)[1]
    panel = session_rank // panel_size
    # round order: panel, then step, then session; stable keeps sessions in start order
    order = torch.from_numpy(
        np.lexsort((session_rank.numpy(), examples.step.numpy(), panel.numpy()))
    )
    key = panel[order] * (int(examples.step.max()) + 1) + examples.step[order]
    rewards = torch.zeros(len(order))
    slates = torch.zeros(len(order), slate_size, dtype=torch.long)
    for rows in torch.split(order, torch.unique_consecutive(key, return_counts=True)[1].tolist()):
        context = BanditContext(user_ids[rows], items, users[rows])
        slate = policy.select(context, slate_size)
        reward = replay_rewards(slate, examples.target[rows])
        policy.update(Feedback(context, slate, reward))
        rewards[rows] = reward.sum(1)
        slates[rows] = slate
    return rewards, slates


def run_rolling(config: RollingConfig, log: TimedSessions | None = None) -> RollingResult:
    """The protocol of the module docstring on ``log`` (default: ``config.data_path``)."""
    began = time.perf_counter()
    log = log if log is not None else load_timed_sessions(config.data_path)
    bounds = window_bounds(log.start_ns, config.n_windows)
    window_of = assign_windows(log.start_ns, bounds)
    rng = np.random.default_rng(config.seed)
    served: list[np.ndarray] = [np.array([], dtype=np.int64)]
    for w in range(1, config.n_windows):
        members = np.flatnonzero(window_of == w)
        size = config.sessions_per_window
        if size is not None and size < len(members):
            members = np.sort(rng.choice(members, size, replace=False))  # keeps start order
        served.append(members)
    # one user id per served session, over the whole run: REN keeps a history per user
    first_user = np.concatenate([[0], np.cumsum([len(s) for s in served])])
    n_users = int(first_user[-1])
    dim = config.hidden_size + 1
    policies = {
        entry.label: make_policy(
            entry.policy,
            PolicySizes(n_users, log.n_items, dim, dim, seed=config.seed),
            entry.settings,
        )
        for entry in config.policies
    }
    shared = NextClickModel(log.n_items, log.max_len, config)
    initial = np.flatnonzero(window_of == 0)
    initial_loss = shared.fit(next_clicks(log, initial), config.initial_steps)
    collected = config.finetune_on == "collected"
    # "collected": each policy fine-tunes its own copy on what it collected; the copies start
    # from the one model trained on window 0 (same seed, same data: the same weights anyway)
    models = {
        label: copy.deepcopy(shared) if collected else shared for label in policies
    }  # fmt: skip
    kept: dict[str, list[NextClicks]] = {label: [] for label in policies}  # per served window
    losses = dict.fromkeys(policies, initial_loss)
    trained = initial
    results = []
    for w in range(1, config.n_windows):
        if w > 1:
            first = max(1, w - config.train_windows)  # window 0 was the initial training
            if collected:
                for label, model in models.items():
                    if not policies[label].reads_representation:
                        continue  # random: its model is never read
                    data = concat_clicks(kept[label][first - 1 : w - 1])
                    losses[label] = model.fit(data, config.finetune_steps)
                    trained = np.union1d(trained, data.session.numpy())
            else:
                train = np.flatnonzero((window_of >= first) & (window_of < w))
                losses = dict.fromkeys(
                    policies, shared.fit(next_clicks(log, train), config.finetune_steps)
                )
                trained = np.union1d(trained, train)
        examples = next_clicks(log, served[w], min_step=1)
        position = np.searchsorted(served[w], examples.session.numpy())
        user_ids = torch.from_numpy(first_user[w] + position)
        vectors: dict[int, tuple[Tensor, Tensor]] = {}  # one pass per distinct model
        rewards, distinct = {}, {}
        for label, policy in policies.items():
            model = models[label]
            if id(model) not in vectors:
                users = model.user_vectors(examples.state, examples.length)
                vectors[id(model)] = model.item_vectors(), users
            reward, slates = serve_window(
                policy, examples, user_ids, *vectors[id(model)],
                panel_size=config.panel_size, slate_size=config.slate_size,
            )  # fmt: skip
            kept[label].append(take_clicks(examples, reward > 0))
            rewards[label] = float(reward.mean()) if len(reward) else float("nan")
            distinct[label] = int(torch.unique(slates).numel())
        window = WindowResult(
            window=w, start_ns=int(bounds[w]), end_ns=int(bounds[w + 1]),
            sessions=len(served[w]), steps=len(examples.target), trained_sessions=trained,
            train_loss=dict(losses), rewards=rewards, distinct_items=distinct,
        )  # fmt: skip
        results.append(window)
        logger.info(
            "window %d: %d sessions, %d steps, rewards %s",
            w, len(served[w]), len(examples.target), {k: round(v, 4) for k, v in rewards.items()},
        )  # fmt: skip
    return RollingResult(config, bounds, results, time.perf_counter() - began)


def as_record(result: RollingResult) -> dict[str, Any]:
    """A JSON-ready summary of a run (the training sessions as a count)."""
    config = dataclasses.asdict(result.config)
    config["policies"] = list(config["policies"])  # asdict gives a tuple of dicts
    return {
        "config": config,
        "bounds_ns": result.bounds.tolist(),
        "wall_s": result.wall_s,
        "windows": [
            {
                **{k: v for k, v in dataclasses.asdict(w).items() if k != "trained_sessions"},
                "trained_sessions": len(w.trained_sessions),
            }
            for w in result.windows
        ],
    }


__all__ = [
    "NextClickModel",
    "NextClicks",
    "PolicyEntry",
    "RollingConfig",
    "RollingResult",
    "TimedSessions",
    "WindowResult",
    "as_record",
    "assign_windows",
    "load_timed_sessions",
    "next_clicks",
    "replay_rewards",
    "run_rolling",
    "serve_window",
    "window_bounds",
]
