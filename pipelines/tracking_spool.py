"""The outage side of `recrl.pipelines.tracking`: bounded retries (`RetryPolicy`), the spool of
MLflow writes that could not reach the tracking store, kept as JSON lines beside the
checkpoint, and its upload (`sync_spool`, also behind ``recrl mlflow-sync``).

One JSON object a line; ``run`` is the MLflow run id, or a ``local-…`` placeholder when the
run could not even be created (the ``run`` record then says how to create it)::

  spool     {"uri", "created"}                          where the writes were going
  run       {"run", "experiment", "artifact_location", "run_name", "tags", "start_time"}
  param     {"run", "key", "value"}
  tag       {"run", "key", "value"}
  metric    {"run", "key", "value", "step", "timestamp"}  timestamp (ms) of the first try
  artifact  {"run", "path", "artifact_path"}          the local file, read at upload time
  dict      {"run", "artifact_file", "data"}
  text      {"run", "artifact_file", "text"}
  status    {"run", "status", "end_time"}

Nothing is uploaded twice, by two means. ``SPOOL.synced`` holds the byte offset uploaded
so far and the placeholder -> run id map; it advances after every uploaded batch, so a
second sync (or the tracker's own flush when the server comes back) sends nothing again.
And a replay after a crash between an upload and that bookkeeping is harmless: a metric
keeps the timestamp of its first attempt and MLflow's SQL stores drop an exact (key, step,
timestamp, value) duplicate; a param of the same value is accepted; a run created from a
placeholder is tagged ``recrl.spool_run`` and found by that tag instead of created again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recrl.pipelines.tracking_names import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    get_or_create_experiment,
)

logger = logging.getLogger(__name__)

SPOOL_FILE = "mlflow_spool.jsonl"
"""Name of the spool in a training run folder (beside ``checkpoint/``)."""
SPOOL_RUN_TAG = "recrl.spool_run"
"""Tag of a run created by a sync: the placeholder id it replaces."""
LOCAL_RUN_PREFIX = "local-"
KINDS = ("spool", "run", "param", "tag", "metric", "artifact", "dict", "text", "status")
_BATCH_LIMITS = {"metric": MAX_METRICS_PER_BATCH, "param": MAX_PARAMS_TAGS_PER_BATCH,
                 "tag": MAX_PARAMS_TAGS_PER_BATCH}  # fmt: skip


class SpoolError(ValueError):
    """A spool file that cannot be read back (names the file and line)."""


def sync_command(path: str | os.PathLike, uri: str | None = None) -> str:
    """The shell command that uploads the spool at ``path``."""
    command = f"recrl mlflow-sync {path}"
    return f"{command} --tracking-uri {uri}" if uri else command


@dataclass(frozen=True)
class RetryPolicy:
    """How long one write waits for the store before it is spooled (`recrl.pipelines.tracking`)."""

    attempts: int = 3
    """Tries of one write (or of creating the run) before the store is taken as down."""
    first_backoff_s: float = 0.25
    """Sleep after the first failed try; multiplied by ``backoff_factor`` after each."""
    backoff_factor: float = 3.0
    budget_s: float = 5.0
    """No retry whose backoff would end later than this after the first try."""
    request_timeout_s: int = 3
    """MLflow's HTTP timeout, set when ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is not."""
    probe_interval_s: float = 30.0
    """While down, seconds between probes of the store."""


@contextlib.contextmanager
def request_limits(policy: RetryPolicy) -> Iterator[None]:
    """Within: MLflow's HTTP client makes one try per request, with ``policy``'s timeout,
    unless the user set those variables. Its default retries a request for minutes (meant
    for rate limits), far too long for a training step; `retry` does the retrying. Set for
    the tracker's own requests only, so other MLflow clients in the process keep theirs."""
    limits = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": str(policy.request_timeout_s)}  # fmt: skip
    added = [name for name in limits if name not in os.environ]
    os.environ.update({name: limits[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def retry(write: Callable[[], Any], policy: RetryPolicy) -> Exception | None:
    """``write()`` with ``policy``'s retries; the last error, or None on success. A write
    the store `rejected` is not retried."""
    deadline = time.monotonic() + policy.budget_s
    delay = policy.first_backoff_s
    with request_limits(policy):
        for attempt in range(1, policy.attempts + 1):
            try:
                write()
                return None
            except Exception as exc:  # outage policy: recrl.pipelines.tracking's docstring
                late = time.monotonic() + delay > deadline
                if rejected(exc) or attempt == policy.attempts or late:
                    return exc
                logger.debug("MLflow write failed (try %d), retrying: %s", attempt, exc)
                time.sleep(delay)
                delay *= policy.backoff_factor
    raise ValueError(f"RetryPolicy.attempts must be >= 1, got {policy.attempts}")


def spool_record(entity: Any) -> dict[str, Any]:
    """The spool form of an MLflow ``Metric``, ``Param`` or ``RunTag``."""
    if hasattr(entity, "step"):
        return {"kind": "metric", "key": entity.key, "value": entity.value,
                "step": entity.step, "timestamp": entity.timestamp}  # fmt: skip
    kind = "param" if type(entity).__name__ == "Param" else "tag"
    return {"kind": kind, "key": entity.key, "value": entity.value}


def rejected(error: Exception) -> bool:
    """True when the store answered and refused the write (HTTP 4xx): retrying, spooling
    or replaying it would fail the same way. Everything else counts as an outage."""
    # not imported here: importing mlflow takes seconds, and an MlflowException can only
    # exist once it is loaded
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(error, exceptions.MlflowException):
        return False
    return 400 <= error.get_http_status_code() < 500


def _ends_torn(path: Path) -> bool:
    """Whether the file at ``path`` ends inside a line (its writer was killed mid-write)."""
    with path.open("rb") as handle:
        if handle.seek(0, os.SEEK_END) == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


class SpoolWriter:
    """Appends records to a spool file; the file is opened on the first record."""

    def __init__(self, path: str | os.PathLike, uri: str) -> None:
        self.path = Path(path)
        self.uri = uri
        self.records = 0
        self._file: Any = None

    def append(self, records: list[dict[str, Any]]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            if _ends_torn(self.path):  # a job killed mid-write: end its line, not ours
                self._file.write("\n")
            self._write({"kind": "spool", "uri": self.uri, "created": _now_ms()})
        for record in records:
            self._write(record)
        self._file.flush()  # a crashed job keeps everything it spooled
        self.records += len(records)

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class SyncState:
    """``SPOOL.synced``: what of the spool has been uploaded."""

    offset: int = 0
    """Bytes of the spool uploaded (always the end of a complete line)."""
    runs: dict[str, str] = field(default_factory=dict)
    """Placeholder id -> MLflow run id, for runs created by a sync."""

    @staticmethod
    def path_of(spool: str | os.PathLike) -> Path:
        return Path(f"{spool}.synced")

    @classmethod
    def load(cls, spool: str | os.PathLike) -> SyncState:
        path = cls.path_of(spool)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(offset=int(data["offset"]), runs=dict(data["runs"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolError(
                f"{path} is not a sync state file ({exc}); delete it to re-upload the whole "
                "spool (duplicates are dropped)"
            ) from exc

    def save(self, spool: str | os.PathLike) -> None:
        path = self.path_of(spool)
        staging = path.with_name(path.name + ".tmp")
        staging.write_text(json.dumps({"offset": self.offset, "runs": self.runs}))
        staging.replace(path)  # atomic: a crash leaves the old state or the new one


@dataclass(frozen=True)
class TornRecord:
    """A spool line that is not a whole record: a job killed in the middle of writing it."""

    line: int
    """1-based line number in the spool."""
    offset: int
    """Byte offset of its start."""
    last: bool
    """True for a last line without its newline (the writer may still be writing it)."""


def read_records(
    path: str | os.PathLike, offset: int = 0, torn: list[TornRecord] | None = None
) -> Iterator[tuple[int, dict]]:
    """``(end offset, record)`` for each complete line after byte ``offset``; a last line
    without its newline (a job killed mid-write) is left for later. With a ``torn`` list,
    lines that are not records are appended to it and skipped (the last line too) instead
    of raising `SpoolError`."""
    path = Path(path)
    with path.open("rb") as handle:
        number = handle.read(offset).count(b"\n") if torn is not None else 0
        handle.seek(offset)
        position = offset
        for line in handle:
            number += 1
            if not line.endswith(b"\n"):
                if torn is not None:
                    torn.append(TornRecord(number, position, last=True))
                return
            position += len(line)
            try:
                record = json.loads(line)
                kind = record["kind"]
            except (ValueError, KeyError, TypeError) as exc:
                if torn is not None:
                    torn.append(TornRecord(number, position - len(line), last=False))
                    continue
                raise SpoolError(f"{path}: record at byte {position - len(line)} is not a "
                                 f"spool record ({exc}): {line[:120]!r}") from exc  # fmt: skip
            if kind not in KINDS:
                raise SpoolError(f"{path}: unknown record kind {kind!r} at byte "
                                 f"{position - len(line)}; expected one of {KINDS}")  # fmt: skip
            yield position, record


def pending_records(path: str | os.PathLike) -> int:
    """Records of the spool at ``path`` not uploaded yet."""
    if not Path(path).is_file():
        return 0
    return sum(1 for _ in read_records(path, SyncState.load(path).offset))


def spool_uri(path: str | os.PathLike, torn: list[TornRecord] | None = None) -> str | None:
    """The tracking URI the spool's first writes were going to (``torn``: `read_records`)."""
    for _, record in read_records(path, 0, torn):
        if record["kind"] == "spool":
            return record.get("uri")
    return None


@dataclass
class SyncReport:
    """What one `sync_spool` call uploaded."""

    uploaded: dict[str, int] = field(default_factory=dict)
    """Records uploaded, by kind."""
    created: dict[str, str] = field(default_factory=dict)
    """Placeholder id -> run id of the runs this call created (or found by tag)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Records the store refused (HTTP 4xx), by kind; skipped."""
    missing_artifacts: list[str] = field(default_factory=list)
    """Local files of ``artifact`` records that no longer exist (skipped)."""
    offset: int = 0
    """The synced offset after this call (the spool's size when everything went up)."""
    torn: list[TornRecord] = field(default_factory=list)
    """Lines skipped as torn (``final`` syncs only)."""
    finished: dict[str, str] = field(default_factory=dict)
    """Runs this call ended because the spool never did (run id -> status)."""

    @property
    def total(self) -> int:
        return sum(self.uploaded.values())


def sync_spool(path: str | os.PathLike, client: Any, *, final: bool = False) -> SyncReport:
    """Upload what `SyncState` says is not uploaded yet of the spool at ``path`` with the
    ``MlflowClient`` ``client``; see the module docstring. An upload error propagates after
    the state is saved up to the last batch that went up, so a rerun continues there.

    ``final`` (``recrl mlflow-sync``, once the job has ended): torn lines are skipped and
    listed in ``report.torn`` instead of stopping the upload, and every run of the spool
    that has no final status is ended FAILED (`finish_runs`), so none stays RUNNING."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MLflow spool {path} does not exist")
    lock = SyncState.path_of(path).with_suffix(".lock")
    with lock.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # one uploader at a time (tracker or command)
        state = SyncState.load(path)
        report = SyncReport(offset=state.offset)
        uploader = _Uploader(client, state, report)
        pending: list[dict] = []
        # A torn line left by an earlier, killed job is skipped during a job too, or every
        # later upload would stop at it; a torn last line may still be being written, so
        # only `final` reports it.
        torn = report.torn if final else []
        for end, record in read_records(path, state.offset, torn):
            if pending and not _same_batch(pending, record):
                uploader.send(pending)
                _advance(state, report, path, pending[-1]["_end"])
                pending = []
            pending.append({**record, "_end": end})
        if pending:
            uploader.send(pending)
            _advance(state, report, path, pending[-1]["_end"])
        if final:
            report.finished = finish_runs(path, client, state)
        else:
            report.torn.extend(t for t in torn if not t.last)
            for record in report.torn:
                logger.warning("%s:%d: skipped a torn spool record (an earlier job was killed "
                               "while writing it)", path, record.line)  # fmt: skip
    return report


def finish_runs(path: Path, client: Any, state: SyncState) -> dict[str, str]:
    """End FAILED every run of the spool at ``path`` that the spool never gave a final
    status (its job was killed) and that the store still shows RUNNING; run id -> status
    set. A run whose spool ends FINISHED or FAILED got that status from the upload."""
    ended: set[str] = set()
    runs: list[str] = []
    for _, record in read_records(path, 0, []):
        run = record.get("run")
        if not run:
            continue
        run = state.runs.get(run, run)
        if run not in runs:
            runs.append(run)
        if record["kind"] == "status" and record.get("status") in ("FINISHED", "FAILED", "KILLED"):
            ended.add(run)
        elif record["kind"] == "status":
            ended.discard(run)  # resumed after it ended
    changed = {}
    for run in runs:
        if run in ended or run.startswith(LOCAL_RUN_PREFIX):
            continue
        if client.get_run(run).info.status == "RUNNING":
            client.set_terminated(run, "FAILED")
            changed[run] = "FAILED"
    return changed


def _advance(state: SyncState, report: SyncReport, path: Path, offset: int) -> None:
    state.offset = report.offset = offset
    state.save(path)


def _same_batch(pending: list[dict], record: dict) -> bool:
    first = pending[0]
    limit = _BATCH_LIMITS.get(first["kind"])
    return (
        limit is not None
        and record["kind"] == first["kind"]
        and record.get("run") == first.get("run")
        and len(pending) < limit
    )


@dataclass
class _Uploader:
    client: Any
    state: SyncState
    report: SyncReport

    def send(self, records: list[dict]) -> None:
        """Upload one batch; a batch the store rejects (HTTP 4xx) would be rejected on every
        retry, so it is skipped with a warning instead of blocking the rest."""
        try:
            self._send(records)
        except Exception as exc:
            if not rejected(exc):
                raise
            kind = records[0]["kind"]
            logger.warning("MLflow rejected %d spooled %s record(s) of run %s: %s (skipped)",
                           len(records), kind, records[0].get("run"), exc)  # fmt: skip
            self.report.rejected[kind] = self.report.rejected.get(kind, 0) + len(records)

    def _send(self, records: list[dict]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        kind = records[0]["kind"]
        if kind == "spool":
            return
        run = self._run_id(records[0])
        if kind == "run":
            return  # counted by _run_id
        if kind == "metric":
            metrics = [Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"]))
                       for r in records]  # fmt: skip
            self.client.log_batch(run, metrics=metrics)
        elif kind == "param":
            self.client.log_batch(run, params=[Param(r["key"], r["value"]) for r in records])
        elif kind == "tag":
            self.client.log_batch(run, tags=[RunTag(r["key"], r["value"]) for r in records])
        else:
            self._send_one(run, records[0])
        self.report.uploaded[kind] = self.report.uploaded.get(kind, 0) + len(records)

    def _send_one(self, run: str, record: dict) -> None:
        kind = record["kind"]
        if kind == "artifact":
            if not Path(record["path"]).exists():
                logger.warning("spooled artifact %s no longer exists: skipped", record["path"])
                self.report.missing_artifacts.append(record["path"])
                return
            self.client.log_artifact(run, record["path"], record.get("artifact_path"))
        elif kind == "dict":
            self.client.log_dict(run, record["data"], record["artifact_file"])
        elif kind == "text":
            self.client.log_text(run, record["text"], record["artifact_file"])
        elif record["status"] in ("FINISHED", "FAILED", "KILLED"):
            self.client.set_terminated(run, record["status"], end_time=record.get("end_time"))
        else:
            self.client.update_run(run, status=record["status"])

    def _run_id(self, record: dict) -> str:
        run = record["run"]
        if not run.startswith(LOCAL_RUN_PREFIX):
            return run
        if run in self.state.runs:
            return self.state.runs[run]
        if record["kind"] != "run":
            raise SpoolError(f"spool record for {run} comes before the record that creates "
                             "that run; the spool is incomplete")  # fmt: skip
        real = self._find_or_create(record)
        self.state.runs[run] = self.report.created[run] = real
        self.report.uploaded["run"] = self.report.uploaded.get("run", 0) + 1
        return real

    def _find_or_create(self, record: dict) -> str:
        experiment_id = get_or_create_experiment(
            self.client, record["experiment"], record.get("artifact_location")
        )
        found = self.client.search_runs(
            [experiment_id], f"tags.`{SPOOL_RUN_TAG}` = '{record['run']}'", max_results=1
        )
        if found:
            return found[0].info.run_id
        tags = {**record.get("tags", {}), SPOOL_RUN_TAG: record["run"]}
        run = self.client.create_run(experiment_id, start_time=record.get("start_time"),
                                     tags=tags, run_name=record.get("run_name"))  # fmt: skip
        logger.info("created MLflow run %s for %s", run.info.run_id, record["run"])
        return run.info.run_id


def _now_ms() -> int:
    return int(time.time() * 1000)
