"""`recrl train` against an MLflow tracking server on PostgreSQL.

A throwaway PostgreSQL cluster and an `mlflow server` on it (artifacts proxied to a local
folder) are started by the test; a short training job then runs with
``MLFLOW_TRACKING_URI=http://127.0.0.1:PORT``, as a user points a job at a shared server.
The job runs in-process through `recrl.pipelines.cli.main`, the `recrl` command's own entry point
(same argument parsing and code path): it reuses the test session's Ray runtime, where a
subprocess would start a second one (10-20 s on CI). `monkeypatch` undoes the environment
variables the command sets or reads.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines import cli
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.sasrec.algorithm import updates_per_iteration
from recrl.pipelines.sasrec.config import TrainConfig

from tests.services import mlflow_server, port_in_use, postgres_server

EXPERIMENT = "pg-test"
TOTAL_STEPS, EVAL_INTERVAL = 204, 102
# gcd(102, 204) = 102 and its largest divisor not above 100 is 51: one algo.train() is 51
# updates, so every learner metric is logged at 51, 102, 153, 204 and eval/… at 102, 204.
LEARNER_STEPS = [51, 102, 153, 204]
EVAL_STEPS = [102, 204]


@pytest.fixture(scope="module")
def prepared(ray_session, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pg-data")
    frame = generate_sessions(SessionGeneratorConfig(seed=3, n_sessions=400, n_items=80))
    (root / "raw").mkdir()
    frame.to_parquet(root / "raw" / "sessions.parquet", index=False)
    prepare(PrepareConfig(source="generic", input_path=str(root / "raw"),
                          output_path=str(root / "prepared")))  # fmt: skip
    return root / "prepared"


def test_hand_computed_steps_match_the_iteration_size():
    config = TrainConfig.for_variant(
        "sasrec_ccql", "unused", total_steps=TOTAL_STEPS, eval_interval=EVAL_INTERVAL
    )
    assert updates_per_iteration(config) == 51


@pytest.mark.ray
@pytest.mark.service
def test_training_logs_full_histories_to_a_postgres_backed_server(prepared, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine, text

    run_dir = tmp_path / "run"
    with postgres_server(tmp_path) as db_uri, mlflow_server(db_uri, tmp_path / "artifacts") as url:
        port = int(url.rsplit(":", 1)[1])
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
            monkeypatch.delenv(name, raising=False)  # set by the tracker for HTTP stores
        status = cli.main(
            ["train", "--variant", "sasrec_ccql", "--data", str(prepared),
             "--steps", str(TOTAL_STEPS), "--eval-interval", str(EVAL_INTERVAL),
             "--run-dir", str(run_dir), "--set", "hidden_size=16", "--set", "batch_size=32",
             "--set", f"experiment={EXPERIMENT}"]
        )  # fmt: skip
        assert status == 0

        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 1
        run = runs[0]
        run_id = run.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["variant"] == "sasrec_ccql"
        assert run.data.params["encoder.hidden_size"] == "16"
        assert run.data.params["total_steps"] == str(TOTAL_STEPS)

        learner_keys = [k for k in run.data.metrics if k.startswith(("loss/", "q/"))]
        assert {"loss/ce", "loss/td", "loss/cql", "loss/total", "q/mean"} <= set(learner_keys)
        for key in learner_keys:
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == LEARNER_STEPS, key
            assert all(math.isfinite(m.value) for m in history), key
        for key in ("eval/hr_20_purchase", "eval/ndcg_20_click"):
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == EVAL_STEPS, key
            assert all(0.0 <= m.value <= 1.0 for m in history), key
        assert client.get_metric_history(run_id, "test/hr_20_click")[0].step == TOTAL_STEPS

        # the rows are in PostgreSQL itself: 4 loss points, 2 eval points, no duplicates
        engine = create_engine(db_uri)
        with engine.connect() as connection:
            counts = dict(
                connection.execute(
                    text("SELECT key, count(*) FROM metrics WHERE run_uuid = :run "
                         "AND key IN ('loss/ce', 'eval/hr_20_purchase') GROUP BY key"),
                    {"run": run_id},
                ).all()
            )  # fmt: skip
        engine.dispose()
        assert counts == {"loss/ce": len(LEARNER_STEPS), "eval/hr_20_purchase": len(EVAL_STEPS)}

        # the stability figure went through the server to its artifact destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        artifacts = {a.path: a for a in client.list_artifacts(run_id)}
        assert {"stability.png", "meta.json", "checkpoint"} <= set(artifacts)
        downloaded = Path(client.download_artifacts(run_id, "stability.png", str(tmp_path)))
        figure = downloaded.read_bytes()
        assert figure.startswith(b"\x89PNG\r\n\x1a\n") and len(figure) > 10_000
        assert figure == (run_dir / "stability.png").read_bytes()
        stored = list((tmp_path / "artifacts").rglob("stability.png"))
        assert len(stored) == 1 and stored[0].read_bytes() == figure
        db_port = int(db_uri.rsplit(":", 1)[1].split("/")[0])
    assert not port_in_use(port) and not port_in_use(db_port)
