"""Slate studies in `recrl tune` (trainable: slate): the shipped CDQN study, how settings
route to the job and the Q-network config, and a real two-trial sweep on a small log."""

from __future__ import annotations

from pathlib import Path

import pytest
from recrl.pipelines.slate.job import SlateJob
from recrl.pipelines.tune.kinds import SLATE as SLATE_KIND
from recrl.pipelines.tune.study import StudyError, load_study, study_from_dict
from recrl.pipelines.tune.sweep import max_concurrent_trials, trial_bundles

from tests.sweep_runs import sweep_child_runs

REPO = Path(__file__).parents[1]
SLATE = {
    "name": "s", "trainable": "slate", "data": "sets",
    "fixed": {"policy": "cdqn", "user_model": "um.pt", "env_steps": 200, "warmup_steps": 50},
    "metric": "slate/reward",
}  # fmt: skip


def test_the_cdqn_study_builds_one_slate_job_per_trial():
    study = load_study(REPO / "tune_configs" / "cdqn.yaml")
    assert study.kind.name == "slate" and study.kind.step_key == "env_steps"
    assert study.n_grid_points() == 3 * 3 * 2 * 3  # gamma x epsilon_end x k x seeds
    job = study.trial_settings(None, 2, {"gamma": 0.9, "lr": 0.001, "epsilon_end": 0.2, "k": 3})
    assert isinstance(job, SlateJob)
    assert (job.policy, job.k, job.seeds, job.episodes) == ("cdqn", 3, (2,), None)
    assert (job.cdqn.gamma, job.cdqn.lr, job.cdqn.epsilon_end) == (0.9, 0.001, 0.2)
    assert (job.cdqn.env_steps, job.eval_interval, job.final_step) == (5000, 1000, 5000)
    assert study.kind.reports(job) == 5  # evaluations at 1000..4000 and the final one
    assert study.kind.discount(job) is None  # no Q values reported to bound
    assert trial_bundles(study, 0.0) == [{"CPU": 1, "GPU": 0.0}]  # one process
    assert max_concurrent_trials(study, 4.0) == 4  # no reader CPUs kept
    assert study.report.panel == "k"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fixed": {**SLATE["fixed"], "bogus": 1}}, r"unknown slate setting 'bogus'; known: "),
        ({"fixed": {**SLATE["fixed"], "reward": "pm1"}}, "unknown slate setting 'reward'"),  # rwd1
        ({"fixed": {**SLATE["fixed"], "cdqn.q_form": "additive"}}, "'cdqn.q_form'"),  # gdqn
        ({"fixed": {**SLATE["fixed"], "policy": "dqn"}}, "policy must be one of"),
        ({"fixed": {**SLATE["fixed"], "eval_interval": -1}}, "eval_interval must be >= 0"),
        ({"fixed": {"policy": "cdqn"}}, "user_model"),
        ({"metric": "eval/ndcg_20_purchase"}, r"use one of their slate/… metrics"),
        ({"variants": ["sasrec"]}, "'variants' are SASRec variants"),
    ],
)
def test_invalid_slate_studies_fail_naming_the_problem(change, message):
    with pytest.raises(StudyError, match=message):
        study_from_dict({**SLATE, **change}, source="tune_configs/x.yaml")


def test_the_final_evaluation_is_at_the_training_steps_or_zero_for_references():
    job = SLATE_KIND.build("sets", None, {**SLATE["fixed"], "seed": 1, "eval_interval": 75})
    assert job.final_step == 200 and job.seeds == (1,)
    for policy in ("greedy", "random"):
        assert SLATE_KIND.build("sets", None, {**SLATE["fixed"], "policy": policy}).final_step == 0


@pytest.mark.ray
def test_a_two_trial_slate_sweep_reports_learning_curves_and_logs_children(
    ray_session, tmp_path, monkeypatch, one_torch_thread
):
    from mlflow import MlflowClient
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.cli import main
    from recrl.pipelines.tune.sweep import run_sweep

    write_generated_dataset(SessionGeneratorConfig(n_sessions=300, n_items=50), tmp_path / "gen")
    sets, um = str(tmp_path / "sets"), tmp_path / "um"
    assert main(["usermodel", "build", "--source", "generic", "--input",
                 str(tmp_path / "gen" / "sessions"), "--output", sets]) == 0  # fmt: skip
    assert main(["usermodel", "fit", "--data", sets, "--out", str(um), "--epochs", "1",
                 "--no-baselines", "--no-mlflow"]) == 0  # fmt: skip
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = study_from_dict({
        **SLATE, "name": "cdqn2", "data": sets,
        "fixed": {**SLATE["fixed"], "user_model": str(um / "user_model.pt"), "k": 3,
                  "eval_interval": 100, "episodes": 4, "episode_length": 3, "batch_size": 16},
        "search": {"gamma": {"grid": [0.0, 0.5]}}, "seeds": [0],
        "report": {"panel": "k"}, "resources": {"cpu": 1}, "experiment": "test-slate",
    })  # fmt: skip
    report = run_sweep(study, storage=tmp_path / "sweeps")

    assert [(g.variant, g.setting) for g in report.groups] == [
        ("3", "gamma=0"), ("3", "gamma=0.5")
    ]  # fmt: skip
    for group in report.groups:
        assert group.steps.tolist() == [100, 200]  # one evaluation mid-training, one at the end
        assert (group.mean > 0).all()  # mean learned reward per step of clicked items
    assert report.figure.stat().st_size > 5_000

    client = MlflowClient(tracking_uri=uri)
    children = sweep_child_runs(client, tmp_path / "sweeps" / "cdqn2", "test-slate")
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["policy"] == "cdqn"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "slate/reward")] == [
            100, 200]  # fmt: skip
        ctr = client.get_metric_history(child.info.run_id, "slate/ctr")
        assert all(0.0 <= m.value <= 1.0 for m in ctr)
        assert client.get_metric_history(child.info.run_id, "slate/train_loss_td")
