"""`recrl usermodel build|fit|evaluate` end to end on a small generated log, with MLflow."""

from __future__ import annotations

import json

import pytest
from recrl.envs.generated_dataset import write_generated_dataset
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.models.user_model.checkpoint import load_user_model
from recrl.pipelines.cli import main


def test_build_fit_l2_evaluate_and_mlflow_curves(tmp_path, monkeypatch, capsys, one_torch_thread):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    write_generated_dataset(SessionGeneratorConfig(n_sessions=600, n_items=80), tmp_path / "gen")
    sets = str(tmp_path / "sets")
    assert main(["usermodel", "build", "--source", "generic",
                 "--input", str(tmp_path / "gen" / "sessions"), "--output", sets]) == 0  # fmt: skip
    meta = json.loads((tmp_path / "sets" / "meta.json").read_text())
    assert meta["rows"]["kept"] + meta["rows"]["dropped_total"] == meta["rows"]["input"]
    assert meta["set_size"] == 10 and meta["feature_names"] == []

    out = tmp_path / "um"
    args = ["usermodel", "fit", "--data", sets, "--out", str(out), "--epochs", "2",
            "--regularizer", "l2", "--adversarial-epochs", "1"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "user model" in printed and "iknn" in printed and "MLflow run" in printed

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("recrl-usermodel")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["model.regularizer"] == "l2"
    history = client.get_metric_history(run.info.run_id, "usermodel/val_prec1")
    assert sorted(m.step for m in history) == [1, 2, 3]  # 2 likelihood + 1 adversarial epoch
    assert len(client.get_metric_history(run.info.run_id, "usermodel/adv_generator")) == 1
    for name in ("usermodel/train_loss", "usermodel/val_loss", "usermodel/test_prec2",
                 "baseline/popularity/test_prec1", "usermodel/test_mle_prec1"):  # fmt: skip
        assert name in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "user_model.pt" in artifacts

    loaded = load_user_model(out / "user_model.pt")
    assert not any(p.requires_grad for p in loaded.reward.parameters())
    assert main(["usermodel", "evaluate", "--model", str(out / "user_model.pt"),
                 "--data", sets, "--json"]) == 0  # fmt: skip
    table = json.loads(capsys.readouterr().out)
    assert set(table) == {"user model", "popularity", "iknn", "logistic"}
    assert table["user model"]["prec1"] == pytest.approx(run.data.metrics["usermodel/test_prec1"])
