"""The direct method's reward model $\\hat q(x, a)$, fitted on the log, and its cross-fitting
for DR (design.md §9.2).

A generalised linear model on the logged rows: with context features $\\phi(x) \\in
\\mathbb R^d$ and optional action-specific features $\\psi(x, a) \\in \\mathbb R^k$ (Open
Bandit's user–item affinity),

$$\\hat q(x, a) = g\\big(c + b_a + \\phi(x)^\\top (w + W_a) + \\psi(x, a)^\\top v\\big),$$

$g$ the logistic function for rewards in $[0, 1]$ (clicks; cross-entropy loss) or the
identity (squared loss). $W$ (per-action context weights, $A \\times d$) is optional
(``interactions``). All coefficients but the intercept $c$ carry an L2 penalty
$\\frac{\\lambda}{2n}\\lVert\\theta\\rVert^2$; features are standardised on the training rows.
The convex objective is minimised by L-BFGS in float64.

On a log whose rows each have their own candidate set (design.md §9.6), action $a$ of row
$i$ is a slot of that row's list, and $b$ and $W$ are indexed by the catalogue item in the
slot, ``RewardFeatures.items[i, a]``, instead of by $a$.

Cross-fitting (Chernozhukov et al. 2018, "Double/debiased machine learning"): the
rows are split into $K$ folds, and row $i$'s predictions come from the model fitted on the
other $K - 1$ folds, so that $\\hat q(x_i, \\cdot)$ does not depend on $r_i$ and the DR
correction stays unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class RewardModelConfig:
    """Settings of the reward model $\\hat q$ of DM, DR and switch-DR."""

    link: Literal["logistic", "linear"] = "logistic"
    """``logistic``: q̂ = sigmoid(logit) with cross-entropy, for rewards in [0, 1]
    (clicks); ``linear``: ridge regression, for any real reward."""
    l2: float = 1.0
    """L2 penalty λ on every coefficient but the intercept (a prior precision: the loss is
    the mean loss + λ/(2n)·‖θ‖²)."""
    interactions: bool = False
    """Per-action context weights W_a (A × d more coefficients): lets the best action
    depend on the context beyond the action features."""
    folds: int = 5
    """K of the K-fold cross-fitting of DR and switch-DR (DM uses one fit on all rows)."""
    max_iter: int = 100
    """L-BFGS iterations (the objective is convex: more only polishes)."""

    def __post_init__(self) -> None:
        if self.link not in ("logistic", "linear"):
            raise ValueError(f"link must be 'logistic' or 'linear', not {self.link!r}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2 for cross-fitting, got {self.folds}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


@dataclass(frozen=True)
class RewardFeatures:
    """Features of each row: ``context`` $\\phi(x_i)$ ``[n, d]``, optional ``pair``
    $\\psi(x_i, a)$ ``[n, A, k]`` for every action, and optional ``items`` ``[n, A]``: the
    catalogue id (``0..n_actions-1``) of each action slot of a row, for logs with per-row
    candidate sets (None: slot $a$ is item $a$). A padding slot may hold any valid id."""

    context: np.ndarray
    pair: np.ndarray | None = None
    items: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> RewardFeatures:
        pair = None if self.pair is None else self.pair[rows]
        items = None if self.items is None else self.items[rows]
        return RewardFeatures(self.context[rows], pair, items)

    def item_ids(self, n_actions: int) -> np.ndarray:
        """``items``, or every row's ``0..n_actions-1`` when the slots are the items."""
        if self.items is None:
            return np.broadcast_to(np.arange(n_actions), (len(self.context), n_actions))
        return self.items


@dataclass(frozen=True)
class RewardModel:
    """A fitted $\\hat q$; `predict` gives ``[n, A]`` (A: the slots of ``features.items``
    when given, else every action)."""

    config: RewardModelConfig
    intercept: float
    action_bias: np.ndarray  # [A]
    context_weight: np.ndarray  # [d]
    interaction: np.ndarray | None  # [A, d]
    pair_weight: np.ndarray | None  # [k]
    context_scale: tuple[np.ndarray, np.ndarray]  # mean, std of φ on the training rows
    pair_scale: tuple[np.ndarray, np.ndarray] | None

    def predict(self, features: RewardFeatures) -> np.ndarray:
        """$\\hat q(x_i, a)$ for every row and action, ``[n, A]``."""
        phi = (features.context - self.context_scale[0]) / self.context_scale[1]
        items = features.item_ids(len(self.action_bias))
        logit = self.intercept + self.action_bias[items] + (phi @ self.context_weight)[:, None]
        if self.interaction is not None and features.items is None:
            logit = logit + phi @ self.interaction.T
        elif self.interaction is not None:
            logit = logit + np.einsum("nd,nad->na", phi, self.interaction[items])
        if self.pair_weight is not None:
            psi = (features.pair - self.pair_scale[0]) / self.pair_scale[1]
            logit = logit + psi @ self.pair_weight
        return 1 / (1 + np.exp(-logit)) if self.config.link == "logistic" else logit


def fit_reward_model(
    features: RewardFeatures, actions: np.ndarray, rewards: np.ndarray, n_actions: int,
    config: RewardModelConfig = RewardModelConfig(),
) -> RewardModel:  # fmt: skip
    """Fit $\\hat q$ on the logged pairs $(x_i, a_i) \\to r_i$ (module docstring).
    ``n_actions``: how many actions get an intercept $b_a$ (with ``features.items``, the
    size of the catalogue those ids index)."""
    if config.link == "logistic" and ((rewards < 0) | (rewards > 1)).any():
        raise ValueError(
            "a logistic reward model needs rewards in [0, 1]; use link='linear' for others"
        )
    n = len(actions)
    context_scale = _scale(features.context)
    phi = torch.as_tensor((features.context - context_scale[0]) / context_scale[1])
    pair_scale, psi = None, None
    if features.pair is not None:
        k = features.pair.shape[2]
        pair_scale = _scale(features.pair.reshape(-1, k))
        logged_pair = features.pair[np.arange(n), actions]  # [n, k]
        psi = torch.as_tensor((logged_pair - pair_scale[0]) / pair_scale[1])
    logged_items = features.item_ids(n_actions)[np.arange(n), actions]
    if ((logged_items < 0) | (logged_items >= n_actions)).any():
        raise ValueError(f"features.items must hold catalogue ids in 0..{n_actions - 1}")
    a = torch.as_tensor(logged_items)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    d = phi.shape[1]
    mean_r = float(np.clip(rewards.mean(), 1e-4, 1 - 1e-4)) if config.link == "logistic" else 0.0
    start = np.log(mean_r / (1 - mean_r)) if config.link == "logistic" else rewards.mean()
    params = {
        "intercept": torch.tensor(float(start), dtype=torch.float64),
        "action_bias": torch.zeros(n_actions, dtype=torch.float64),
        "context_weight": torch.zeros(d, dtype=torch.float64),
    }
    if config.interactions:
        params["interaction"] = torch.zeros(n_actions, d, dtype=torch.float64)
    if psi is not None:
        params["pair_weight"] = torch.zeros(psi.shape[1], dtype=torch.float64)
    for value in params.values():
        value.requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        list(params.values()), max_iter=config.max_iter, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )  # fmt: skip

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        logit = params["intercept"] + params["action_bias"][a] + phi @ params["context_weight"]
        if "interaction" in params:
            logit = logit + (phi * params["interaction"][a]).sum(dim=1)
        if "pair_weight" in params:
            logit = logit + psi @ params["pair_weight"]
        if config.link == "logistic":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, r)
        else:
            loss = 0.5 * ((logit - r) ** 2).mean()
        penalty = sum((p**2).sum() for name, p in params.items() if name != "intercept")
        loss = loss + config.l2 / (2 * n) * penalty
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: intra-op threads cost more than they save
    try:
        optimiser.step(objective)
    finally:
        torch.set_num_threads(threads)
    fitted = {name: value.detach().numpy().copy() for name, value in params.items()}
    return RewardModel(
        config=config,
        intercept=float(fitted["intercept"]),
        action_bias=fitted["action_bias"],
        context_weight=fitted["context_weight"],
        interaction=fitted.get("interaction"),
        pair_weight=fitted.get("pair_weight"),
        context_scale=context_scale,
        pair_scale=pair_scale,
    )


def cross_fit(
    features: RewardFeatures, actions: np.ndarray, rewards: np.ndarray, n_actions: int,
    config: RewardModelConfig = RewardModelConfig(), *, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """Out-of-fold predictions $\\hat q(x_i, \\cdot)$, ``[n, A]``: the rows are split into
    ``config.folds`` folds by a seeded permutation, and each fold is predicted by the model
    fitted on the others."""
    n = len(actions)
    if n < config.folds:
        raise ValueError(f"cross-fitting needs at least folds={config.folds} rows, got {n}")
    fold = np.empty(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % config.folds
    width = n_actions if features.items is None else features.items.shape[1]
    q_hat = np.empty((n, width))
    for k in range(config.folds):
        train, held_out = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = fit_reward_model(
            features.take(train), actions[train], rewards[train], n_actions, config
        )
        q_hat[held_out] = model.predict(features.take(held_out))
    return q_hat


def _scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations (1 where a column is constant)."""
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)
