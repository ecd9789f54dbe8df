"""Fit a GAN user model on stored display sets, track it in MLflow, save it.

Metrics (MLflow names): ``usermodel/train_loss``, ``usermodel/val_loss``,
``usermodel/val_prec1``, ``usermodel/val_prec2`` per epoch (and ``usermodel/adv_generator``,
``usermodel/adv_reward`` in the adversarial phase); at the end ``usermodel/test_*`` and the
baselines' ``baseline/<name>/test_prec1|2``. The saved model is logged as an artifact, so a
later ``recrl slate --user-model`` can point at the file or at the run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from recrl.models.user_model.baselines import (
    CooccurrenceKNN,
    LogisticClickModel,
    PopularityBaseline,
    softmax_log_likelihood,
)
from recrl.models.user_model.checkpoint import save_user_model
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.metrics import precision_metrics
from recrl.models.user_model.network import UserModel
from recrl.models.user_model.trainer import evaluate, fit_user_model
from recrl.pipelines.display_sets.records import DisplaySetDataset, load_display_sets
from recrl.pipelines.tracking import NullTracker, Tracker

logger = logging.getLogger(__name__)
MODEL_FILE = "user_model.pt"


@dataclass(frozen=True)
class UserModelJob:
    """One fit: which display sets, which model settings, where to write, whether to track."""

    data: str
    """Display-set folder (written by ``recrl usermodel build``)."""
    out_dir: str
    """Output folder: receives ``user_model.pt``."""
    model: UserModelConfig = field(default_factory=UserModelConfig)
    """User-model settings."""
    train_split: Literal["train", "test"] = "train"
    """Split whose page views are fitted: ``train`` for the model policies learn from,
    ``test`` for the held-out test environment (paper §6.2: fitted on test users only and
    never used for training); test metrics then describe the fit, not generalisation."""
    baselines: bool = True
    """Also fit and report popularity, co-occurrence kNN and the logistic click model."""
    tracking: bool = True
    """Log the fit to MLflow (through `recrl.pipelines.tracking`)."""
    experiment: str = "recrl-usermodel"
    """MLflow experiment name."""


def _metric_name(key: str) -> str:
    # "val/prec1" → "usermodel/val_prec1"; "adv/generator" → "usermodel/adv_generator"
    return "usermodel/" + key.replace("/", "_")


def evaluate_split(model: UserModel, data: DisplaySetArrays) -> dict[str, float]:
    """``loss`` (NLL), ``prec1``, ``prec2`` of a click model on one split."""
    return evaluate(model, data)


def baseline_metrics(dataset: DisplaySetDataset, split: str, seed: int = 0) -> dict[str, dict]:
    """prec@1, prec@2 and softmax log-likelihood of each baseline on ``split``."""
    train, target = dataset.splits["train"], dataset.splits[split]
    t = target.tensors()
    out = {}
    for name, baseline in (
        ("popularity", PopularityBaseline(dataset.n_items)),
        ("iknn", CooccurrenceKNN(dataset.n_items)),
        ("logistic", LogisticClickModel(dataset.item_features, seed=seed)),
    ):
        scores = baseline.fit(train).scores(target)
        out[name] = {
            **precision_metrics(scores, t["shown_mask"], t["click"]),
            "log_lik": softmax_log_likelihood(scores, target),
        }
    return out


@dataclass(frozen=True)
class UserModelResult:
    """What a user-model fit produced."""

    model_path: str
    """The saved ``user_model.pt`` (`recrl.models.user_model.checkpoint.load_user_model`)."""
    best_epoch: int
    """Epoch of the lowest validation loss, the one kept."""
    test: dict[str, float]
    """``loss`` (NLL), ``prec1``, ``prec2`` of the kept model on the test split."""
    test_mle: dict[str, float] | None = None
    """The same for the maximum-likelihood model before the adversarial phase (l2 only)."""
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    """Test metrics of the baselines, by name (empty without ``baselines``)."""
    run_id: str | None = None
    """The MLflow run (None without tracking)."""


def run_user_model_job(job: UserModelJob, *, progress: bool = True) -> UserModelResult:
    """Fit, evaluate on test, save; returns the test metrics and the model path."""
    dataset = load_display_sets(job.data)
    tracker = Tracker(job.experiment) if job.tracking else NullTracker()
    params = {
        "model": dataclasses.asdict(job.model),
        "data": {"path": job.data, "source": dataset.meta["source"], "fit_on": job.train_split,
                 "n_items": dataset.n_items, "set_size": dataset.meta["set_size"]},
    }  # fmt: skip
    if job.train_split not in dataset.splits:
        raise ValueError(f"train_split must be one of {sorted(dataset.splits)}: {job.train_split}")
    run_name = f"usermodel-{job.model.state}-{job.model.regularizer}-{job.train_split}"
    with tracker:
        tracker.start(run_name, params=params, tags={"kind": "user_model"})

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            tracker.log_metrics({_metric_name(k): v for k, v in metrics.items()}, step=epoch)

        fit = fit_user_model(
            job.model,
            dataset.splits[job.train_split],
            dataset.splits["val"],
            dataset.item_features,
            on_epoch=on_epoch,
            progress=progress,
        )
        final_step = len(fit.history)
        test = evaluate_split(fit.model, dataset.splits["test"])
        summary: dict[str, Any] = {"best_epoch": fit.best_epoch, "test": test}
        tracker.log_metrics({f"usermodel/test_{k}": v for k, v in test.items()}, step=final_step)
        if fit.mle_model is not fit.model:
            mle = evaluate_split(fit.mle_model, dataset.splits["test"])
            summary["test_mle"] = mle
            tracker.log_metrics({f"usermodel/test_mle_{k}": v for k, v in mle.items()}, final_step)
        if job.baselines:
            summary["baselines"] = baseline_metrics(dataset, "test", job.model.seed)
            tracker.log_metrics(
                {f"baseline/{name}/test_{k}": v
                 for name, values in summary["baselines"].items() for k, v in values.items()},
                step=final_step,
            )  # fmt: skip
        path = save_user_model(
            Path(job.out_dir) / MODEL_FILE,
            fit.model,
            fit.reward,
            dataset.item_features,
            extra={
                "data": job.data,
                "fit_on": job.train_split,
                "test": test,
                "run_id": tracker.run_id,
            },
        )
        tracker.log_artifact(path)
        run_id = tracker.run_id or None  # the tracker forgets it when the run ends
    logger.info("user model saved to %s (test prec@1 %.3f)", path, test["prec1"])
    return UserModelResult(
        model_path=str(path), best_epoch=fit.best_epoch, test=test,
        test_mle=summary.get("test_mle"), baselines=summary.get("baselines", {}),
        run_id=run_id,
    )  # fmt: skip
