"""The bandit run loop, its MLflow metrics, the ``recrl bandit`` command, and REN vs greedy."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from recrl.models.bandits import POLICIES
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.job import run_bandit
from recrl.pipelines.cli import main
from recrl.pipelines.settings import apply_settings
from recrl.pipelines.tracking import Tracker

ONE_STAGE = [name for name in sorted(POLICIES) if not name.startswith("2-")]
"""SYN items have no topics; the two-stage policies run on the fitted simulators
(tests/test_bandit_generated_env.py) and say so on SYN."""


def test_two_stage_policies_need_an_env_with_topics():
    with pytest.raises(ValueError, match="needs item topics"):
        run_bandit(BanditRunConfig(policy="2-s-n-galm-ucb", rounds=2, tracking=False))


@pytest.mark.parametrize("policy", [*ONE_STAGE, "oracle"])
def test_every_policy_runs_on_syn_s(policy):
    config = BanditRunConfig(policy=policy, rounds=12, tracking=False, window=5)
    result = run_bandit(config, progress=False)
    assert result.rewards.shape == (12,) and (result.rewards >= 0).all()
    assert np.allclose(result.oracle_rewards, 2 / np.sqrt(6))
    assert (np.diff(result.cumulative_regret) >= -1e-12).all()
    if policy == "oracle":
        assert result.cumulative_regret[-1] == pytest.approx(0.0)
    assert np.allclose(result.ctr, 1 / 4)  # the user takes exactly one of four items


def test_metrics_reach_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    config = BanditRunConfig(policy="ren", rounds=30, log_interval=10, window=10)
    with Tracker("bandit-test", uri, artifact_location=str(tmp_path / "art")) as tracker:
        run_id = tracker.start("ren-test", params=config.as_params())
        result = run_bandit(config, tracker, progress=False)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    regret = client.get_metric_history(run_id, "bandit/cumulative_regret")
    assert [m.step for m in regret] == [10, 20, 30]
    assert regret[-1].value == pytest.approx(result.cumulative_regret[-1])
    reward = client.get_metric_history(run_id, "bandit/reward")
    assert reward[0].value == pytest.approx(result.rewards[:10].mean())
    assert client.get_run(run_id).data.params["policy"] == "ren"


def test_cli_runs_and_writes_the_series(tmp_path, capsys):
    code = main(
        ["bandit", "--policy", "ren", "--env", "syn-m", "--rounds", "15", "--set", "lambda_d=0.01",
         "--set", "window=5", "--run-dir", str(tmp_path), "--no-mlflow", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert "ren on syn-m, 15 rounds" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "rounds.csv").open()))
    assert len(rows) == 15 and float(rows[-1]["cumulative_regret"]) >= 0
    assert main(["bandit", "--set", "lambda_x=1", "--no-mlflow"]) == 2
    assert "recrl: error: unknown setting 'lambda_x'" in capsys.readouterr().err


def test_settings_are_routed_and_validated():
    config = apply_settings(
        BanditRunConfig(), {"lambda_d": 0.01, "window": 50, "embedding_dim": 4},
        rest_to="policy_settings",
    )  # fmt: skip
    assert config.policy_settings == {"lambda_d": 0.01}
    assert config.window == 50 and config.representation.embedding_dim == 4
    with pytest.raises(ValueError, match="unknown env"):
        BanditRunConfig(env="syn-xxl")
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        BanditRunConfig(rounds=0)


def test_refit_interval_follows_each_papers_protocol_unless_set():
    # REN refits every step on SYN; the two-stage paper retrains every 100 rounds on logs.
    assert BanditRunConfig(env="syn-m").refit_every == 1
    fitted = BanditRunConfig(env="ml-100k", data_path="ml")
    assert fitted.refit_interval is None and fitted.refit_every == 100
    assert fitted.as_params()["refit_interval"] == 100  # MLflow shows the interval used
    assert BanditRunConfig(env="generated", data_path="g").refit_every == 100
    assert BanditRunConfig(env="ml-100k", data_path="ml", refit_interval=5).refit_every == 5
    assert apply_settings(BanditRunConfig(), {"refit_interval": 7}).refit_every == 7
    with pytest.raises(ValueError, match="refit_interval must be >= 1, got 0"):
        BanditRunConfig(refit_interval=0)


def test_ren_beats_greedy_on_syn_s():
    """REN paper Fig. 1, shortened: greedy saturates by round ~500, REN keeps exploring."""
    threads = torch.get_num_threads()
    try:
        finals = {
            policy: run_bandit(
                BanditRunConfig(policy=policy, env="syn-s", rounds=600, seed=1, tracking=False),
                progress=False,
            ).final_window_reward
            for policy in ("greedy", "ren")
        }
    finally:
        torch.set_num_threads(threads)
    assert finals["ren"] > finals["greedy"] + 0.1, finals


@pytest.mark.parametrize("study", ["bandit_ren_lambda.yaml", "bandit_ucb_beta.yaml"])
def test_tune_studies_build_valid_run_configs(study):
    """Every grid point of the study files is a valid BanditRunConfig (keys do not rot)."""
    import itertools
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).parents[1] / "tune_configs" / study).read_text())
    assert spec["trainable"] == "bandit" and spec["name"] == study.removesuffix(".yaml")
    grids = {k: v["grid"] for k, v in spec["search"].items() if "grid" in v}
    ranges = {k: v["loguniform"] for k, v in spec["search"].items() if "grid" not in v}
    assert spec["mode"] == "max" and spec["metric"].startswith("bandit/") and spec["seeds"]
    for values in itertools.product(*grids.values()):
        for end in (0, 1):  # both ends of every range
            sampled = {k: bounds[end] for k, bounds in ranges.items()}
            point = {**spec["fixed"], **dict(zip(grids, values, strict=True)), **sampled}
            config = apply_settings(BanditRunConfig(), point, rest_to="policy_settings")
            assert config.rounds == spec["fixed"]["rounds"]
