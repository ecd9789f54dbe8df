"""A real `mlflow server` dies in the middle of a real `recrl train`; nothing is lost.

The server (sqlite backend) is stopped after the first validation; training goes on and
spools; the server is restarted on the same port and store; `recrl mlflow-sync` uploads the
spool. Each metric then holds every logged step exactly once. One update per iteration
(eval_interval coprime with total_steps), so ``loss/ce`` has one point per update.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.tracking_spool import SPOOL_FILE, read_records

from tests.services import free_port, mlflow_server

STEPS, EVAL_INTERVAL = 50, 13  # gcd 1: 50 iterations of one update; evals at 13...50
EXPERIMENT = "test-outage"
RECRL = str(Path(sys.executable).parent / "recrl")


@contextlib.contextmanager
def _process_group(command: list[str], env: dict, log: Path):
    """``command`` in its own process group, killed whole on exit, also when the test fails."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever outlived the driver
        process.wait(timeout=10)


def _first_eval_logged(client, deadline: float, process) -> str:
    """Poll the server until the training run has its first validation point; its run id."""
    while time.monotonic() < deadline and process.poll() is None:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, "eval/hr_20_purchase"):
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no validation logged before the deadline (exit {process.poll()})")


@pytest.mark.ray
@pytest.mark.service
def test_server_killed_mid_run_loses_no_step(ray_session, tmp_path):
    from mlflow import MlflowClient

    frame = generate_sessions(SessionGeneratorConfig(seed=5, n_sessions=600, n_items=120))
    (tmp_path / "raw").mkdir()
    frame.to_parquet(tmp_path / "raw" / "sessions.parquet", index=False)
    data = tmp_path / "prepared"
    prepare(PrepareConfig(source="generic", input_path=str(tmp_path / "raw"),
                          output_path=str(data)))  # fmt: skip

    backend, artifacts = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts"
    run_dir, port = tmp_path / "run", free_port()
    spool = run_dir / SPOOL_FILE
    # the job joins this session's Ray runtime as a second driver, as `ray job submit` would:
    # no second cluster to start on a 2-core machine
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(RAY_ADDRESS=ray_session.get_runtime_context().gcs_address, PYTHONUNBUFFERED="1")
    train_log = tmp_path / "train.log"
    command = [RECRL, "train", "--variant", "sasrec_ccql", "--data", str(data),
               "--steps", str(STEPS), "--eval-interval", str(EVAL_INTERVAL),
               "--run-dir", str(run_dir), "--set", "hidden_size=32", "--set", "batch_size=64",
               "--set", "eval_max_rows=300", "--set", f"experiment={EXPERIMENT}"]  # fmt: skip
    with contextlib.ExitStack() as cleanup:
        with mlflow_server(backend, artifacts, port=port) as url:
            env["MLFLOW_TRACKING_URI"] = url
            client = MlflowClient(tracking_uri=url)
            process = cleanup.enter_context(_process_group(command, env, train_log))
            run_id = _first_eval_logged(client, time.monotonic() + 900, process)
            logged_before = {m.step for m in client.get_metric_history(run_id, "loss/ce")}
        # the server is down now (its port checked closed); training must go on
        assert process.wait(timeout=900) == 0, train_log.read_text()[-4000:]
        output = train_log.read_text()
        spooled = [r for _, r in read_records(spool)]
        with mlflow_server(backend, artifacts, port=port) as url:
            sync = [RECRL, "mlflow-sync", str(spool)]  # the spool knows the URI
            first = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=300)
            second = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=300)
            client = MlflowClient(tracking_uri=url)
            run = client.get_run(run_id)
            histories = {key: client.get_metric_history(run_id, key) for key in run.data.metrics}
            artifact_names = {a.path for a in client.list_artifacts(run_id)}

    assert first.returncode == 0, first.stderr
    assert "uploaded 0 records" in second.stdout, second.stdout + second.stderr
    # one warning when the server went away, one at the end naming what is left to sync
    assert output.count(f"writes go to {spool}") == 1, output[-4000:]
    assert output.count("records not uploaded, in the spool") == 1
    assert {r["run"] for r in spooled if "run" in r} == {run_id}
    spooled_metrics = [r for r in spooled if r["kind"] == "metric"]
    spooled_steps = {r["key"]: set() for r in spooled_metrics}
    for r in spooled_metrics:
        spooled_steps[r["key"]].add(r["step"])
    # the outage really was mid-run: the first steps went directly, the last ones to the spool
    assert 1 in logged_before and not {1, 2} & spooled_steps["loss/ce"]
    assert STEPS in spooled_steps["loss/ce"] and STEPS in spooled_steps["eval/hr_20_purchase"]

    assert run.info.status == "FINISHED"
    for key, history in histories.items():
        steps = Counter(m.step for m in history)
        assert max(steps.values()) == 1, f"{key} has duplicated steps: {steps}"
    assert sorted(m.step for m in histories["loss/ce"]) == list(range(1, STEPS + 1))
    assert sorted(m.step for m in histories["q/mean"]) == list(range(1, STEPS + 1))
    assert sorted(m.step for m in histories["eval/hr_20_purchase"]) == [13, 26, 39, 50]
    assert {"test/ndcg_20_click", "time/eval_share"} <= set(histories)
    uploaded = {(m.key, m.step, m.value, m.timestamp) for h in histories.values() for m in h}
    assert {(r["key"], r["step"], r["value"], r["timestamp"]) for r in spooled_metrics} <= uploaded
    assert {"meta.json", "stability.png", "checkpoint"} <= artifact_names
