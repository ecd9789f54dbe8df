"""MLflow outages: bounded retries, the spool, recovery and `recrl mlflow-sync`.

The store is unreachable on a closed free port, or made to fail by replacing client methods
on a sqlite store; the real server killed in the middle of a training run is in
`test_mlflow_outage.py`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time

import pytest
from recrl.pipelines.cli import main
from recrl.pipelines.tracking import RetryPolicy, Tracker, flatten_params
from recrl.pipelines.tracking_spool import (
    SPOOL_RUN_TAG,
    SpoolError,
    SpoolWriter,
    SyncState,
    pending_records,
    read_records,
    retry,
    sync_spool,
)

from tests.services import free_port

N_STEPS = 40
PARAMS = {"lr": 0.005, "encoder": {"hidden_size": 32, "num_blocks": 1}}


@pytest.fixture(autouse=True)
def _mlflow_http_env(monkeypatch):
    """Start without MLflow's HTTP retry variables; mlflow-sync sets them: undo that."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "0")  # records the original value (or its absence)...
        monkeypatch.delenv(name)  # ...which is restored after the test, whatever set it


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(uri, artifact folder, client) of one sqlite store; migrating it takes a few seconds."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlruns.db"
    return uri, str(root / "artifacts"), MlflowClient(tracking_uri=uri)


def _loss(step: int) -> float:
    return 2.0 / (1 + step)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_retry_backs_off_within_its_budget():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("refused")

    policy = RetryPolicy(attempts=3, first_backoff_s=0.1, backoff_factor=3.0)
    assert retry(flaky, policy) is None and len(calls) == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert 0.1 <= gaps[0] < 0.25 and 0.3 <= gaps[1] < 0.45  # 0.1 s, then 0.1 * 3

    def down():
        raise ConnectionError("refused")

    start = time.monotonic()
    error = retry(down, RetryPolicy(attempts=10, first_backoff_s=0.2, budget_s=1.0))
    # 0.2 + 0.6 slept; the next sleep (1.8 s) would pass the 1 s budget, so it gives up
    assert isinstance(error, ConnectionError) and 0.8 <= time.monotonic() - start < 1.2


def test_unreachable_at_start_spools_everything_with_one_warning(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spool = tmp_path / "run" / "mlflow_spool.jsonl"
    report = tmp_path / "report.txt"
    report.write_text("hello")
    tracker = Tracker("outage", uri, spool=spool)
    import mlflow  # noqa: F401 - a first import takes seconds on a busy machine: not timed

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="recrl.pipelines.tracking"):
        run_id = tracker.start("offline", params=PARAMS, tags={"variant": "sasrec"})
        start_s = time.monotonic() - started
        for step in range(N_STEPS):  # a training loop: must not wait on the server
            tracker.log_metrics({"loss/ce": _loss(step), "q/mean": float(step)}, step=step)
        tracker.log_artifact(report, artifact_path="reports")
        tracker.log_text("notes", "notes.txt")
        loop_s = time.monotonic() - started - start_s
        warned = _warnings(caplog)
        tracker.end()
    assert run_id.startswith("local-") and tracker.down
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # limits scoped to its requests
    # refused connections: 3 tries, 0.25 + 0.75 s of backoff; RetryPolicy.budget_s caps hangs
    assert start_s < 5.0, f"start waited {start_s:.1f} s for an unreachable server"
    assert loop_s < 1.0, f"{N_STEPS} spooled steps took {loop_s:.2f} s"
    assert len(warned) == 1 and str(spool) in warned[0] and "recrl mlflow-sync" in warned[0]
    final = _warnings(caplog)[1:]
    assert len(final) == 1 and "not uploaded" in final[0] and str(spool) in final[0]

    records = [record for _, record in read_records(spool)]
    kinds = [r["kind"] for r in records]
    assert kinds[:2] == ["spool", "run"] and records[0]["uri"] == uri
    assert records[1]["run_name"] == "offline" and records[1]["experiment"] == "outage"
    assert records[1]["tags"]["variant"] == "sasrec"
    assert kinds.count("param") == len(flatten_params(PARAMS)) == 3
    metrics = [r for r in records if r["kind"] == "metric"]
    assert len(metrics) == 2 * N_STEPS and {r["run"] for r in records[1:]} == {run_id}
    assert [r["step"] for r in metrics if r["key"] == "loss/ce"] == list(range(N_STEPS))
    assert kinds[-3:] == ["artifact", "text", "status"] and records[-1]["status"] == "FINISHED"
    assert tracker.failures == 1 + N_STEPS + 3  # writes: the params, each step, 3 more
    assert pending_records(spool) == len(records)


def test_sync_creates_the_run_once_and_uploads_each_record_once(tmp_path, store, capsys):
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    report = tmp_path / "report.txt"
    report.write_text("hello")
    tracker = Tracker("outage-sync", f"http://127.0.0.1:{free_port()}", spool=spool,
                      artifact_location=artifacts)  # fmt: skip
    placeholder = tracker.start("offline", params=PARAMS, tags={"seed": 3})
    for step in range(N_STEPS):
        tracker.log_metrics({"loss/ce": _loss(step)}, step=step)
    tracker.log_artifact(report, artifact_path="reports")
    tracker.end("FINISHED")
    spooled = {r["step"]: r for _, r in read_records(spool) if r["kind"] == "metric"}

    assert main(["mlflow-sync", str(spool), "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    run_id = SyncState.load(spool).runs[placeholder]
    assert f"run {run_id} created for {placeholder}" in printed
    assert f"uploaded 46 records of {spool}" in printed
    assert f"(1 artifact, {N_STEPS} metric, 3 param, 1 run, 1 status)" in printed

    def check() -> None:
        run = client.get_run(run_id)
        assert run.info.run_name == "offline" and run.info.status == "FINISHED"
        assert run.data.params == {"lr": "0.005", "encoder.hidden_size": "32",
                                   "encoder.num_blocks": "1"}  # fmt: skip
        assert run.data.tags["seed"] == "3" and run.data.tags[SPOOL_RUN_TAG] == placeholder
        history = client.get_metric_history(run_id, "loss/ce")
        assert sorted((m.step, m.value, m.timestamp) for m in history) == [
            (s, _loss(s), spooled[s]["timestamp"]) for s in range(N_STEPS)
        ]
        assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/report.txt"]

    check()
    assert main(["mlflow-sync", str(tmp_path), "--tracking-uri", uri]) == 0  # the run folder
    assert "uploaded 0 records" in capsys.readouterr().out
    check()
    # Without the bookkeeping everything is replayed: the run is found by its tag and the
    # store drops the exact duplicates.
    SyncState.path_of(spool).unlink()
    again = sync_spool(spool, client)
    assert again.created == {placeholder: run_id} and again.uploaded["metric"] == N_STEPS
    check()
    experiment = client.get_experiment_by_name("outage-sync")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    # the experiment the sync created opens on MLflow's training view, as a Tracker's does
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_outage_mid_run_is_flushed_once_when_the_store_is_back(tmp_path, store, caplog):
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    tracker = Tracker("outage-flush", uri, artifact_location=artifacts, spool=spool,
                      retry=RetryPolicy(first_backoff_s=0.01, probe_interval_s=0))  # fmt: skip
    run_id = tracker.start("flaky")
    real = {
        name: getattr(tracker._client, name) for name in ("log_batch", "get_experiment_by_name")
    }
    state = {"down": False, "lost_reply": False}

    def failing(name):
        def call(*args, **kwargs):
            if state["lost_reply"]:  # the write arrives, its answer does not; then down
                state["lost_reply"] = False
                real[name](*args, **kwargs)
                raise ConnectionError("connection reset")
            if state["down"]:
                raise ConnectionError("connection refused")
            return real[name](*args, **kwargs)

        return call

    for name in real:
        setattr(tracker._client, name, failing(name))
    with caplog.at_level(logging.WARNING, logger="recrl.pipelines.tracking"):
        for step in range(12):
            state["down"] = 3 <= step < 7 or step == 9
            state["lost_reply"] = step == 9
            tracker.log_metrics({"loss/ce": _loss(step)}, step=step)
            assert tracker.down == (3 <= step < 7 or step == 9), step
        tracker.end()
    assert len(_warnings(caplog)) == 1

    history = client.get_metric_history(run_id, "loss/ce")
    assert sorted((m.step, m.value) for m in history) == [(s, _loss(s)) for s in range(12)]
    spooled = [r["step"] for _, r in read_records(spool) if r["kind"] == "metric"]
    assert spooled == [3, 4, 5, 6, 9]  # step 9 reached the store AND the spool: not doubled
    assert pending_records(spool) == 0 and client.get_run(run_id).info.status == "FINISHED"


def test_a_resumed_placeholder_run_is_created_by_its_first_write(tmp_path, store, caplog):
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    down = f"http://127.0.0.1:{free_port()}"
    with Tracker("outage-resume", down, artifact_location=artifacts, spool=spool) as first:
        placeholder = first.start("resumed", params={"lr": 0.1})
        first.log_metrics({"loss/ce": 1.0}, step=1)
    # a retried trial resumes from its checkpoint, whose progress holds the placeholder id
    with Tracker("outage-resume", uri, artifact_location=artifacts, spool=spool) as second:
        assert second.resume(placeholder) == placeholder
        caplog.clear()  # the first tracker's two warnings
        with caplog.at_level(logging.WARNING, logger="recrl.pipelines.tracking"):
            second.log_metrics({"loss/ce": 0.5}, step=2)  # probes, uploads, then writes
        run_id = second.run_id
        assert run_id != placeholder and second.resolve(placeholder) == run_id
        assert not second.down and not _warnings(caplog)
    run = client.get_run(run_id)
    assert run.info.run_name == "resumed" and run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
    history = client.get_metric_history(run_id, "loss/ce")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]
    assert pending_records(spool) == 0


def test_a_rejected_write_is_counted_not_spooled(tmp_path, store, caplog):
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    with Tracker("outage-reject", uri, artifact_location=artifacts, spool=spool) as tracker:
        run_id = tracker.start("reject", params={"lr": 0.1})
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="recrl.pipelines.tracking"):
            tracker._write_batch(params={"lr": "0.2"})  # MLflow refuses changing a param
        assert time.monotonic() - started < 0.5  # not retried
        assert tracker.failures == 1 and not tracker.down and not spool.exists()
        assert "rejected" in _warnings(caplog)[0]
        tracker.log_metrics({"loss/ce": 1.0}, step=0)
    assert client.get_run(run_id).data.params == {"lr": "0.1"}
    assert [m.step for m in client.get_metric_history(run_id, "loss/ce")] == [0]


def test_spool_reading_keeps_a_torn_last_line_and_names_a_bad_one(tmp_path):
    spool = tmp_path / "mlflow_spool.jsonl"
    good = json.dumps({"kind": "metric", "run": "r", "key": "k", "value": 1.0, "step": 0,
                       "timestamp": 5})  # fmt: skip
    spool.write_text(good + "\n" + good[:20])  # the job died in the middle of a write
    assert [r["step"] for _, r in read_records(spool)] == [0]
    assert pending_records(spool) == 1
    spool.write_text(good + "\nnot json\n")
    with pytest.raises(SpoolError, match=r"mlflow_spool\.jsonl: record at byte \d+"):
        list(read_records(spool))
    spool.write_text(json.dumps({"kind": "weird", "run": "r"}) + "\n")
    with pytest.raises(SpoolError, match="unknown record kind 'weird'"):
        list(read_records(spool))


def test_a_resumed_job_ends_a_torn_line_and_its_uploads_skip_it(tmp_path, store):
    """A job killed mid-write, then resumed: the new writer ends the torn line instead of
    gluing its first record to it, and an upload during the job skips the torn line
    instead of stopping there for good."""
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    tracker = Tracker("outage-resumed", f"http://127.0.0.1:{free_port()}", spool=spool,
                      artifact_location=artifacts)  # fmt: skip
    placeholder = tracker.start("killed")
    tracker.log_metrics({"loss/ce": _loss(0)}, step=0)
    tracker.spool.close()
    spool.write_text(spool.read_text() + '{"kind":"metric","ru')  # SIGKILL mid-write
    torn_line = len(spool.read_text().splitlines())
    writer = SpoolWriter(spool, uri)
    writer.append([{"kind": "metric", "run": placeholder, "key": "loss/ce",
                    "value": _loss(1), "step": 1, "timestamp": 5}])  # fmt: skip
    writer.close()
    records = [r for _, r in read_records(spool, 0, [])]
    assert [r["step"] for r in records if r["kind"] == "metric"] == [0, 1]
    assert [r["kind"] for r in records].count("spool") == 2  # the new writer's header kept
    report = sync_spool(spool, client)  # during a job: not final
    assert [t.line for t in report.torn] == [torn_line]
    run_id = SyncState.load(spool).runs[placeholder]
    assert sorted(m.step for m in client.get_metric_history(run_id, "loss/ce")) == [0, 1]


def test_mlflow_sync_command_reports_an_unreachable_server(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    spool = tmp_path / "mlflow_spool.jsonl"
    with Tracker("outage-cli", uri, spool=spool) as tracker:
        tracker.start("offline")
        tracker.log_metrics({"loss/ce": 1.0}, step=0)
    started = time.monotonic()
    assert main(["mlflow-sync", str(spool)]) == 1  # the spool's own URI: still down
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert uri in err and f"{pending_records(spool)} records still to upload" in err
    assert main(["mlflow-sync", str(tmp_path / "missing.jsonl")]) == 2
    with pytest.raises(SystemExit):
        main(["mlflow-sync", "--help"])
    assert "exactly once" in capsys.readouterr().out


def test_mlflow_sync_reports_a_torn_record_uploads_the_rest_and_ends_the_run(
    tmp_path, store, capsys
):
    """A job killed in the middle of a spool write: the torn line is
    named with its line number, the rest goes up, and the run, which the spool never ended,
    ends FAILED instead of staying RUNNING."""
    uri, artifacts, client = store
    spool = tmp_path / "mlflow_spool.jsonl"
    tracker = Tracker("outage-torn", f"http://127.0.0.1:{free_port()}", spool=spool,
                      artifact_location=artifacts)  # fmt: skip
    placeholder = tracker.start("killed")
    for step in range(5):
        tracker.log_metrics({"loss/ce": _loss(step)}, step=step)
    tracker.spool.close()  # SIGKILL: no end(), no status record
    text = spool.read_text()
    lines = text.splitlines(keepends=True)
    spool.write_text("".join(lines[:-1]) + lines[-1][:25])  # the last write cut off

    assert main(["mlflow-sync", str(spool), "--tracking-uri", uri]) == 0
    captured = capsys.readouterr()
    torn = [line for line in captured.err.splitlines() if "torn record" in line]
    assert len(torn) == 1 and f"{spool}:{len(lines)}" in torn[0]
    run_id = SyncState.load(spool).runs[placeholder]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run_id, "loss/ce")] == [0, 1, 2, 3]
    assert "ended FAILED" in captured.out
