"""`recrl tune`: run a study with Ray Tune, track it in MLflow, write its stability report.

The sweep lives in ``<storage>/<study name>/``: Tune's experiment state, one folder per
trial (its checkpoints, ``params.json``, ``result.json``), ``sweep.json`` (the resolved
study and the parent MLflow run id) and, at the end, ``report.png`` / ``report.csv``.
MLflow gets one parent run per sweep (the study as params, the report as artifacts) and
one child run per trial with only the training metrics — not every Tune config key.
An interrupted sweep is continued with ``resume=True`` (Tune restores the unfinished
trials from their last checkpoints; the parent run is reopened).
With ``shared_data``, the driver reads the train split once into the object store before
the trials start and hands it to them (`recrl.pipelines.tune.shared_split`).
"""

from __future__ import annotations

import io
import json
import logging
import math
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from recrl.pipelines.checks import dataset_uri
from recrl.pipelines.errors import UserError
from recrl.pipelines.prepare.meta import read_meta
from recrl.pipelines.sasrec.config import PRE_LEARNER_CPUS, READ_TASK_CPUS, READER_CPUS
from recrl.pipelines.tracking import NullTracker, Tracker, absolute_tracking_uri
from recrl.pipelines.tune.bandit_trial import run_bandit_trial
from recrl.pipelines.tune.report import (
    GroupSummary,
    format_table,
    read_sweep,
    summarize,
    write_csv,
    write_figure,
    write_stability_figure,
)
from recrl.pipelines.tune.slate_trial import run_slate_trial
from recrl.pipelines.tune.study import StudyConfig, StudyError, study_from_dict
from recrl.pipelines.tune.trainable import SweepContext, run_trial, trial_dirname, trial_name

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = Path("runs/sweeps")
SWEEP_FILE = "sweep.json"
TRAINABLES = {"sasrec": run_trial, "bandit": run_bandit_trial, "slate": run_slate_trial}
"""The Tune function of each trainable kind (`recrl.pipelines.tune.kinds`)."""


class SweepExistsError(UserError, RuntimeError):
    """The sweep folder exists and neither resume nor a new name was asked for."""


@dataclass
class SweepReport:
    """What `write_report` produced."""

    groups: list[GroupSummary]
    table: str
    figure: Path
    csv: Path
    stability: Path | None = None
    """The sweep's stability figure (`write_stability_figure`); None for bandit and slate
    sweeps, whose trials log no loss or Q history."""
    experiment_id: str | None = None
    """The MLflow experiment of the sweep's parent run (None: not tracked)."""


def run_sweep(
    study: StudyConfig,
    *,
    storage: str | Path = DEFAULT_STORAGE,
    resume: bool = False,
    tracking: bool = True,
    verbose: int = 1,
) -> SweepReport:
    """Run ``study`` (see the module docstring) and return its stability report.
    ``verbose`` is Tune's console output: 0 silent, 1 the trial table (the default)."""
    import ray
    from ray import tune
    from recrl.pipelines.ray_runtime import ensure_ray

    storage = Path(storage).resolve()
    # Trials run in their own working directories (and maybe on other nodes): a local
    # dataset path must be absolute. Read its meta.json now so a wrong path fails here.
    if study.data:
        study = replace(study, data=dataset_uri(study.data))
    if study.kind.reads_dataset:
        try:
            read_meta(study.data)
        except (FileNotFoundError, OSError) as exc:
            raise StudyError(
                f"{study.source}: data {study.data} is not a prepared dataset ({exc}); run "
                "`recrl prepare` first or point --set data=... at one"
            ) from exc
    sweep_dir = storage / study.name
    state_file = sweep_dir / SWEEP_FILE
    if resume and not state_file.is_file():
        raise SweepExistsError(f"{sweep_dir}: nothing to resume (no {SWEEP_FILE})")
    if not resume and sweep_dir.exists():
        raise SweepExistsError(
            f"{sweep_dir} exists: continue it with --resume, or give the sweep another name "
            f"(--set name=...)"
        )
    ensure_ray()
    cluster = ray.cluster_resources()
    gpus = study.resources.gpu
    if gpus and not cluster.get("GPU"):
        logger.warning(
            "the cluster has no GPUs: the study's request of %s GPU per trial is dropped and "
            "trials train on CPU",
            gpus,
        )
        gpus = 0.0
    study = with_reader_cpus(study, resume)
    concurrency = max_concurrent_trials(study, cluster.get("CPU", 0.0))
    shared = None
    if study.shared_data:
        # Read before the parent run starts: a dataset that cannot be shared fails here.
        from recrl.pipelines.tune.shared_split import share_train_split

        shared = share_train_split(study.data)

    uri = absolute_tracking_uri() if tracking else None
    tracker = Tracker(experiment=study.experiment, uri=uri) if tracking else NullTracker()
    if resume:
        saved = json.loads(state_file.read_text())
        parent = tracker.resume(saved["parent_run_id"]) if saved.get("parent_run_id") else None
    else:
        parent = tracker.start(
            study.name,
            params={"study": study.to_dict(), "trials.grid_points": study.n_grid_points()},
            tags={
                "recrl.kind": "sweep",
                "recrl.trainable": study.trainable,
                "dataset": Path(study.data).name if study.data else "",
            },
        )
        sweep_dir.mkdir(parents=True)
        state_file.write_text(
            json.dumps({"study": study.to_dict(), "parent_run_id": parent or None}, indent=2)
        )
    context = SweepContext(study, parent or None, uri, gpus, shared)
    trainable = tune.with_resources(
        tune.with_parameters(TRAINABLES[study.trainable], context=context),
        tune.PlacementGroupFactory(trial_bundles(study, gpus)),
    )
    with tracker:
        if resume:
            tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(study),
                tune_config=tune.TuneConfig(
                    metric=study.metric,
                    mode=study.mode,
                    num_samples=study.num_samples,
                    scheduler=_scheduler(study),
                    max_concurrent_trials=concurrency,
                    trial_name_creator=lambda trial: trial_name(trial.config, study),
                    trial_dirname_creator=lambda trial: trial_dirname(
                        trial.config, study, trial.trial_id
                    ),
                ),
                run_config=tune.RunConfig(
                    name=study.name,
                    storage_path=str(storage),
                    failure_config=tune.FailureConfig(max_failures=study.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    verbose=verbose,
                ),
            )
        logger.info("sweep %s: %d grid points, up to %d trials at once%s", study.name,
                    study.n_grid_points() * study.num_samples, concurrency,
                    ", train split shared" if shared is not None else "")  # fmt: skip
        # Tune prints its experiment header at every verbosity, in box characters that
        # depend on the console's encoding; verbose=0 means no console output at all.
        quiet = redirect_stdout(io.StringIO()) if verbose == 0 else nullcontext()
        with quiet:
            grid = tuner.fit()
        errors = [r for r in grid if r.error is not None]
        report = write_report(sweep_dir, study, tracker)
        report.experiment_id = tracker.experiment_id
        tracker.log_metrics({"sweep/trials": len(grid), "sweep/errored_trials": len(errors)}, 0)
    if errors:
        logger.error("%d trial(s) failed after retries; first error: %s", len(errors),
                     errors[0].error)  # fmt: skip
    return report


def trial_bundles(study: StudyConfig, gpus: float) -> list[dict[str, float]]:
    """The placement group of one trial: one bundle, the trial's process with its local
    learner. A SASRec trial's reader (pre-learner actor, read tasks) is not in it: Ray Data
    schedules its own tasks and actors outside the group of the process that runs the
    pipeline (checked on Ray 2.60, and a data bundle stayed empty), so the reader runs on
    CPUs that `max_concurrent_trials` keeps free."""
    return [{"CPU": study.resources.cpu, "GPU": gpus, **study.resources.custom}]


def with_reader_cpus(study: StudyConfig, resume: bool = False) -> StudyConfig:
    """``study``, checked to keep at least `READER_CPUS` free per trial that reads a dataset.

    A new sweep asking for less fails; a sweep resumed from before this minimum existed
    gets it, with a warning (its study cannot change, and as it was it could stall).
    """
    data_cpu = study.resources.data_cpu
    if not runs_readers(study) or data_cpu + 1e-9 >= READER_CPUS:
        return study
    why = (
        f"a trial's reader needs at least {READER_CPUS:g} (its pre-learner actor, "
        f"{PRE_LEARNER_CPUS:g}, and a read task, {READ_TASK_CPUS:g}), or it waits for a CPU"
    )
    if not resume:
        raise StudyError(f"{study.source}: resources.data_cpu is {data_cpu:g}; {why}")
    logger.warning("resources.data_cpu %g raised to %g: %s", data_cpu, READER_CPUS, why)
    return replace(study, resources=replace(study.resources, data_cpu=READER_CPUS))


def runs_readers(study: StudyConfig) -> bool:
    """Whether each trial runs a Ray Data reader of its own (read tasks and a pre-learner
    actor, outside its placement group): trials that read a dataset, unless the sweep
    shares the train split (`StudyConfig.shared_data`)."""
    return study.kind.reads_dataset and not study.shared_data


def max_concurrent_trials(study: StudyConfig, cluster_cpus: float) -> int:
    """Trials that may run at once: each holds ``cpu`` in its placement group and, when it
    runs a reader of its own (`runs_readers`), needs ``data_cpu`` more left free for it.
    Keeping the free CPUs in step with the running trials matters: ten trials on 16 CPUs
    with one CPU kept free for all their readers never reached their first evaluation
    (their pre-learner actors could not all start, and those that did left no CPU to the
    reads).
    Raises `StudyError` when not even one fits."""
    reads = runs_readers(study)
    per_trial = study.resources.cpu + (study.resources.data_cpu if reads else 0.0)
    fits = math.floor(cluster_cpus / per_trial + 1e-9)
    if fits < 1:
        needs = "resources.cpu + resources.data_cpu" if reads else "resources.cpu"
        raise StudyError(
            f"{study.source}: the cluster has {cluster_cpus:g} CPUs; a trial needs "
            f"{needs} = {per_trial:g}. Lower resources.cpu (fractions are fine, e.g. --set "
            "'resources={cpu: 0.5, data_cpu: 1}') or add CPUs."
        )
    return min(fits, study.max_concurrent_trials or fits)


def param_space(study: StudyConfig) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    if study.variants:
        space["variant"] = tune.grid_search(list(study.variants))
    space["seed"] = tune.grid_search(list(study.seeds))
    space.update({name: dim.tune_domain() for name, dim in study.search.items()})
    return space


def _scheduler(study: StudyConfig):
    if study.scheduler.type == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    first = next(iter(study.variants), None)
    reports = study.kind.reports(study.trial_settings(first, study.seeds[0], {}))
    return ASHAScheduler(
        time_attr="training_iteration",  # one per reported result
        max_t=reports,
        grace_period=study.scheduler.grace_period,
        reduction_factor=study.scheduler.reduction_factor,
    )


def load_sweep_study(sweep_dir: str | Path) -> tuple[StudyConfig, str | None]:
    """The study a sweep folder was run with and its parent MLflow run id."""
    state_file = Path(sweep_dir) / SWEEP_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"{sweep_dir}: no {SWEEP_FILE}; is it a recrl tune folder?")
    saved = json.loads(state_file.read_text())
    study = {k: v for k, v in saved["study"].items() if k != "source"}  # older sweep.json
    return study_from_dict(study, source=str(state_file)), saved.get("parent_run_id")


def write_report(
    sweep_dir: Path, study: StudyConfig, tracker: Tracker | None = None
) -> SweepReport:
    """Read the trials under ``sweep_dir``, write ``report.png`` / ``report.csv``, log them
    to ``tracker``'s run (the parent) and return the report."""
    r_max = _largest_reward(study.data) if study.kind.reads_dataset else 1.0
    runs = read_sweep(sweep_dir, study, r_max)
    groups = summarize(runs, study.report, study.mode)
    figure = write_figure(groups, Path(sweep_dir) / "report.png", study.metric,
                          title=f"{study.name}: {study.description}"[:100],
                          x_label=study.kind.step_key)  # fmt: skip
    table_path = write_csv(groups, Path(sweep_dir) / "report.csv", study.mode)
    table = format_table(groups, study.metric, study.mode)
    stability = write_stability_figure(groups, Path(sweep_dir) / "stability.png",
                                       title=f"{study.name}: mean ± std over seeds")  # fmt: skip
    if tracker is not None:
        tracker.log_artifact(str(figure), artifact_path="report")
        if stability is not None:
            tracker.log_artifact(str(stability.path), artifact_path="report")
        tracker.log_artifact(str(table_path), artifact_path="report")
        tracker.log_text(table, "report/report.txt")
        diverged = sum(len(g.diverged) for g in groups)
        tracker.log_metrics({"sweep/diverged_runs": diverged}, step=0)
    return SweepReport(groups, table, figure, table_path, stability and stability.path)


def _largest_reward(data: str) -> float:
    if not data:
        return 1.0
    try:
        rewards = read_meta(data).get("rewards", {})
        return max(float(v) for v in rewards.values()) if rewards else 1.0
    except (OSError, ValueError):
        logger.warning("cannot read meta.json of %s: the Q bound assumes r_max = 1", data)
        return 1.0
