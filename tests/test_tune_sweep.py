"""A real Tune sweep on the generated dataset (parent + child MLflow runs, the report),
resuming it, and a training job resumed from its checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.job import train
from recrl.pipelines.tune.study import study_from_dict
from recrl.pipelines.tune.sweep import run_sweep

from tests.sweep_runs import sweep_child_runs


@pytest.fixture(scope="module")
def prepared(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    frame = generate_sessions(SessionGeneratorConfig(seed=3, n_sessions=500, n_items=100))
    (root / "raw").mkdir()
    frame.to_parquet(root / "raw" / "sessions.parquet", index=False)
    prepare(PrepareConfig(source="generic", input_path=str(root / "raw"),
                          output_path=str(root / "prepared")))  # fmt: skip
    return root / "prepared"


def test_two_trial_sweep_logs_parent_and_children_and_writes_the_report(
    prepared, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = study_from_dict({
        "name": "two", "data": str(prepared), "variants": ["snqn"],
        "fixed": {"total_steps": 20, "eval_interval": 10, "hidden_size": 16, "batch_size": 32},
        "search": {"n_neg": {"grid": [2, 4]}}, "seeds": [0],
        "resources": {"cpu": 0.5, "data_cpu": 1}, "experiment": "test-sweep",
    })  # fmt: skip
    report = run_sweep(study, storage=tmp_path / "sweeps")

    sweep_dir = tmp_path / "sweeps" / "two"
    assert report.figure == sweep_dir / "report.png" and report.figure.stat().st_size > 5_000
    assert [g.setting for g in report.groups] == ["n_neg=2", "n_neg=4"]
    for group in report.groups:
        assert group.steps.tolist() == [10, 20] and len(group.runs) == 1
    assert "n_neg=4" in report.csv.read_text()

    client = MlflowClient(tracking_uri=uri)
    parent_id = json.loads((sweep_dir / "sweep.json").read_text())["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["recrl.kind"] == "sweep"
    artifacts = {a.path for a in client.list_artifacts(parent_id, "report")}
    assert {"report/report.png", "report/report.csv", "report/report.txt",
            "report/stability.png"} <= artifacts  # fmt: skip
    assert report.stability == sweep_dir / "stability.png"
    experiment = client.get_experiment_by_name("test-sweep")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = sweep_child_runs(client, sweep_dir, "test-sweep")
    assert sorted(run.data.params["objective.n_neg"] for run in children) == ["2", "4"]
    # the compare view lists the trials by their settings
    assert sorted(run.info.run_name for run in children) == [
        "snqn n_neg=2 seed=0", "snqn n_neg=4 seed=0"
    ]  # fmt: skip
    for child in children:
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "eval/ndcg_20_purchase")
        assert [m.step for m in history] == [10, 20]
        # Only training metrics: not one column per Tune config key.
        assert not any(key.startswith("config/") for key in child.data.metrics)

    # Resuming a finished sweep runs nothing again and keeps the same parent run.
    again = run_sweep(study, storage=tmp_path / "sweeps", resume=True)
    assert [len(g.runs) for g in again.groups] == [1, 1]
    experiment = client.get_experiment_by_name("test-sweep").experiment_id
    assert len(client.search_runs([experiment])) == 3


def test_a_resumed_job_continues_its_updates_curves_and_mlflow_run(prepared, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = TrainConfig.for_variant("sasrec_ac", str(prepared), hidden_size=16, batch_size=32,
                                     total_steps=20, eval_interval=10, experiment="t")  # fmt: skip
    first = train(config, run_dir=tmp_path / "a")
    resumed = train(replace(config, total_steps=40), run_dir=tmp_path / "b",
                    resume_from=first.checkpoint)  # fmt: skip

    assert resumed.run_id == first.run_id
    assert [row["updates"] for row in resumed.val_history] == [10, 20, 30, 40]
    assert resumed.val_history[:2] == first.val_history
    history = MlflowClient(tracking_uri=uri).get_metric_history(first.run_id, "loss/ce")
    steps = [m.step for m in history]
    assert steps == sorted(set(steps)) and steps[-1] == 40 and min(steps) <= 10
