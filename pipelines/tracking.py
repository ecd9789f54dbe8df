"""The one module that talks to MLflow: runs, params, tags, metrics and artifacts.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlruns.db`` in the working
directory (MLflow 3 refuses the plain file store). ``dashboard_command`` prints how to open
the UI on it. The experiment of a started run is created, or tagged on its next run, as a
model-training experiment (`recrl.pipelines.tracking_names.get_or_create_experiment`; the
upload of a spool does the same), and ``dashboard_command`` links to its training view.

Failure policy (deliberate). A write is tried a few times with backoff (`RetryPolicy`:
about a second in all when the server refuses connections, a few seconds at most when it
hangs), so a training step never stalls for long. Then the tracker marks the store *down*:
that write and every later one go to the spool file given as ``spool`` (JSON lines, see
`recrl.pipelines.tracking_spool`; training puts it beside the checkpoint) without touching the
network, and one warning names the spool and the ``recrl mlflow-sync`` command. Every
``probe_interval_s`` a write first probes the store; when it answers, the spool is uploaded
(the same code as ``recrl mlflow-sync``, which records what went up, so nothing is sent
twice) and direct logging resumes. ``end`` probes once more; what is still spooled then is
left for ``recrl mlflow-sync``, with a second warning. If the store is unreachable when a
run *starts*, a tracker with a spool records a ``local-…`` placeholder run there (name,
experiment, params, tags) that the upload creates; without a spool ``start`` raises
``TrackingUnavailableError`` naming the URI — a run that would record nothing must not start
silently — and writes during an outage are dropped and counted in ``Tracker.failures``.
A write the store *rejects* (an HTTP 4xx: bad value, unknown run) is neither retried nor
spooled, as replaying it would fail again: it is warned about once and counted.
For the tracker's requests MLflow's own HTTP retries (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
minutes by default) are off and its timeout short, unless those variables are set.
Training code never imports mlflow.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recrl.pipelines.tracking_names import (
    DEFAULT_EXPERIMENT,
    GIT_COMMIT_TAG,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    PARENT_RUN_TAG,
    absolute_tracking_uri,
    chunks,
    clean_tags,
    default_artifact_location,
    flatten_params,
    get_or_create_experiment,
    git_commit,
    sanitize_name,
    tracking_uri,
)
from recrl.pipelines.tracking_names import DEFAULT_TRACKING_URI as DEFAULT_TRACKING_URI
from recrl.pipelines.tracking_names import MAX_KEY_LENGTH as MAX_KEY_LENGTH
from recrl.pipelines.tracking_names import MAX_PARAM_VALUE_LENGTH as MAX_PARAM_VALUE_LENGTH
from recrl.pipelines.tracking_names import MAX_TAG_VALUE_LENGTH as MAX_TAG_VALUE_LENGTH
from recrl.pipelines.tracking_names import dashboard_command as dashboard_command
from recrl.pipelines.tracking_spool import (
    LOCAL_RUN_PREFIX,
    RetryPolicy,
    SpoolWriter,
    SyncState,
    pending_records,
    rejected,
    request_limits,
    retry,
    spool_record,
    sync_command,
    sync_spool,
)

logger = logging.getLogger(__name__)


class TrackingUnavailableError(RuntimeError):
    """The tracking store could not be reached when a run started (and no spool was set)."""


class Tracker:
    """One MLflow run at a time: ``start`` … ``log_metrics`` … ``end`` (or ``with``).

    ``spool``: the file that takes the writes during an outage (see the module docstring);
    None: they are dropped and counted."""

    def __init__(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        uri: str | None = None,
        *,
        artifact_location: str | None = None,
        spool: str | os.PathLike | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.uri = tracking_uri(uri)
        self.experiment = experiment
        self.artifact_location = artifact_location or default_artifact_location(self.uri)
        self.retry = retry or RetryPolicy()
        self.run_id: str | None = None
        self.failures = 0
        """Writes that did not reach the store directly (spooled, dropped or rejected)."""
        self.spool = SpoolWriter(spool, absolute_tracking_uri(self.uri)) if spool else None
        self._client: Any = None
        self._experiment_id: str | None = None
        self._down = False
        self._next_probe = 0.0
        self._outage_warned = False

    @property
    def experiment_id(self) -> str | None:
        """Id of the experiment, once a run was started in it (None before, or while the
        store was down at the start)."""
        return self._experiment_id

    @property
    def down(self) -> bool:
        """True while writes go to the spool (or are dropped) instead of the store."""
        return self._down

    def start(
        self,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        parent_run_id: str | None = None,
    ) -> str:
        """Create the run (a child of ``parent_run_id`` if given), log params and tags
        (``git.commit`` added when known); returns the run id, or a ``local-…`` placeholder
        when the store is down and a spool is set. Raises ``TrackingUnavailableError`` if
        the store cannot be reached and there is no spool, or it rejects the run."""
        if self.run_id is not None:
            raise RuntimeError(f"run {self.run_id} is still active: call end() before start()")
        import mlflow  # noqa: F401 - seconds on a first import: not within the retry budget

        tags = clean_tags(tags or {})
        commit = git_commit()
        if commit and GIT_COMMIT_TAG not in tags:
            tags[GIT_COMMIT_TAG] = tags["mlflow.source.git.commit"] = commit
        if parent_run_id:
            tags[PARENT_RUN_TAG] = parent_run_id
        created: list[str] = []

        def create() -> None:
            self._ensure_client()
            if self._experiment_id is None:
                self._experiment_id = get_or_create_experiment(
                    self._client, self.experiment, self.artifact_location
                )
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=run_name)
            created.append(run.info.run_id)

        error = retry(create, self.retry)
        self.failures = 0
        if error is not None and (self.spool is None or rejected(error)):
            raise TrackingUnavailableError(
                f"cannot reach the MLflow tracking store at {self.uri!r} ({error}); start a "
                f"server, fix MLFLOW_TRACKING_URI, or disable tracking"
            ) from error
        if error is None:
            self.run_id = created[0]
            logger.info("MLflow run %s (%s) in %s", self.run_id, run_name, self.uri)
        else:
            self.run_id = f"{LOCAL_RUN_PREFIX}{uuid.uuid4().hex}"
            self._went_down(error)
            self.spool.append([{"kind": "run", "run": self.run_id, "experiment": self.experiment,
                                "artifact_location": self.artifact_location,
                                "run_name": run_name, "tags": tags,
                                "start_time": int(time.time() * 1000)}])  # fmt: skip
        self._write_batch(params=flatten_params(params or {}))
        return self.run_id

    def resume(self, run_id: str) -> str:
        """Continue logging into the existing run ``run_id`` (marked running again), e.g.
        when a retried trial resumes from its checkpoint; returns the run id (a placeholder
        of this tracker's spool is replaced by its run once uploaded)."""
        if self.run_id is not None:
            raise RuntimeError(f"run {self.run_id} is still active: call end() before resume()")
        import mlflow  # noqa: F401 - as in start()

        run_id = self.resolve(run_id)
        self.failures = 0
        if run_id.startswith(LOCAL_RUN_PREFIX):  # its run is created when its spool goes up
            if self.spool is None:
                raise TrackingUnavailableError(
                    f"run {run_id} exists only in an MLflow spool: run recrl mlflow-sync first"
                )
            self.run_id, self._down, self._next_probe = run_id, True, 0.0  # probe on next write
            self._divert([{"kind": "status", "status": "RUNNING"}])
            return run_id
        error = retry(lambda: self._ensure_client().update_run(run_id, "RUNNING"), self.retry)
        if error is not None and (self.spool is None or rejected(error)):
            raise TrackingUnavailableError(
                f"cannot resume MLflow run {run_id} at {self.uri!r} ({error})"
            ) from error
        self.run_id = run_id
        if error is not None:
            self._went_down(error, "resume")
            self._divert([{"kind": "status", "status": "RUNNING"}])
        logger.info("MLflow run %s resumed in %s", run_id, self.uri)
        return run_id

    def resolve(self, run_id: str | None) -> str | None:
        """The MLflow run id of ``run_id``: a placeholder of this tracker's spool is replaced
        by the run created for it once uploaded."""
        if run_id and run_id.startswith(LOCAL_RUN_PREFIX) and self.spool is not None:
            return SyncState.load(self.spool.path).runs.get(run_id, run_id)
        return run_id

    def _ensure_client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

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
        self._write_batch(tags=clean_tags(tags))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a local file (or folder) into the run's artifacts (spooled: by its path, so
        the file must still be there when the spool is uploaded)."""
        record = {"kind": "artifact", "path": str(Path(path).resolve()),
                  "artifact_path": artifact_path}  # fmt: skip
        self._guarded(
            "artifact", lambda: self._client.log_artifact(self.run_id, path, artifact_path),
            [record],
        )  # fmt: skip

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """Store a dict as a JSON (or YAML, by suffix) artifact."""
        data = dict(dictionary)
        self._guarded(
            "dict", lambda: self._client.log_dict(self.run_id, data, artifact_file),
            [{"kind": "dict", "artifact_file": artifact_file, "data": data}],
        )  # fmt: skip

    def log_text(self, text: str, artifact_file: str) -> None:
        self._guarded(
            "text", lambda: self._client.log_text(self.run_id, text, artifact_file),
            [{"kind": "text", "artifact_file": artifact_file, "text": text}],
        )  # fmt: skip

    def end(self, status: str = "FINISHED") -> None:
        """Terminate the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
        if self.run_id is None:
            return
        if self._down:
            self._next_probe = 0.0  # one last chance to upload the spool directly
        end_time = int(time.time() * 1000)
        self._guarded(
            "end", lambda: self._client.set_terminated(self.run_id, status, end_time=end_time),
            [{"kind": "status", "status": status, "end_time": end_time}],
        )  # fmt: skip
        if self._down and self.spool is not None:
            logger.warning(
                "MLflow run %s ended with %d records not uploaded, in the spool %s; upload "
                "them with: %s", self.run_id, pending_records(self.spool.path),
                self.spool.path, sync_command(self.spool.path),
            )  # fmt: skip
        elif self.failures and self.spool is not None:
            logger.info("%d MLflow writes of run %s went through the spool %s, all uploaded",
                        self.failures, self.run_id, self.spool.path)  # fmt: skip
        elif self.failures:
            logger.warning("%d MLflow writes of run %s failed", self.failures, self.run_id)
        if self.spool is not None:
            self.spool.close()
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

        now = int(time.time() * 1000)  # kept in the spool: a replay is an exact duplicate
        metric_list = [Metric(k, v, now, int(step)) for k, v in (metrics or {}).items()]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        batches = (
            ("metrics", metric_list, MAX_METRICS_PER_BATCH),
            ("params", param_list, MAX_PARAMS_TAGS_PER_BATCH),
            ("tags", tag_list, MAX_PARAMS_TAGS_PER_BATCH),
        )
        for kind, items, size in batches:
            for chunk in chunks(items, size):
                self._guarded(
                    kind, lambda k=kind, c=chunk: self._client.log_batch(self.run_id, **{k: c}),
                    [spool_record(item) for item in chunk],
                )  # fmt: skip

    def _guarded(self, what: str, write, records: list[dict[str, Any]] | None = None) -> None:
        """Run one write under the outage policy; ``records`` are its spool form."""
        if self.run_id is None:
            raise RuntimeError("no MLflow run: call Tracker.start() first")
        if self._down and not self._probe():
            self._divert(records or [])
            return
        error = retry(write, self.retry)
        if error is None:
            return
        if rejected(error):
            self.failures += 1
            log = logger.warning if self.failures == 1 else logger.debug
            log("MLflow %s write rejected (%d so far, not raised): %s", what, self.failures, error)
            return
        self._went_down(error, what)
        self._divert(records or [])

    def _went_down(self, error: Exception | None, what: str = "start") -> None:
        self._down = True
        self._next_probe = time.monotonic() + self.retry.probe_interval_s
        if self._outage_warned:
            logger.info("MLflow at %s unreachable again (%s)", self.uri, error)
            return
        self._outage_warned = True
        if self.spool is None:
            logger.warning(
                "MLflow %s write failed: %s is unreachable (%s); training goes on and MLflow "
                "writes are DROPPED until it answers again (probed every %.0f s)",
                what, self.uri, error, self.retry.probe_interval_s,
            )  # fmt: skip
            return
        logger.warning(
            "MLflow %s write failed: %s is unreachable (%s); training goes on and MLflow "
            "writes go to %s until it answers again (probed every %.0f s). Anything left "
            "there at the end can be uploaded with: %s",
            what, self.uri, error, self.spool.path, self.retry.probe_interval_s,
            sync_command(self.spool.path),
        )  # fmt: skip

    def _divert(self, records: list[dict[str, Any]]) -> None:
        self.failures += 1
        if self.spool is not None and records:
            self.spool.append([{**record, "run": self.run_id} for record in records])

    def _probe(self) -> bool:
        """While down: at most every ``probe_interval_s``, ask the store whether it is back;
        if so, upload the spool and return True (the caller then writes directly)."""
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.retry.probe_interval_s
        try:
            with request_limits(self.retry):
                self._ensure_client().get_experiment_by_name(self.experiment)
                if self.spool is not None and self.spool.records:
                    report = sync_spool(self.spool.path, self._client)
                    self.run_id = self.resolve(self.run_id)
                    logger.info("MLflow at %s is back: %d spooled records uploaded from %s",
                                self.uri, report.total, self.spool.path)  # fmt: skip
        except Exception as exc:  # still down; the spool keeps the rest
            logger.debug("MLflow at %s still unreachable: %s", self.uri, exc)
            if not self._outage_warned:  # down since a resume() that did not try the store
                self._went_down(exc, "probe")
            return False
        self._down = False
        return True


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

    def _guarded(self, what: str, write, records=None) -> None:
        return None
