"""The `recrl train` job: RLlib updates, periodic validation, MLflow, checkpoints (design.md §2-4).

One MLflow run per job: params = the resolved `TrainConfig`, metrics over updates = every
loss component and Q statistic the Learner logs plus ``eval/…`` on val, tags = variant,
dataset and git commit; artifacts = meta.json, the final checkpoint and the stability
figure. Non-finite losses or Q values stop the job with `TrainingDiverged`, keeping the
last checkpoint taken while the values were still finite.

A checkpoint folder also holds ``progress.json`` (updates, validation history, curves and
the MLflow run id) and ``rng_state.pkl`` (each learner's torch/numpy/python RNG state), so
a job restarted with ``resume_from`` continues the same run and the same curves; this is
how a Tune trial survives a retry and how ``recrl train --resume RUN_DIR`` continues.
What a resumed job restores: the weights of every network (online, twin or Polyak target),
the optimiser, the update count (which also fixes the objective's random draws, see
`recrl.pipelines.sasrec.rl_module`), the RNG state of dropout and the position in the data
stream (the stream is read again in its fixed order and the batches already trained on are
dropped, far faster than they were trained on). With one learner a resumed run ends bit for
bit where the uninterrupted one ends; with several, Ray Data's `streaming_split` deals the
blocks to the learners as they ask, so which rows each learner's stream holds, and skips,
can differ from the uninterrupted run. The run folder holds ``config.json`` (the full
`TrainConfig` and the MLflow run id, written at the start), so the run can be resumed
without repeating its settings; a new job into a run folder holding a checkpoint is
refused unless it resumes or overwrites. Every file of the run folder is written to a
temporary name and renamed, so a job killed at any moment leaves the previous version.
If the MLflow server is unreachable, training goes on and the run folder gets
``mlflow_spool.jsonl`` (see `recrl.pipelines.tracking`; ``recrl mlflow-sync`` uploads it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from recrl.pipelines.atomic_output import atomic_write
from recrl.pipelines.errors import JobFailedError, UserError
from recrl.pipelines.evaluation import (
    EvalConfig,
    evaluate,
    evaluate_with_popularity,
    load_eval_split,
)
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.stability_plot import StepMarker, plot_stability
from recrl.pipelines.tracking import NullTracker, Tracker, git_commit
from recrl.pipelines.tracking_names import describe_run
from recrl.pipelines.tracking_spool import SPOOL_FILE

logger = logging.getLogger(__name__)

STABILITY_METRICS = ("hr_20_purchase", "ndcg_20_purchase", "hr_20_click", "ndcg_20_click")
"""Validation metrics drawn in the stability figure, at their evaluation steps."""
PLOTTED_PREFIXES = ("loss/", "q/")
"""Learner metrics drawn in the stability figure: every point logged to MLflow."""
UNNAMED_SETTINGS = frozenset(
    {"data", "checkpoint_dir", "experiment", "tracking", "eval_max_rows", "eval_batch_size",
     "num_learners", "num_gpus_per_learner", "num_cpus_per_learner",
     "custom_resources_per_learner", "register_model"}
)  # fmt: skip
"""`TrainConfig` fields a run's default name leaves out: where it runs and logs, not what
it trains."""


PROGRESS_FILE = "progress.json"
"""In every checkpoint folder: what a resumed job needs besides the RLlib state."""
RNG_FILE = "rng_state.pkl"
"""In every checkpoint folder: each learner's RNG states (torch, numpy, python)."""
CONFIG_FILE = "config.json"
"""In the run folder: the job's full `TrainConfig` and its MLflow run id."""
CHECKPOINT_DIR = "checkpoint"
"""The run folder's last good checkpoint (``checkpoint.old`` while a new one replaces it)."""


class RunDirExistsError(UserError):
    """A new job into a run folder that holds another job's checkpoint."""


class TrainingDiverged(JobFailedError, RuntimeError):
    """A loss or Q value became NaN/inf; the message names the metric, the update and the
    last good checkpoint."""

    def __init__(self, message: str, updates: int = 0) -> None:
        super().__init__(message)
        self.updates = updates
        """Update at which the values were found non-finite."""


@dataclass(frozen=True)
class EvalPoint:
    """One validation evaluation, as `train`'s ``on_eval`` callback receives it."""

    updates: int
    """Gradient updates so far."""
    scores: dict[str, float]
    """Validation metrics (``hr_20_purchase``...)."""
    learner: dict[str, float]
    """Learner metrics of the last iteration (``loss/…``, ``q/…``)."""
    checkpoint: Path
    """The checkpoint saved right after this evaluation (with its ``progress.json``)."""


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
    experiment_id: str | None = None
    """The MLflow experiment of ``run_id`` (None: not tracked, or the store was down)."""
    seconds_training: float = 0.0
    seconds_evaluating: float = 0.0
    learners: list[dict[str, Any]] = field(default_factory=list)
    """Each learner at the last checkpoint: rank, Ray node id, device, weights digest
    (`recrl.pipelines.sasrec.algorithm.learner_placements`); also in ``progress.json``."""

    @property
    def eval_share(self) -> float:
        """Fraction of the job's wall time spent in evaluation."""
        total = self.seconds_training + self.seconds_evaluating
        return self.seconds_evaluating / total if total else 0.0


def train(
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    resume_from: str | Path | None = None,
    on_eval: Callable[[EvalPoint], None] | None = None,
    overwrite: bool = False,
    run_id: str | None = None,
    configure_algorithm: Callable[[Any], Any] | None = None,
) -> TrainResult:
    """Train ``config.variant`` on ``config.data``; see the module docstring.

    ``run_name`` names the MLflow run (default `default_run_name`) and ``parent_run_id``
    nests it under a sweep's run. ``resume_from`` is a checkpoint folder written by an
    earlier job with the same config: training continues from its update count, in its
    MLflow run. ``on_eval`` is called after each validation evaluation and its checkpoint.
    A ``run_dir`` holding a checkpoint is refused (`RunDirExistsError`) unless the job
    resumes or ``overwrite`` (which replaces what an earlier job wrote there). ``run_id``
    continues that MLflow run when there is no checkpoint to take it from.
    ``configure_algorithm`` receives the RLlib ``AlgorithmConfig`` before it is built and
    returns the one to build (a sweep uses it to stream a train split it shared).
    """
    from recrl.pipelines.checks import check_output_dir, check_prepared_dataset
    from recrl.pipelines.ray_runtime import ensure_ray
    from recrl.pipelines.sasrec.algorithm import build_algorithm, learner_metrics, scoring_network

    meta = check_prepared_dataset(config.data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(run_dir or config.checkpoint_dir or f"runs/{config.variant}-{stamp}")
    check_output_dir(run_dir, "--run-dir")
    checkpoint = run_dir / CHECKPOINT_DIR
    if resume_from is None:
        _claim_run_dir(run_dir, overwrite)
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_config = EvalConfig(batch_size=config.eval_batch_size, max_rows=config.eval_max_rows)
    val = load_eval_split(config.data, "val")
    test = load_eval_split(config.data, "test")

    # an MLflow outage does not stop training: its writes go to a spool beside the checkpoint
    spool = run_dir / SPOOL_FILE
    tracker = Tracker(config.experiment, spool=spool) if config.tracking else NullTracker()
    tags = {"variant": config.variant, "dataset": Path(config.data).name,
            "git.commit": git_commit() or "unknown"}  # fmt: skip
    params = {**config.to_dict(), "data.n_items": meta["n_items"], "data.L": meta["L"]}
    result = TrainResult(run_dir=run_dir, checkpoint=None, updates=0)
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)
    progress = _read_progress(resume_from) if resume_from else None

    objective = config.objective
    if objective.has_phase2 and not objective.in_phase2(config.total_steps - 1):
        logger.warning(
            "warmup_steps (%d) >= total_steps (%d): %s never reaches its phase 2 (%s "
            "weighting); lower warmup_steps to train it",
            objective.warmup_steps, config.total_steps, config.variant, objective.phase2,
        )  # fmt: skip
    ensure_ray()
    _check_resources(config)
    run_id = (progress or {}).get("run_id") or run_id
    if run_id and config.tracking:
        result.run_id = tracker.resume(run_id)
    elif run_id:  # resumed with --no-mlflow: keep the run id for a later resume that tracks
        result.run_id = run_id
    else:
        result.run_id = (
            tracker.start(run_name or default_run_name(config), params=params, tags=tags,
                          parent_run_id=parent_run_id) or None
        )  # fmt: skip
    saved = {"config": dataclasses.asdict(config), "run_id": result.run_id}
    atomic_write(run_dir / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(saved, indent=2)))
    with tracker:
        if progress is None and run_id is None:
            tracker.log_artifact(str(Path(config.data) / "meta.json"))
        algo = build_algorithm(config, meta, configure=configure_algorithm)
        diverged: TrainingDiverged | None = None
        try:
            if progress is not None:
                _restore(algo, Path(resume_from), progress, result, history)
            loop = _Loop(algo, config, val, eval_config, tracker, history, result, checkpoint,
                         learner_metrics, scoring_network, on_eval)  # fmt: skip
            loop.run()
            start = time.perf_counter()
            network = scoring_network(algo)
            # test: every row, the popularity baseline on the same rows as the model
            result.test_metrics, result.popularity_test_metrics = evaluate_with_popularity(
                module_score_fn(network, config.rank_with),
                test,
                meta["item_counts_train"],
                EvalConfig(config.eval_batch_size),
                device=module_device(network),
            )
            result.seconds_evaluating += time.perf_counter() - start
            tracker.log_metrics(_prefixed("test/", result.test_metrics), step=result.updates)
            tracker.log_metrics(
                _prefixed("test_popularity/", result.popularity_test_metrics), step=result.updates
            )
            _save(algo, checkpoint, result, history)
            result.checkpoint = checkpoint
            tracker.log_artifact(str(checkpoint), artifact_path="checkpoint")
            if config.tracking:  # the servable model: RUN_DIR/model, logged, maybe registered
                from recrl.pipelines.sasrec.serving import log_recommender

                log_recommender(tracker, network, config, run_dir)
        except TrainingDiverged as error:
            diverged = error
            raise
        finally:
            figure = _plot(history, run_dir, config, diverged)
            if figure is not None:
                tracker.log_artifact(str(figure))
            algo.stop()
        tracker.log_metrics({"time/eval_share": result.eval_share}, step=result.updates)
    result.run_id = tracker.resolve(result.run_id)  # a placeholder uploaded meanwhile
    result.experiment_id = tracker.experiment_id
    return result


@dataclass
class _Loop:
    """The update/evaluate loop of `train`, with everything it touches."""

    algo: Any
    config: TrainConfig
    val: Any
    eval_config: EvalConfig
    tracker: Tracker
    history: dict[str, list[tuple[int, float]]]
    result: TrainResult
    checkpoint: Path
    learner_metrics: Callable
    scoring_network: Callable
    on_eval: Callable[[EvalPoint], None] | None

    def run(self) -> None:
        from recrl.pipelines.sasrec.algorithm import NUM_UPDATES_METRIC
        from tqdm import tqdm

        config, result = self.config, self.result
        next_eval = (result.updates // config.eval_interval + 1) * config.eval_interval
        with tqdm(total=config.total_steps, initial=result.updates, unit="upd",
                  desc=f"train {config.variant}", disable=None) as progress:  # fmt: skip
            while result.updates < config.total_steps:
                start = time.perf_counter()
                metrics = self.learner_metrics(self.algo.train())
                result.seconds_training += time.perf_counter() - start
                updates = int(metrics[NUM_UPDATES_METRIC])
                progress.update(updates - result.updates)
                result.updates = updates
                _check_finite(metrics, updates, result.checkpoint)
                self.tracker.log_metrics(metrics, step=updates)
                for name, value in metrics.items():
                    if name.startswith(PLOTTED_PREFIXES):
                        self.history[name].append((updates, value))
                progress.set_postfix(loss=f"{metrics.get('loss/total', float('nan')):.3f}")
                if updates >= next_eval or updates >= config.total_steps:
                    next_eval += config.eval_interval
                    self.evaluate(updates, metrics)

    def evaluate(self, updates: int, metrics: dict[str, float]) -> None:
        result = self.result
        start = time.perf_counter()
        network = self.scoring_network(self.algo)
        score_fn = module_score_fn(network, self.config.rank_with)
        scores = evaluate(score_fn, self.val, self.eval_config, device=module_device(network))
        result.seconds_evaluating += time.perf_counter() - start
        result.val_history.append({"updates": updates, **scores})
        self.tracker.log_metrics(_prefixed("eval/", scores), step=updates)
        for name in STABILITY_METRICS:
            self.history[f"eval/{name}"].append((updates, scores[name]))
        logger.info("update %d: val %s", updates, _summary(scores))
        _save(self.algo, self.checkpoint, result, self.history)  # finite here: last good
        result.checkpoint = self.checkpoint
        if self.on_eval is not None:
            self.on_eval(EvalPoint(updates, scores, metrics, self.checkpoint))


def _check_finite(metrics: dict[str, float], updates: int, checkpoint: Path | None) -> None:
    bad = [k for k, v in metrics.items() if k.startswith(("loss/", "q/")) and not math.isfinite(v)]
    if bad:
        kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint yet"
        raise TrainingDiverged(
            f"{', '.join(sorted(bad))} became non-finite at update {updates}; training stopped "
            f"({kept}). Lower lr, cql_alpha or raise grad clipping.",
            updates,
        )


def module_device(network: torch.nn.Module) -> torch.device:
    """Where ``network``'s weights live: a local learner's module is on the learner's GPU,
    and the evaluation batches must be moved there (the splits are loaded on the CPU)."""
    return next(network.parameters()).device


def module_score_fn(network, head: str):
    """Evaluation's score function (`recrl.pipelines.evaluation.ScoreFn`) of a SASRec module's
    ``head`` (``config.rank_with``)."""

    def score(state, state_len):
        return network.score_all(state, state_len, head)

    return score


def _check_resources(config: TrainConfig) -> None:
    """A GPU request the cluster cannot meet fails here with a clear message, instead of in
    RLlib's device assertion or as learners waiting forever for a GPU."""
    import ray
    from recrl.pipelines.sasrec.device import check_gpu_request

    check_gpu_request(config, ray.cluster_resources().get("GPU", 0.0))


def _claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a new job into ``run_dir`` when it holds a checkpoint, unless ``overwrite``:
    then remove what a training job wrote there (nothing else)."""
    found = latest_checkpoint(run_dir)
    if found is None:
        return
    if not overwrite:
        updates = json.loads((found / PROGRESS_FILE).read_text()).get("updates", "?")
        raise RunDirExistsError(
            f"--run-dir {run_dir} holds the checkpoint of an earlier job (update {updates}); "
            f"continue it with `recrl train --resume {run_dir}` or replace it with --overwrite"
        )
    from recrl.pipelines.serving import MODEL_DIR

    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.tmp", f"{CHECKPOINT_DIR}.old", MODEL_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (CONFIG_FILE, "stability.png", SPOOL_FILE, f"{SPOOL_FILE}.synced"):
        (run_dir / name).unlink(missing_ok=True)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The last complete checkpoint of a run folder: ``checkpoint``, or ``checkpoint.old``
    when a job was killed between the two renames of `_save`; None when there is none."""
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        folder = Path(run_dir) / name
        if (folder / PROGRESS_FILE).is_file():
            return folder
    return None


def read_run_config(run_dir: str | Path) -> tuple[TrainConfig, str | None]:
    """The `TrainConfig` and MLflow run id a job saved in its run folder (``config.json``)."""
    from recrl.pipelines.settings import from_dict

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: no {CONFIG_FILE} there, not a recrl train run folder")
    try:
        saved = json.loads(path.read_text())
        return from_dict(TrainConfig, saved["config"]), saved.get("run_id")
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"--resume {run_dir}: {path} is unreadable ({error})") from None


def _save(algo, checkpoint: Path, result: TrainResult, history: dict) -> None:
    import pickle

    from recrl.pipelines.sasrec.algorithm import learner_placements, learner_rng_states

    staging = checkpoint.with_name(checkpoint.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    algo.save_to_path(str(staging.resolve()))
    result.learners = learner_placements(algo)
    if len({learner["weights_sha256"] for learner in result.learners}) > 1:
        # DDP averages the gradients, so replicas stay bit-identical; if they do not, the
        # checkpoint (the first learner's state) is not what the others trained.
        logger.error("data-parallel learners hold different weights: %s", result.learners)
    progress = {"updates": result.updates, "run_id": result.run_id,
                "val_history": result.val_history, "learners": result.learners,
                "history": {name: points for name, points in history.items()}}  # fmt: skip
    (staging / RNG_FILE).write_bytes(pickle.dumps(learner_rng_states(algo)))
    (staging / PROGRESS_FILE).write_text(json.dumps(progress))
    # never without a complete checkpoint: checkpoint -> .old, .tmp -> checkpoint, drop .old
    old = checkpoint.with_name(checkpoint.name + ".old")
    if checkpoint.exists():
        shutil.rmtree(old, ignore_errors=True)
        checkpoint.rename(old)
    staging.rename(checkpoint)
    shutil.rmtree(old, ignore_errors=True)


def _read_progress(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / PROGRESS_FILE
    if not path.is_file():
        raise UserError(
            f"{path} is missing: resume_from must be a checkpoint folder written by recrl train"
        )
    return json.loads(path.read_text())


def _restore(algo, folder: Path, progress: dict, result: TrainResult, history: dict) -> None:
    import pickle

    from recrl.pipelines.sasrec.algorithm import set_learner_rng_states

    algo.restore_from_path(str(folder.resolve()))
    if (folder / RNG_FILE).is_file():
        set_learner_rng_states(algo, pickle.loads((folder / RNG_FILE).read_bytes()))
    result.updates = int(progress["updates"])
    algo.skip_batches(result.updates)  # the stream continues after the batches trained on
    result.val_history = list(progress["val_history"])
    for name, points in progress["history"].items():
        history[name] = [tuple(point) for point in points]
    logger.info("resumed from %s at update %d", folder, result.updates)


def _plot(
    history, run_dir: Path, config: TrainConfig, diverged: TrainingDiverged | None
) -> Path | None:
    """The run's stability figure (``stability.png``), with the update where the objective
    switches to its phase 2 and the one where training diverged marked."""
    if not any(history.values()):
        return None
    objective, markers = config.objective, []
    if objective.has_phase2 and objective.warmup_steps < config.total_steps:
        markers.append(StepMarker(objective.warmup_steps, f"phase 2 ({objective.phase2})"))
    if diverged is not None:
        markers.append(StepMarker(diverged.updates, f"diverged at update {diverged.updates}",
                                  diverged=True))  # fmt: skip
    path = run_dir / "stability.png"  # written atomically by `plot_stability`
    plot_stability(dict(history), path, title=f"{default_run_name(config)} on "
                   f"{Path(config.data).name}", markers=markers)  # fmt: skip
    return path


def default_run_name(config: TrainConfig) -> str:
    """``snqn n_neg=10 seed=0``: the variant, each setting that differs from its preset
    (`TrainConfig.for_variant`; `UNNAMED_SETTINGS` left out) and the seed."""
    preset = TrainConfig.for_variant(config.variant, config.data).to_dict()
    changed = {
        key.rsplit(".", 1)[-1]: value
        for key, value in config.to_dict().items()
        if key.split(".", 1)[0] not in UNNAMED_SETTINGS | {"variant", "seed"}
        and value != preset.get(key)
    }
    return describe_run(config.variant, {**changed, "seed": config.seed})


def _prefixed(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {prefix + k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _summary(scores: dict[str, float]) -> str:
    keys = ("hr_20_click", "hr_20_purchase", "ndcg_20_purchase")
    return ", ".join(f"{k}={scores[k]:.4f}" for k in keys if k in scores)
