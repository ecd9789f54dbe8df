"""``recrl mlflow-sync``: upload what a training run wrote to its MLflow spool during a
tracking outage. The work is in `recrl.pipelines.tracking_spool`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from recrl.pipelines.errors import JobFailedError, UserError

_EPILOG = """\
When the MLflow tracking server cannot be reached, `recrl train` keeps training and writes
what it would have logged (metrics with their steps and timestamps, params, tags, artifact
paths, the final status) to RUN_DIR/mlflow_spool.jsonl, beside the checkpoint, and warns
once with the path. When the server answers again during the run, the tracker uploads the
spool itself; what is left at the end is uploaded by this command:

  * into the same run, or into a new run (same name, experiment, params and tags) when the
    server was down from the start; the new run is tagged recrl.spool_run=<placeholder id>;
  * exactly once: SPOOL.synced records how far the spool has been uploaded, so running
    the command again sends nothing new, and an interrupted upload continues where it
    stopped (a replayed metric with the same step, timestamp and value is dropped by the
    server's SQL store);
  * artifacts are read from their local paths now: keep the run folder until synced.

tracking server: --tracking-uri, else the URI recorded in the spool, else
MLFLOW_TRACKING_URI, else sqlite:///mlruns.db. Exit status 0 when everything went up, 1 when
the server could not be reached (nothing is lost: rerun later).

Run it once the job has ended: a line cut off by a killed job (a torn record) is reported
with its line number and skipped, the rest is uploaded, and a run the spool never ended
(its job was killed) is ended FAILED; a run ends FINISHED or FAILED, never RUNNING.

examples:
  recrl mlflow-sync runs/sasrec_ccql-20250101-120000/mlflow_spool.jsonl
  recrl mlflow-sync runs/x/mlflow_spool.jsonl --tracking-uri http://mlflow-host:5000
"""


def register(commands) -> None:
    p = commands.add_parser(
        "mlflow-sync",
        help="upload a run's MLflow spool (writes made while the server was down)",
        description="Upload the MLflow writes a training job spooled to a local file while "
        "the tracking server was unreachable, into the same run, idempotently.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "spool", type=Path, metavar="SPOOL", help="RUN_DIR/mlflow_spool.jsonl, or RUN_DIR"
    )
    p.add_argument(
        "--tracking-uri", metavar="URI", help="tracking URI to upload to (the spool's own)"
    )
    p.set_defaults(handler=run)


def run(args) -> int:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from recrl.pipelines.tracking import tracking_uri
    from recrl.pipelines.tracking_spool import (
        SPOOL_FILE,
        SpoolError,
        pending_records,
        rejected,
        spool_uri,
        sync_spool,
    )

    spool = args.spool / SPOOL_FILE if args.spool.is_dir() else args.spool
    if not spool.is_file():
        raise UserError(f"no spool at {spool} (a run folder or its {SPOOL_FILE} expected)")
    try:
        uri = args.tracking_uri or spool_uri(spool, torn=[]) or tracking_uri()
    except (SpoolError, OSError) as exc:
        raise UserError(f"{spool}: {exc}") from None
    # fail within seconds when the server is still down, not after MLflow's minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        report = sync_spool(spool, MlflowClient(tracking_uri=uri), final=True)
    except SpoolError as exc:
        raise UserError(str(exc)) from None
    except (MlflowException, OSError, ConnectionError) as exc:
        if isinstance(exc, MlflowException) and rejected(exc):
            raise
        raise JobFailedError(
            f"{uri} unreachable ({exc}); {pending_records(spool)} records still to upload "
            f"from {spool}, rerun when it is back"
        ) from None
    for torn in report.torn:
        why = "cut off" if torn.last else "not a whole record"
        print(f"recrl mlflow-sync: warning: {spool}:{torn.line}: torn record ({why}: a job "
              "killed while writing it), skipped", file=sys.stderr)  # fmt: skip
    uploaded = ", ".join(f"{n} {kind}" for kind, n in sorted(report.uploaded.items()))
    print(f"uploaded {report.total} records of {spool} to {uri}"
          + (f" ({uploaded})" if uploaded else " (nothing new)"))  # fmt: skip
    for placeholder, run_id in report.created.items():
        print(f"  run {run_id} created for {placeholder}")
    for kind, n in sorted(report.rejected.items()):
        print(f"  {n} {kind} records rejected by the server (see the warnings)")
    for path in report.missing_artifacts:
        print(f"  artifact {path} no longer exists: not uploaded")
    for run_id, status in report.finished.items():
        print(f"  run {run_id} had no final status in the spool (its job was killed): "
              f"ended {status}")  # fmt: skip
    return 0
