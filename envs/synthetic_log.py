"""Synthetic logged bandit feedback with a known true policy value, for testing and
benchmarking the off-policy estimators (design.md §9.5).

A world (fixed by ``world_seed``) has $A$ actions and Gaussian contexts $x \\sim
\\mathcal N(0, I_d)$; the click probability is $q(x, a) = \\sigma(\\theta_a^\\top x + b_a)$.
The behaviour policy is a softmax over noisy scores $\\beta_\\mu(\\theta_a + \\epsilon_a)^\\top
x$ (it knows the world imperfectly), the target a sharper softmax over the true logits,
$\\beta_\\pi(\\theta_a^\\top x + b_a)$. A log (``seed``) draws $n$ contexts, an action from
$\\mu$ and a Bernoulli click for each. Its true value is the target's expected reward on
those contexts, $\\frac1n\\sum_i \\sum_a \\pi(a \\mid x_i)\\, q(x_i, a)$: the quantity an
unbiased estimator hits in expectation given the contexts, with no Monte-Carlo error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from recrl.models.ope.logged_feedback import LoggedFeedback
from recrl.models.ope.policies import softmax


@dataclass(frozen=True)
class SyntheticLogConfig:
    """A world and the size of its logs."""

    n: int = 1000
    """Rows per log."""
    n_actions: int = 10
    """Actions A."""
    dim: int = 5
    """Context dimension d."""
    behaviour_beta: float = 1.0
    """Inverse temperature of the behaviour policy's softmax."""
    behaviour_noise: float = 1.0
    """Std of the behaviour policy's error ε_a on the action weights."""
    target_beta: float = 3.0
    """Inverse temperature of the target policy's softmax over the true logits."""
    world_seed: int = 0
    """Seed of θ, b and ε (the world and both policies)."""


@dataclass(frozen=True)
class SyntheticLog:
    """One log with everything an estimator hides: the contexts, the true reward function,
    both policies' distributions and the target's true value."""

    feedback: LoggedFeedback
    context: np.ndarray  # [n, d]
    q_true: np.ndarray  # [n, A]
    behaviour: np.ndarray  # [n, A]
    target: np.ndarray  # [n, A]

    @property
    def true_value(self) -> float:
        """$\\frac1n\\sum_i\\sum_a \\pi(a \\mid x_i)\\,q(x_i, a)$."""
        return float((self.target * self.q_true).sum(axis=1).mean())


def synthetic_log(config: SyntheticLogConfig, seed: int) -> SyntheticLog:
    """Draw one log of ``config``'s world (module docstring)."""
    world = np.random.default_rng(config.world_seed)
    theta = world.normal(0.0, 1.0, size=(config.n_actions, config.dim)) / np.sqrt(config.dim)
    bias = world.normal(-1.0, 0.5, size=config.n_actions)
    noise = world.normal(0.0, config.behaviour_noise, size=theta.shape) / np.sqrt(config.dim)
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(config.n, config.dim))
    logits = context @ theta.T + bias
    q_true = 1 / (1 + np.exp(-logits))
    behaviour = softmax(config.behaviour_beta * (context @ (theta + noise).T))
    target = softmax(config.target_beta * logits)
    cumulative = behaviour.cumsum(axis=1)
    draws = rng.random((config.n, 1))
    actions = np.minimum((cumulative < draws).sum(axis=1), config.n_actions - 1)
    rows = np.arange(config.n)
    rewards = (rng.random(config.n) < q_true[rows, actions]).astype(np.float64)
    feedback = LoggedFeedback(
        actions=actions, rewards=rewards, pscore=behaviour[rows, actions],
        n_actions=config.n_actions,
    )  # fmt: skip
    return SyntheticLog(feedback, context, q_true, behaviour, target)


def write_open_bandit_like(folder, *, n: int = 600, n_items: int = 8, seed: int = 0) -> None:
    """A small log pair in the Open Bandit layout (``random/all.csv``, ``bts/all.csv``: item,
    position 1–3, click, propensity, four user features, user–item affinities), for tests
    and examples: ``random`` shows items uniformly, ``bts`` from a fixed skewed distribution
    per position; clicks are Bernoulli with per-item rates."""
    from pathlib import Path

    import pandas as pd

    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.2, size=n_items)
    skewed = rng.dirichlet(np.ones(n_items), size=3)  # [K, A]
    for policy in ("random", "bts"):
        position = rng.integers(0, 3, size=n)
        dist = np.full((n, n_items), 1 / n_items) if policy == "random" else skewed[position]
        items = np.array([rng.choice(n_items, p=row) for row in dist])
        frame = pd.DataFrame({
            "timestamp": np.arange(n), "item_id": items, "position": position + 1,
            "click": (rng.random(n) < rates[items]).astype(int),
            "propensity_score": dist[np.arange(n), items],
            **{f"user_feature_{j}": rng.integers(0, 3, size=n).astype(str) for j in range(4)},
            **{f"user-item_affinity_{i}": rng.integers(0, 2, size=n) for i in range(n_items)},
        })  # fmt: skip
        out = Path(folder) / policy
        out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out / "all.csv")
