"""The one module that talks to MLflow: runs, params, tags, metrics and artifacts.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlruns.db`` in the working
directory (MLflow 3 refuses the plain file store). ``dashboard_command`` prints how to open
the UI on it.

Failure policy (deliberate): if the store cannot be reached when a run *starts*,
``Tracker.start`` raises ``TrackingUnavailableError`` naming the URI — a run that would
record nothing must not start silently. Once started, a failed write (metrics batch, tags,
artifact) is logged as a warning the first time, at debug level afterwards, and counted in
``Tracker.failures`` instead of raised, so a long training run survives a short tracking
outage; ``end`` warns with the total. Against an HTTP server each write may first retry for
a while (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` bound that).
Training code never imports mlflow.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "recrl"
GIT_COMMIT_TAG = "git.commit"
PARENT_RUN_TAG = "mlflow.parentRunId"
# MLflow limits (mlflow.utils.validation): key length, value lengths, entities per batch.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

_INVALID_NAME_CHARS = re.compile(r"[^\w.\- /]")  # what MLflow accepts on every platform


class TrackingUnavailableError(RuntimeError):
    """The tracking store could not be reached when a run started."""


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def absolute_tracking_uri(uri: str | None = None) -> str:
    """`tracking_uri` with a relative sqlite path made absolute: processes that run in
    other working directories (Tune trials, Ray jobs) then write to the same database."""
    uri = tracking_uri(uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def dashboard_command(uri: str | None = None) -> str:
    """The shell command that opens the MLflow UI on the runs of ``uri``."""
    uri = tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        return f"python -m webbrowser {shlex.quote(uri)}"  # a server already serves the UI
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """HEAD commit of the checkout holding ``path`` (default: this package), else None."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return commit or None


def sanitize_name(name: str) -> str:
    """A metric/param key MLflow accepts: ``hr@20`` -> ``hr_20``; ``/`` namespaces are kept
    (``loss/td``), empty segments and leading/trailing slashes removed."""
    name = _INVALID_NAME_CHARS.sub("_", str(name))
    name = "/".join(part for part in name.split("/") if part not in ("", ".", ".."))
    return name[:MAX_KEY_LENGTH] or "_"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; values stringified and cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[sanitize_name(name)] = str(value)[:MAX_PARAM_VALUE_LENGTH]
    return flat


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {sanitize_name(k): str(v)[:MAX_TAG_VALUE_LENGTH] for k, v in tags.items()}


def _default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local sqlite store go to ``mlartifacts/`` next to the database file."""
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return str(Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts")
    return None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Tracker:
    """One MLflow run at a time: ``start`` … ``log_metrics`` … ``end`` (or ``with``)."""

    def __init__(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        uri: str | None = None,
        *,
        artifact_location: str | None = None,
    ) -> None:
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.artifact_location = artifact_location or _default_artifact_location(self.uri)
        self.run_id: str | None = None
        self.failures = 0
        self._client: Any = None
        self._experiment_id: str | None = None

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        parent_run_id: str | None = None,
    ) -> str:
        """Create the run (a child of ``parent_run_id`` if given), log params and tags
        (``git.commit`` added when known); returns the run id. Raises
        ``TrackingUnavailableError`` if the store cannot be reached."""
        if self.run_id is not None:
            raise RuntimeError(f"run {self.run_id} is still active: call end() before start()")
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        tags = _clean_tags(tags or {})
        commit = git_commit()
        if commit and GIT_COMMIT_TAG not in tags:
            tags[GIT_COMMIT_TAG] = tags["mlflow.source.git.commit"] = commit
        if parent_run_id:
            tags[PARENT_RUN_TAG] = parent_run_id
        try:
            self._client = self._client or MlflowClient(tracking_uri=self.uri)
            if self._experiment_id is None:
                self._experiment_id = self._get_or_create_experiment()
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=run_name)
        except (MlflowException, OSError, ConnectionError) as exc:
            raise TrackingUnavailableError(
                f"cannot reach the MLflow tracking store at {self.uri!r} ({exc}); start a "
                f"server, fix MLFLOW_TRACKING_URI, or disable tracking"
            ) from exc
        self.run_id = run.info.run_id
        self.failures = 0
        self._write_batch(params=flatten_params(params or {}))
        logger.info("MLflow run %s (%s) in %s", self.run_id, run_name, self.uri)
        return self.run_id

    def resume(self, run_id: str) -> str:
        """Continue logging into the existing run ``run_id`` (marked running again), e.g.
        when a retried trial resumes from its checkpoint; returns ``run_id``."""
        if self.run_id is not None:
            raise RuntimeError(f"run {self.run_id} is still active: call end() before resume()")
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            self._client = self._client or MlflowClient(tracking_uri=self.uri)
            self._client.update_run(run_id, status="RUNNING")
        except (MlflowException, OSError, ConnectionError) as exc:
            raise TrackingUnavailableError(
                f"cannot resume MLflow run {run_id} at {self.uri!r} ({exc})"
            ) from exc
        self.run_id = run_id
        self.failures = 0
        logger.info("MLflow run %s resumed in %s", run_id, self.uri)
        return run_id

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(self.experiment, self.artifact_location)
        except MlflowException:  # created meanwhile by a parallel trial
            found = self._client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> dict[str, float]:
        """Log ``metrics`` at ``step`` in one ``log_batch`` call; names are sanitised and
        non-finite (or non-numeric) values dropped. Returns what was sent."""
        clean: dict[str, float] = {}
        for name, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if math.isfinite(number):
                clean[sanitize_name(name)] = number
            else:
                logger.debug("metric %s = %r at step %d dropped (not finite)", name, value, step)
        self._write_batch(metrics=clean, step=step)
        return clean

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._write_batch(tags=_clean_tags(tags))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a local file (or folder) into the run's artifacts."""
        self._guarded(
            "artifact", lambda: self._client.log_artifact(self.run_id, path, artifact_path)
        )

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as a JSON (or YAML, by suffix) artifact."""
        self._guarded(
            "dict", lambda: self._client.log_dict(self.run_id, dict(dictionary), artifact_file)
        )

    def log_text(self, text: str, artifact_file: str) -> None:
        self._guarded("text", lambda: self._client.log_text(self.run_id, text, artifact_file))

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.run_id is None:
            return
        if self.failures:
            logger.warning("%d MLflow writes of run %s failed", self.failures, self.run_id)
        self._guarded("end", lambda: self._client.set_terminated(self.run_id, status))
        self.run_id = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    def _write_batch(
        self,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        metric_list = [Metric(k, v, now, int(step)) for k, v in (metrics or {}).items()]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        batches = (
            ("metrics", metric_list, MAX_METRICS_PER_BATCH),
            ("params", param_list, MAX_PARAMS_TAGS_PER_BATCH),
            ("tags", tag_list, MAX_PARAMS_TAGS_PER_BATCH),
        )
        for kind, items, size in batches:
            for chunk in _chunks(items, size):
                self._guarded(
                    kind, lambda k=kind, c=chunk: self._client.log_batch(self.run_id, **{k: c})
                )

    def _guarded(self, what: str, write) -> None:
        if self.run_id is None:
            raise RuntimeError("no MLflow run: call Tracker.start() first")
        try:
            write()
        except Exception as exc:  # outage policy: see the module docstring
            self.failures += 1
            log = logger.warning if self.failures == 1 else logger.debug
            log("MLflow %s write failed (%d so far, not raised): %s", what, self.failures, exc)


class NullTracker(Tracker):
    """Tracking disabled: ``Tracker``'s interface, writing nothing (mlflow is not imported)."""

    def __init__(self, experiment: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> None:
        super().__init__(experiment, uri="disabled")

    def start(self, run_name: str, params=None, tags=None, *, parent_run_id=None) -> str:
        return ""

    def resume(self, run_id: str) -> str:
        return ""

    def _write_batch(self, metrics=None, step=0, params=None, tags=None) -> None:
        return None

    def _guarded(self, what: str, write) -> None:
        return None
