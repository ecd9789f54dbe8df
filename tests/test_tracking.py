"""The MLflow tracking module against a temporary sqlite store (one store for the module)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from recrl.pipelines.tracking import (
    DEFAULT_TRACKING_URI,
    MAX_PARAM_VALUE_LENGTH,
    NullTracker,
    RetryPolicy,
    Tracker,
    TrackingUnavailableError,
    dashboard_command,
    flatten_params,
    git_commit,
    sanitize_name,
    tracking_uri,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(uri, artifact folder, client) of one sqlite store; migrating it takes a few seconds."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlruns.db"
    return uri, str(root / "artifacts"), MlflowClient(tracking_uri=uri)


@pytest.fixture
def tracker(store):
    uri, artifacts, _ = store
    tracker = Tracker("test", uri, artifact_location=artifacts)
    yield tracker
    tracker.end()


def test_names_are_sanitised_and_params_flattened():
    assert sanitize_name("hr@20_purchase") == "hr_20_purchase"
    assert sanitize_name("loss/td") == "loss/td"
    assert sanitize_name("/eval//hr@5/") == "eval/hr_5"
    params = flatten_params({"model": {"H": 64, "blocks": {"n": 1}}, "lr": 0.01, "x": "y" * 7000})
    assert params["model.H"] == "64" and params["model.blocks.n"] == "1"
    assert params["lr"] == "0.01" and len(params["x"]) == MAX_PARAM_VALUE_LENGTH


def test_params_tags_and_metrics_round_trip(tracker, store):
    client = store[2]
    run_id = tracker.start(
        "round-trip", params={"model": {"H": 64}, "variant": "sasrec"}, tags={"seed": 3}
    )
    sent = tracker.log_metrics(
        {"hr@20_purchase": 0.5, "loss/td": 1.0, "q/mean": torch.tensor(2.0), "bad": math.nan},
        step=0,
    )
    assert sent == {"hr_20_purchase": 0.5, "loss/td": 1.0, "q/mean": 2.0}
    tracker.log_metrics({"loss/td": 0.25, "q/mean": math.inf, "eval/x": "text"}, step=10)
    tracker.set_tags({"best_step": 10})
    tracker.end()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "round-trip"
    assert run.data.params == {"model.H": "64", "variant": "sasrec"}
    assert run.data.tags["seed"] == "3" and run.data.tags["best_step"] == "10"
    assert set(run.data.metrics) == {"hr_20_purchase", "loss/td", "q/mean"}  # nan/inf dropped
    history = client.get_metric_history(run_id, "loss/td")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (10, 0.25)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "q/mean")] == [(0, 2.0)]
    commit = git_commit()
    assert run.data.tags.get("git.commit") == commit  # absent outside a git checkout


def test_thirty_metrics_are_one_log_batch_call(tracker, monkeypatch):
    tracker.start("batch")
    calls = []
    original = tracker._client.log_batch
    monkeypatch.setattr(
        tracker._client, "log_batch", lambda *a, **k: calls.append(k) or original(*a, **k)
    )
    tracker.log_metrics({f"m/{i}": float(i) for i in range(30)}, step=1)
    assert len(calls) == 1 and len(calls[0]["metrics"]) == 30


def test_artifacts_are_stored(tracker, store, tmp_path):
    client = store[2]
    run_id = tracker.start("artifacts")
    report = tmp_path / "report.txt"
    report.write_text("hello")
    tracker.log_artifact(report, artifact_path="reports")
    tracker.log_dict({"hr_20_purchase": 0.5}, "metrics.json")
    tracker.log_text("notes", "notes.txt")
    tracker.end()
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"reports", "metrics.json", "notes.txt"}
    assert [a.path for a in client.list_artifacts(run_id, "reports")] == ["reports/report.txt"]
    local = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"hr_20_purchase": 0.5}


def test_nested_run_has_the_parent_tag(tracker, store):
    uri, artifacts, client = store
    parent = tracker.start("sweep")
    with Tracker("test", uri, artifact_location=artifacts) as child:
        child_id = child.start("trial-0", parent_run_id=parent)
    assert client.get_run(child_id).data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(child_id).info.status == "FINISHED"


def test_experiments_open_on_the_training_view(store):
    """MLflow's UI picks an experiment's view from its ``mlflow.experimentKind`` tag."""
    uri, artifacts, client = store
    with Tracker("kind-new", uri, artifact_location=artifacts) as tracker:
        tracker.start("first")
    kind = "mlflow.experimentKind"
    assert client.get_experiment_by_name("kind-new").tags[kind] == "custom_model_development"
    # an experiment made elsewhere gets the tag on its next run, a guessed kind is replaced
    for name, before, after in (
        ("kind-untagged", None, "custom_model_development"),
        ("kind-inferred", "genai_development_inferred", "custom_model_development"),
        ("kind-chosen", "genai_development", "genai_development"),  # a person's choice stays
    ):
        tags = {kind: before} if before else {}
        experiment_id = client.create_experiment(name, artifacts, tags=tags)
        with Tracker(name, uri, artifact_location=artifacts) as tracker:
            tracker.start("next")
        assert client.get_experiment(experiment_id).tags.get(kind) == after, name


def test_context_manager_marks_a_crash_failed(store):
    uri, artifacts, client = store
    with pytest.raises(ValueError), Tracker("test", uri, artifact_location=artifacts) as tracker:
        run_id = tracker.start("crash")
        raise ValueError("boom")
    assert client.get_run(run_id).info.status == "FAILED"


def test_tracking_uri_env_is_honoured(store, monkeypatch):
    uri, artifacts, client = store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlruns.db"
    assert Tracker().uri == DEFAULT_TRACKING_URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with Tracker("from-env", artifact_location=artifacts) as tracker:
        assert tracker.uri == uri
        run_id = tracker.start("env")
    assert client.get_run(run_id).info.run_name == "env"
    assert dashboard_command() == f"mlflow ui --backend-store-uri {uri}"


def test_unreachable_server_fails_at_start_naming_the_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingUnavailableError, match=r"http://127\.0\.0\.1:9"):
        Tracker(uri="http://127.0.0.1:9").start("nowhere")


def test_outage_after_start_is_counted_and_warned_once(tracker, store, monkeypatch, caplog):
    run_id = tracker.start("outage")

    def down(*args, **kwargs):
        raise ConnectionError("tracking server down")

    tracker.retry = RetryPolicy(first_backoff_s=0.01, probe_interval_s=0)
    monkeypatch.setattr(tracker._client, "log_batch", down)
    with caplog.at_level(logging.WARNING, logger="recrl.pipelines.tracking"):
        for step in range(3):
            tracker.log_metrics({"loss/ce": 1.0}, step=step)
    assert tracker.failures == 3
    assert len([r for r in caplog.records if "write failed" in r.message]) == 1
    monkeypatch.undo()
    tracker.log_metrics({"loss/ce": 0.5}, step=3)  # back up: logging resumes
    history = store[2].get_metric_history(run_id, "loss/ce")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]


def test_null_tracker_and_helpers(tmp_path):
    with NullTracker() as tracker:
        assert tracker.start("off", params={"a": 1}) == ""
        tracker.log_metrics({"loss/td": 1.0}, step=0)
        tracker.log_artifact(tmp_path / "missing.png")
        tracker.set_tags({"a": 1})
    assert tracker.run_id is None and tracker.failures == 0
    assert git_commit(tmp_path) is None
    assert dashboard_command("http://host:5000") == "python -m webbrowser http://host:5000"
    # with an experiment: its page in MLflow's training view (runs table), not GenAI's
    training_view = "/#/experiments/7?workflowType=machine_learning"
    assert dashboard_command("http://host:5000/", "7") == (
        f"python -m webbrowser 'http://host:5000{training_view}'"
    )
    assert dashboard_command("sqlite:///m.db", "7") == (
        f"mlflow ui --backend-store-uri sqlite:///m.db  # then open http://127.0.0.1:5000"
        f"{training_view}"
    )
