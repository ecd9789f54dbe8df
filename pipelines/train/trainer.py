"""The `recrl train` job: RLlib updates, periodic validation, MLflow, checkpoints (SPEC §2-4).

One MLflow run per job: params = the resolved `TrainConfig`, metrics over updates = every
loss component and Q statistic the Learner logs plus ``eval/…`` on val, tags = variant,
dataset and git commit; artifacts = meta.json, the final checkpoint and the stability
figure. Non-finite losses or Q values stop the job with `TrainingDiverged`, keeping the
last checkpoint taken while the values were still finite.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.evaluation import EvalConfig, evaluate, load_eval_split, popularity_score_fn
from pipelines.prepare.meta import read_meta
from pipelines.stability_plot import plot_stability
from pipelines.tracking import NullTracker, Tracker, git_commit
from pipelines.train.config import TrainConfig

logger = logging.getLogger(__name__)

STABILITY_METRICS = ("hr_20_purchase", "ndcg_20_purchase", "hr_20_click", "ndcg_20_click")
Q_METRICS = ("q/mean", "q/max", "q/td_error", "q/cql_gap", "loss/ce", "loss/total")


class TrainingDiverged(RuntimeError):
    """A loss or Q value became NaN/inf; the message names the metric, the update and the
    last good checkpoint."""


@dataclass
class TrainResult:
    """What a training job produced."""

    run_dir: Path
    checkpoint: Path | None
    updates: int
    val_history: list[dict[str, float]] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    popularity_test_metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    seconds_training: float = 0.0
    seconds_evaluating: float = 0.0

    @property
    def eval_share(self) -> float:
        """Fraction of the job's wall time spent in evaluation."""
        total = self.seconds_training + self.seconds_evaluating
        return self.seconds_evaluating / total if total else 0.0


def train(config: TrainConfig, *, run_dir: str | Path | None = None) -> TrainResult:
    """Train ``config.variant`` on ``config.data``; see the module docstring."""
    from pipelines.ray_runtime import ensure_ray
    from pipelines.train.sasrec_algorithm import build_algorithm, learner_metrics, scoring_network

    meta = read_meta(config.data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(run_dir or config.checkpoint_dir or f"runs/{config.variant}-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "checkpoint"
    eval_config = EvalConfig(batch_size=config.eval_batch_size, max_rows=config.eval_max_rows)
    val = load_eval_split(config.data, "val")
    test = load_eval_split(config.data, "test")

    tracker = Tracker(experiment=config.experiment) if config.tracking else NullTracker()
    tags = {"variant": config.variant, "dataset": Path(config.data).name,
            "git.commit": git_commit() or "unknown"}  # fmt: skip
    params = {**config.to_dict(), "data.n_items": meta["n_items"], "data.L": meta["L"]}
    result = TrainResult(run_dir=run_dir, checkpoint=None, updates=0)
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)

    ensure_ray()
    result.run_id = tracker.start(f"{config.variant}-{stamp}", params=params, tags=tags) or None
    with tracker:
        tracker.log_artifact(str(Path(config.data) / "meta.json"))
        algo = build_algorithm(config, meta)
        try:
            _train_loop(algo, config, val, eval_config, tracker, history, result, checkpoint,
                        learner_metrics, scoring_network)  # fmt: skip
            start = time.perf_counter()
            score_fn = _score_fn(scoring_network(algo), config.rank_with)
            result.test_metrics = evaluate(score_fn, test, EvalConfig(config.eval_batch_size))
            popularity = popularity_score_fn(meta["item_counts_train"])
            result.popularity_test_metrics = evaluate(popularity, test, eval_config)
            result.seconds_evaluating += time.perf_counter() - start
            tracker.log_metrics(_prefixed("test/", result.test_metrics), step=result.updates)
            tracker.log_metrics(
                _prefixed("test_popularity/", result.popularity_test_metrics), step=result.updates
            )
            _save(algo, checkpoint)
            result.checkpoint = checkpoint
            tracker.log_artifact(str(checkpoint), artifact_path="checkpoint")
        finally:
            figure = _plot(history, run_dir, config)
            if figure is not None:
                tracker.log_artifact(str(figure))
            algo.stop()
        tracker.log_metrics({"time/eval_share": result.eval_share}, step=result.updates)
    return result


def _train_loop(algo, config, val, eval_config, tracker, history, result, checkpoint,
                learner_metrics, scoring_network) -> None:  # fmt: skip
    from tqdm import tqdm

    from pipelines.train.sasrec_algorithm import NUM_UPDATES_METRIC

    next_eval = config.eval_interval
    with tqdm(total=config.total_steps, desc=f"train {config.variant}", unit="upd",
              disable=None) as progress:  # fmt: skip
        while result.updates < config.total_steps:
            start = time.perf_counter()
            metrics = learner_metrics(algo.train())
            result.seconds_training += time.perf_counter() - start
            updates = int(metrics[NUM_UPDATES_METRIC])
            progress.update(updates - result.updates)
            result.updates = updates
            _check_finite(metrics, updates, result.checkpoint)
            tracker.log_metrics(metrics, step=updates)
            for name in Q_METRICS:
                if name in metrics:
                    history[name].append((updates, metrics[name]))
            progress.set_postfix(loss=f"{metrics.get('loss/total', float('nan')):.3f}")
            if updates >= next_eval or updates >= config.total_steps:
                next_eval += config.eval_interval
                start = time.perf_counter()
                score_fn = _score_fn(scoring_network(algo), config.rank_with)
                scores = evaluate(score_fn, val, eval_config)
                result.seconds_evaluating += time.perf_counter() - start
                result.val_history.append({"updates": updates, **scores})
                tracker.log_metrics(_prefixed("eval/", scores), step=updates)
                for name in STABILITY_METRICS:
                    history[f"eval/{name}"].append((updates, scores[name]))
                logger.info("update %d: val %s", updates, _summary(scores))
                _save(algo, checkpoint)  # values are finite here: keep as last good
                result.checkpoint = checkpoint


def _check_finite(metrics: dict[str, float], updates: int, checkpoint: Path | None) -> None:
    bad = [k for k, v in metrics.items() if k.startswith(("loss/", "q/")) and not math.isfinite(v)]
    if bad:
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        raise TrainingDiverged(
            f"{', '.join(sorted(bad))} became non-finite at update {updates}; training stopped "
            f"({kept}). Lower lr, cql_alpha or raise grad clipping."
        )


def _score_fn(network, head: str):
    def score(state, state_len):
        return network.score_all(state, state_len, head)

    return score


def _save(algo, checkpoint: Path) -> None:
    staging = checkpoint.with_name(checkpoint.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    algo.save_to_path(str(staging.resolve()))
    shutil.rmtree(checkpoint, ignore_errors=True)
    staging.rename(checkpoint)  # never leave a half-written "last good" checkpoint


def _plot(history, run_dir: Path, config: TrainConfig) -> Path | None:
    if not any(history.values()):
        return None
    path = run_dir / "stability.png"
    plot_stability(dict(history), path, title=f"{config.variant} on {Path(config.data).name}")
    return path


def _prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {prefix + k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _summary(scores: dict[str, float]) -> str:
    keys = ("hr_20_click", "hr_20_purchase", "ndcg_20_purchase")
    return ", ".join(f"{k}={scores[k]:.4f}" for k in keys if k in scores)
