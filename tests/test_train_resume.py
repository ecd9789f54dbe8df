"""``recrl train --resume``: a job resumed from a checkpoint ends with the weights, losses and
val metrics of the uninterrupted job, bit for bit, in the same MLflow run.

This holds on one process (``num_learners=0``) because the data order is fixed by the seed
(the reader streams the files in order) and a resumed job restores the weights, optimiser,
target networks, update count, RNG states and the position in the data stream. Forgetting
any of these changes the final weights, so the digests below differ."""

from __future__ import annotations

import json
import shutil

import pytest
from recrl.pipelines.sasrec import job as trainer
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.job import CHECKPOINT_DIR, CONFIG_FILE, train

from tests.hostile import assert_user_error, run_recrl

SETTINGS = {"hidden_size": 8, "batch_size": 16, "total_steps": 20, "eval_interval": 10}


@pytest.mark.ray
def test_a_job_resumed_from_a_checkpoint_ends_as_the_uninterrupted_job(
    ray_session, one_torch_thread, tmp_path_factory, monkeypatch, capsys
):
    from mlflow import MlflowClient
    from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
    from recrl.pipelines.prepare.config import PrepareConfig
    from recrl.pipelines.prepare.pipeline import prepare

    tmp = tmp_path_factory.mktemp("resume")
    uri = f"sqlite:///{tmp}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(trainer, "_plot", lambda *args: None)  # 3 s a job; not tested here
    raw = tmp / "raw"
    raw.mkdir()
    generate_sessions(SessionGeneratorConfig(seed=5, n_sessions=300, n_items=60)).to_parquet(
        raw / "sessions.parquet", index=False
    )
    data = str(tmp / "prepared")
    prepare(PrepareConfig(source="generic", input_path=str(raw), output_path=data))
    config = TrainConfig.for_variant("sasrec_ccql", data, experiment="resume", **SETTINGS)

    # The uninterrupted job; after its checkpoint at update 10, its run folder is copied as
    # a job killed right then would leave it (every file is written atomically).
    cut = tmp / "cut"
    points = []

    def copy_run_folder_at_10(point) -> None:
        points.append(point)
        if point.updates == 10:
            cut.mkdir()
            shutil.copytree(point.checkpoint, cut / CHECKPOINT_DIR)
            shutil.copy(tmp / "whole" / CONFIG_FILE, cut / CONFIG_FILE)

    whole = train(config, run_dir=tmp / "whole", on_eval=copy_run_folder_at_10)
    progress = json.loads((cut / CHECKPOINT_DIR / "progress.json").read_text())
    assert progress["updates"] == 10 and (cut / CHECKPOINT_DIR / "rng_state.pkl").is_file()
    assert progress["run_id"] == whole.run_id

    # a new job into that folder is refused; --resume continues it with the saved settings
    refused = run_recrl(capsys, "train", "--data", data, "--run-dir", cut)
    assert_user_error(refused, "--resume", "--overwrite")
    resumed = run_recrl(capsys, "train", "--resume", cut)
    assert resumed.code == 0, resumed.err
    final = json.loads((cut / CHECKPOINT_DIR / "progress.json").read_text())
    assert final["updates"] == 20 and final["run_id"] == whole.run_id

    # the history up to the checkpoint is kept; the end is the uninterrupted job's, exactly
    assert final["val_history"][0] == progress["val_history"][0]
    assert [scores(row) for row in final["val_history"]] == list(map(scores, whole.val_history))
    assert final["learners"][0]["weights_sha256"] == whole.learners[0]["weights_sha256"]

    # the resumed job wrote into the job's MLflow run from update 11 on, the same values
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(whole.run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(whole.run_id, "eval/hr_20_click")]
    assert steps == [10, 20, 20]
    for name in ("loss/total", "loss/td", "q/mean"):
        logged = [(m.step, m.value) for m in client.get_metric_history(whole.run_id, name)]
        uninterrupted = [(p.updates, p.learner[name]) for p in points]
        assert sorted(logged) == sorted(uninterrupted + uninterrupted[1:]), name


def scores(row: dict) -> dict:
    """A val history row without its timing."""
    return {key: value for key, value in row.items() if key != "eval_seconds"}
