"""One off-policy evaluation on the Open Bandit logs (``recrl ope``, design.md §9): read both
logs, build each target's action distribution, fit the reward model, estimate, log to MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from recrl.models.ope import (
    LoggedFeedback,
    OPEInputError,
    RewardFeatures,
    RewardModelConfig,
    bootstrap_interval,
    cross_fit,
    effective_sample_size,
    fit_reward_model,
    importance_weights,
    row_terms,
    support,
    target_matrix,
)
from recrl.models.ope.bootstrap import Interval
from recrl.models.ope.policies import position_frequencies, uniform
from recrl.pipelines.errors import UserError
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.prepare.errors import DataError, MissingInputError, SchemaMismatchError
from recrl.pipelines.tracking import Tracker

USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
COLUMNS = {"action": "item_id", "reward": "click", "pscore": "propensity_score",
           "position": "position"}  # fmt: skip
"""`LoggedFeedback` field -> its Open Bandit column."""
N_POSITIONS = 3


@dataclass(frozen=True)
class OpenBanditLog:
    feedback: LoggedFeedback
    features: RewardFeatures
    path: Path


@dataclass(frozen=True)
class Evaluation:
    """One ``target:log`` pair: each estimator's `Interval`, the truth (NaN where the log
    cannot tell it) and diagnostics."""

    name: str
    truth: float
    estimates: dict[str, Interval]
    effective_sample_size: float
    unlogged_pairs: int
    unlogged_mass: float
    rows: int = 0
    """Rows the estimates use."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Rows of the log left out, by reason (a sequential log's rows the model cannot score)."""
    log_value: float = float("nan")
    """The mean logged reward of those rows: the logging policy's own value."""


def read_open_bandit(folder: str | Path, campaign: str = "all") -> dict[str, OpenBanditLog]:
    """The ``random`` and ``bts`` logs of one campaign; a bad value is a `DataError` naming
    the file, line and column."""
    import pandas as pd

    frames = {}
    for policy in ("random", "bts"):
        path = Path(folder) / policy / f"{campaign}.csv"
        if not path.is_file():
            raise MissingInputError("no such Open Bandit log (expected random/ and bts/)",
                                    file=str(path))  # fmt: skip
        frame = pd.read_csv(path, index_col=0)
        for column in (*COLUMNS.values(), *USER_FEATURES):
            if column not in frame.columns:
                raise SchemaMismatchError("column missing", file=str(path), column=column)
        frames[policy] = (path, frame)
    n_items = 1 + max(int(frame["item_id"].max()) for _, frame in frames.values())
    categories = {
        name: sorted(set().union(*(set(f[name].astype(str)) for _, f in frames.values())))
        for name in USER_FEATURES
    }
    logs = {}
    for policy, (path, frame) in frames.items():
        try:
            feedback = LoggedFeedback(
                actions=frame["item_id"].to_numpy(), rewards=frame["click"].to_numpy(float),
                pscore=frame["propensity_score"].to_numpy(float), n_actions=n_items,
                positions=frame["position"].to_numpy() - 1, n_positions=N_POSITIONS,
            )  # fmt: skip
        except OPEInputError as error:
            line = None if error.row is None else error.row + 2  # 1-based, after the header
            column = COLUMNS.get(error.column or "", error.column)
            raise DataError(error.message, file=str(path), line=line, column=column) from error
        logs[policy] = OpenBanditLog(feedback, _features(frame, categories, n_items), path)
    return logs


def _features(frame, categories, n_items: int) -> RewardFeatures:
    """Context: one-hot user features and position; pair: the user–item affinity."""
    columns = [
        (frame[name].astype(str).to_numpy()[:, None] == np.array(categories[name])[None, :])
        for name in USER_FEATURES
    ]
    columns.append(np.eye(N_POSITIONS)[frame["position"].to_numpy() - 1])
    names = [f"user-item_affinity_{i}" for i in range(n_items)]
    pair = None
    if all(name in frame.columns for name in names):
        pair = frame[names].to_numpy(float)[:, :, None]
    return RewardFeatures(np.hstack(columns).astype(float), pair)


def estimate_all(
    feedback: LoggedFeedback, target: np.ndarray, features: RewardFeatures,
    model: RewardModelConfig, estimators, *, tau: float, n_bootstrap: int, alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Interval]:  # fmt: skip
    """Each estimator's `Interval` on one log: DM from one fit of the reward model on all
    rows, DR and switch-DR from its cross-fitted predictions (design.md §9.2)."""
    q_full, q_cross = reward_predictions(
        feedback, features, model, estimators, n_items=feedback.n_actions, seed=seed
    )
    return intervals(
        feedback, target, q_full, q_cross, estimators, tau=tau, n_bootstrap=n_bootstrap,
        alpha=alpha, seed=seed,
    )  # fmt: skip


def reward_predictions(
    feedback: LoggedFeedback, features: RewardFeatures, model: RewardModelConfig, estimators,
    *, n_items: int, seed: int = 0,
) -> tuple[np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """$\\hat q$ ``[n, A]`` for DM (one fit on all rows) and for DR and switch-DR
    (cross-fitted), each None when no estimator of ``estimators`` needs it. ``n_items``: the
    actions that get an intercept (the catalogue that ``features.items`` indexes)."""
    require_fold_rows(feedback.n, model, estimators)
    args = (features, feedback.actions, feedback.rewards, n_items, model)
    q_full = q_cross = None
    if "dm" in estimators:
        q_full = fit_reward_model(*args).predict(features)
    if {"dr", "switch-dr"} & set(estimators):
        q_cross = cross_fit(*args, seed=seed)
    return q_full, q_cross


def require_fold_rows(n: int, model: RewardModelConfig, estimators) -> None:
    """A `UserError` when DR or switch-DR are asked for on fewer rows than the reward
    model's cross-fitting folds (each fold must hold a row to predict)."""
    cross_fitted = {"dr", "switch-dr"} & set(estimators)
    if cross_fitted and n < model.folds:
        raise UserError(
            f"{n} rows to estimate on, fewer than the {model.folds} folds that "
            f"{' and '.join(sorted(cross_fitted))} cross-fit the reward model on: lower "
            "--set folds, or leave those estimators out (--estimators ips snips dm)"
        )


def intervals(
    feedback: LoggedFeedback, target: np.ndarray, q_full: np.ndarray | None,
    q_cross: np.ndarray | None, estimators, *, tau: float, n_bootstrap: int,
    alpha: float = 0.05, seed: int = 0,
) -> dict[str, Interval]:  # fmt: skip
    """Each estimator's `Interval` given the reward model's predictions."""
    out = {}
    for name in estimators:
        q_hat = q_full if name == "dm" else q_cross
        terms = row_terms(
            name, feedback.actions, feedback.rewards, feedback.pscore, target, q_hat, tau=tau
        )
        out[name] = bootstrap_interval(terms, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed)
    return out


def run_ope(config: OPEConfig, tracker: Tracker | None = None) -> list[Evaluation]:
    """Every ``config.evaluations`` pair; logs ``ope/<target>_from_<log>/<estimator>`` (and
    ``_low``, ``_high``), ``.../truth``, ``.../ess`` and ``.../unlogged_mass`` to ``tracker``."""
    logs = read_open_bandit(config.data_path, config.campaign)
    n_items = logs["random"].feedback.n_actions
    bts = logs["bts"].feedback
    empty = sorted(set(range(N_POSITIONS)) - set(np.unique(bts.positions).tolist()))
    if empty:  # BTS's distribution is estimated per position from its own log
        raise DataError(
            f"no row at position {empty[0] + 1}: the BTS policy's distribution there cannot be "
            "estimated; give a log with rows at every position",
            file=str(Path(config.data_path) / "bts" / f"{config.campaign}.csv"),
            column="position",
        )
    dists = {
        "bts": position_frequencies(bts.actions, bts.positions, n_items, N_POSITIONS),
        "random": uniform(N_POSITIONS, n_items).T,
    }
    results = []
    for pair in config.evaluations:
        target_name, log_name = pair.split(":")
        log = logs[log_name]
        f = log.feedback
        target = target_matrix(f, np.broadcast_to(dists[target_name], (f.n, n_items, N_POSITIONS)))
        estimates = estimate_all(
            f, target, log.features, config.reward_model, config.estimators,
            tau=config.switch_tau, n_bootstrap=config.n_bootstrap, alpha=config.alpha,
            seed=config.seed,
        )  # fmt: skip
        gaps = support(f, target)
        result = Evaluation(
            name=pair, truth=float(logs[target_name].feedback.rewards.mean()),
            estimates=estimates,
            effective_sample_size=effective_sample_size(
                importance_weights(f.actions, f.pscore, target)),
            unlogged_pairs=gaps.count, unlogged_mass=gaps.mass, rows=f.n,
            log_value=float(f.rewards.mean()),
        )  # fmt: skip
        results.append(result)
        if tracker is not None:
            tracker.log_metrics(metrics(result), step=0)
    return results


def metrics(result: Evaluation) -> dict[str, float]:
    """``ope/<target>_from_<log>/...``: each estimate with its interval, the truth (when
    known), the ESS, the unlogged mass and the rows left out by reason."""
    target, log = result.name.split(":")
    prefix = f"ope/{target}_from_{log}"
    metrics = {
        f"{prefix}/ess": result.effective_sample_size,
        f"{prefix}/unlogged_mass": result.unlogged_mass,
    } | ({} if np.isnan(result.truth) else {f"{prefix}/truth": result.truth})  # fmt: skip
    metrics |= {f"{prefix}/excluded_{reason}": count for reason, count in result.excluded.items()}
    for name, interval in result.estimates.items():
        key = f"{prefix}/{name.replace('-', '_')}"
        metrics |= {key: interval.value, f"{key}_low": interval.low, f"{key}_high": interval.high}
    return metrics


def format_table(results: list[Evaluation]) -> str:
    """A Markdown table: one row per evaluation, mean rewards (click rates) in % with their
    intervals; a truth the log cannot tell reads "—"."""
    names = list(results[0].estimates) if results else []
    lines = [
        "| target:log | truth | " + " | ".join(names) + " | ESS | unlogged mass |",
        "|---|---|" + "---|" * (len(names) + 2),
    ]
    for r in results:
        cells = [
            f"{i.value * 100:.3f} [{i.low * 100:.3f}, {i.high * 100:.3f}]"
            for i in r.estimates.values()
        ]
        truth = "—" if np.isnan(r.truth) else f"{r.truth * 100:.3f}"
        lines.append(
            f"| {r.name} | {truth} | " + " | ".join(cells)
            + f" | {r.effective_sample_size:.0f} | {r.unlogged_mass:.4f} "
            f"({r.unlogged_pairs} pairs) |"
        )  # fmt: skip
    return "\n".join(lines) + "\n"
