"""The `recrl train` job end to end: RLlib updates, evaluation, MLflow, checkpoint, figure."""

from __future__ import annotations

import math

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.cli import format_train_result
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.job import TrainingDiverged, _check_finite, train


def test_non_finite_values_stop_training_and_name_the_last_good_checkpoint(tmp_path):
    _check_finite({"loss/ce": 1.0, "q/mean": 0.5, "eval/hr_20_click": math.nan}, 10, None)
    with pytest.raises(TrainingDiverged) as error:
        _check_finite({"loss/ce": 1.0, "q/max": math.inf}, 300, tmp_path / "checkpoint")
    assert "q/max became non-finite at update 300" in str(error.value)
    assert f"last good checkpoint is {tmp_path / 'checkpoint'}" in str(error.value)


@pytest.mark.ray
def test_training_job_logs_a_complete_mlflow_run(ray_session, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    frame = generate_sessions(SessionGeneratorConfig(seed=5, n_sessions=600, n_items=120))
    (tmp_path / "raw").mkdir()
    frame.to_parquet(tmp_path / "raw" / "sessions.parquet", index=False)
    data = tmp_path / "prepared"
    prepare(PrepareConfig(source="generic", input_path=str(tmp_path / "raw"),
                          output_path=str(data)))  # fmt: skip

    config = TrainConfig.for_variant(
        "sasrec_ccql", str(data), hidden_size=32, total_steps=100, eval_interval=50,
        batch_size=64, experiment="test-train", eval_max_rows=40,
    )  # fmt: skip
    result = train(config, run_dir=tmp_path / "run")
    # the popularity baseline is scored on the model's test rows (all), not on eval_max_rows
    assert result.popularity_test_metrics["eval_rows"] == result.test_metrics["eval_rows"] > 40

    assert result.updates >= 100
    assert [row["updates"] for row in result.val_history][-1] == result.updates
    assert len(result.val_history) >= 2
    assert (tmp_path / "run" / "checkpoint").is_dir()
    assert (tmp_path / "run" / "stability.png").stat().st_size > 10_000
    assert 0 < result.eval_share < 1

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["variant"] == "sasrec_ccql"
    assert run.data.tags["dataset"] == "prepared"
    assert run.data.params["objective.cql_alpha"] == "0.01"
    assert run.data.params["encoder.hidden_size"] == "32"
    for name in ("loss/ce", "loss/td", "loss/cql", "loss/co", "q/mean", "q/cql_gap"):
        history = client.get_metric_history(result.run_id, name)
        assert len(history) >= 2 and all(math.isfinite(m.value) for m in history), name
    evals = client.get_metric_history(result.run_id, "eval/hr_20_purchase")
    assert [m.step for m in evals] == [row["updates"] for row in result.val_history]
    assert "test/ndcg_20_click" in run.data.metrics
    assert "test_popularity/hr_20_click" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"meta.json", "stability.png", "checkpoint"} <= artifacts

    printed = format_train_result(config, result)
    assert "hr_20_purchase" in printed and "popularity" in printed and "mlflow ui" in printed
    # the printed link opens the experiment on MLflow's training view (runs table)
    experiment_id = client.get_run(result.run_id).info.experiment_id
    assert result.experiment_id == experiment_id
    assert f"/#/experiments/{experiment_id}?workflowType=machine_learning" in printed


def test_overwrite_removes_what_a_job_wrote_and_nothing_else(tmp_path):
    from recrl.pipelines.sasrec.job import PROGRESS_FILE, _claim_run_dir

    run = tmp_path / "run"
    for folder in ("checkpoint", "checkpoint.old", "model", "notes"):
        (run / folder).mkdir(parents=True)
    (run / "checkpoint" / PROGRESS_FILE).write_text('{"updates": 40}')
    (run / "stability.png").write_bytes(b"png")
    _claim_run_dir(run, overwrite=True)
    assert sorted(path.name for path in run.iterdir()) == ["notes"]


def test_default_run_name_says_what_differs_from_the_preset_and_not_where_it_logs():
    from recrl.pipelines.sasrec.job import default_run_name

    config = TrainConfig.for_variant("snqn", "data/rc15", n_neg=50, seed=1,
                                     register_model="rc15-snqn", eval_max_rows=100)  # fmt: skip
    assert default_run_name(config) == "snqn n_neg=50 seed=1"
