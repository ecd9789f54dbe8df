"""What the served models of every family share: the model folder's name, the error a
scoring server answers with HTTP 400, raw ↔ encoded item ids, the pinned requirements, and
publishing a model — saved atomically, logged to the job's MLflow run, registered on
request.

The families' models are `recrl.pipelines.sasrec.serving` (a history in, top-k items out)
and `recrl.pipelines.slate.serving` (a history and a candidate pool in, a slate out). This
module talks to MLflow for the model format and the registry only; the run it logs into is
the `recrl.pipelines.tracking.Tracker`'s, through its public methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from recrl.pipelines.atomic_output import staged_output

if TYPE_CHECKING:
    from recrl.pipelines.tracking import Tracker

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
"""The model folder, in the job's output folder and in the MLflow run's artifacts."""
PINNED_PACKAGES = ("recrl", "torch", "mlflow", "numpy", "pandas", "pyarrow")
"""Packages a served model records with their installed versions (its ``requirements.txt``)."""


class BadRequest(MlflowException):
    """A request the model cannot answer; the scoring server returns it as HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ItemCatalogue:
    """Raw item ids ↔ encoded ids ``0..I-1`` (the row of the raw id in ``raw_ids``)."""

    def __init__(self, raw_ids: np.ndarray) -> None:
        self.raw_ids = raw_ids
        """Raw id of each encoded id [I]."""
        self._order = np.argsort(raw_ids, kind="stable")
        self._sorted = raw_ids[self._order]

    def __len__(self) -> int:
        return len(self.raw_ids)

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Encoded ids of ``raw`` [N]; -1 where an id is not in the catalogue."""
        unknown = np.full(len(raw), -1, dtype=np.int64)
        if len(raw) == 0 or (self._sorted.dtype.kind in "iu") != (raw.dtype.kind in "iu"):
            return unknown  # ids of another type than the catalogue's (str against int)
        if raw.dtype.kind not in "iu":
            raw = raw.astype(object)
        try:
            at = np.searchsorted(self._sorted, raw).clip(0, len(self._sorted) - 1)
        except TypeError:  # a mix of types
            return unknown
        return np.where(self._sorted[at] == raw, self._order[at], unknown)


def requirements() -> list[str]:
    """`PINNED_PACKAGES` pinned to the versions installed here (a name alone when one is
    not installed), so ``mlflow models serve`` outside this environment gets the same."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in PINNED_PACKAGES:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def publish_model(
    tracker: Tracker, save: Callable[[Path], object], folder: Path, register_model: str | None
) -> None:
    """Write a model with ``save(staging)`` and swap it in as ``folder`` (named `MODEL_DIR`:
    its name in the run's artifacts), log it to the tracker's run, and register it as a new
    version of ``register_model`` when given (tagging the run ``recrl.registered_model``)."""
    with staged_output(str(folder)) as staging:
        save(Path(staging))
    tracker.log_artifact(str(folder))  # -> artifacts/model (spooled by path during an outage)
    run_id = tracker.resolve(tracker.run_id)
    if register_model is None:
        logger.info("model logged: mlflow models serve -m runs:/%s/%s --env-manager local",
                    run_id, MODEL_DIR)  # fmt: skip
        return
    version = register(tracker.uri, run_id, register_model) if not tracker.down else None
    if version is None:
        logger.warning(
            "the model was not registered as %r (MLflow unreachable); once the run is "
            "uploaded, register it with: mlflow.register_model('runs:/<run id>/%s', %r)",
            register_model, MODEL_DIR, register_model,
        )  # fmt: skip
        return
    tracker.set_tags({"recrl.registered_model": f"{register_model}/{version}"})
    logger.info("registered %s version %s: mlflow models serve -m models:/%s/%s "
                "--env-manager local", register_model, version, register_model,
                version)  # fmt: skip


def register(tracking_uri: str, run_id: str, name: str) -> str | None:
    """Register ``runs:/run_id/model`` as a new version of ``name`` (created if absent);
    the version, or None when the registry cannot be reached."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_DIR}"
        return client.create_model_version(name, source, run_id=run_id).version
    except MlflowException as error:
        logger.warning("registering the model as %r failed: %s", name, error)
        return None
