"""Bandit studies in `recrl tune` (``trainable: bandit``): parsing, trial shape, the report's
panels, and a real 2-trial sweep of REN on SYN-S with MLflow parent and children."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.tune.report import read_sweep, summarize
from recrl.pipelines.tune.study import StudyError, load_study, study_from_dict
from recrl.pipelines.tune.sweep import max_concurrent_trials, param_space, run_sweep, trial_bundles

from tests.sweep_runs import sweep_child_runs

REPO = Path(__file__).resolve().parents[1]
BANDIT = {
    "name": "b", "trainable": "bandit", "metric": "bandit/reward_window",
    "fixed": {"policy": "ren", "rounds": 40, "log_interval": 20, "window": 20},
    "search": {"lambda_d": {"grid": [0.01, 0.1]}, "env": {"grid": ["syn-s", "syn-m"]}},
    "seeds": [0, 1], "report": {"panel": "env"},
}  # fmt: skip


@pytest.mark.parametrize("name", ["bandit_ren_lambda", "bandit_ucb_beta"])
def test_shipped_bandit_studies_load(name):
    study = load_study(REPO / "tune_configs" / f"{name}.yaml")
    assert study.trainable == "bandit" and study.metric.startswith("bandit/")
    grid = 1
    for dimension in study.search.values():
        grid *= len(dimension.values)
    assert study.n_grid_points() == grid * len(study.seeds)


def test_a_bandit_trial_resolves_to_a_bandit_run_config():
    study = study_from_dict(BANDIT)
    config = study.trial_settings(None, 1, {"lambda_d": 0.1, "env": "syn-m"})
    assert isinstance(config, BanditRunConfig)
    assert (config.policy, config.env, config.seed, config.rounds) == ("ren", "syn-m", 1, 40)
    assert config.policy_settings == {"lambda_d": 0.1}
    assert study.n_grid_points() == 2 * 2 * 2
    assert set(param_space(study)) == {"seed", "lambda_d", "env"}  # no variant dimension
    assert trial_bundles(study, 0.0) == [{"CPU": 1.0, "GPU": 0.0}]  # no reader bundle
    # No CPUs are kept for Ray Data reads: 4 CPUs run 4 one-CPU trials.
    assert max_concurrent_trials(study, 4.0) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "eval/ndcg_20_purchase"}, "not reported by bandit trials"),
        ({"variants": ["snqn"]}, "names its policy"),
        ({"fixed": {"policy": "ren", "lambda_dd": 1.0}}, "lambda_dd"),
        ({"fixed": {"policy": "nope"}}, "unknown policy 'nope'"),
        ({"report": {"panel": "colour"}}, "report.panel 'colour'"),
        ({"trainable": "bandits"}, "trainable 'bandits' is not one of"),
        ({"fixed": {"policy": "ren", "seed": 2}}, "set by the study itself"),
    ],
)
def test_invalid_bandit_studies_fail_naming_the_problem(change, message):
    with pytest.raises(StudyError) as error:
        study_from_dict({**BANDIT, **change}, source="tune_configs/b.yaml")
    assert "tune_configs/b.yaml" in str(error.value) and message in str(error.value)


def _trial(sweep: Path, name: str, params: dict, rewards: list[float]) -> None:
    trial = sweep / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(params))
    rows = [{"bandit/reward_window": r, "rounds": 20 * (i + 1), "diverged": 0.0}
            for i, r in enumerate(rewards)]  # fmt: skip
    (trial / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_the_report_has_a_panel_per_env_and_a_line_per_setting_over_rounds(tmp_path):
    study = study_from_dict(BANDIT)
    _trial(tmp_path, "a", {"seed": 0, "lambda_d": 0.1, "env": "syn-s"}, [0.2, 0.6])
    _trial(tmp_path, "b", {"seed": 1, "lambda_d": 0.1, "env": "syn-s"}, [0.4, 0.8])
    _trial(tmp_path, "c", {"seed": 0, "lambda_d": 0.01, "env": "syn-m"}, [0.5, 0.3])
    groups = summarize(read_sweep(tmp_path, study), study.report, study.mode)
    assert [(g.variant, g.setting, len(g.runs)) for g in groups] == [
        ("syn-m", "lambda_d=0.01", 1), ("syn-s", "lambda_d=0.1", 2)
    ]  # fmt: skip
    syn_s = groups[1]
    assert syn_s.steps.tolist() == [20, 40]
    np.testing.assert_allclose(syn_s.mean, [0.3, 0.7])
    assert groups[0].diverged and "40%" in groups[0].diverged[0].divergence  # 0.3 vs best 0.5
    assert groups[0].runs[0].q_limit == float("inf")  # no Q values in a bandit run


@pytest.mark.ray
def test_a_two_trial_bandit_sweep_reports_curves_and_logs_children(
    ray_session, tmp_path, monkeypatch
):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = study_from_dict({
        **BANDIT, "name": "ren2", "search": {"lambda_d": {"grid": [0.01, 0.3]}},
        "fixed": {**BANDIT["fixed"], "env": "syn-s"}, "seeds": [0],
        "report": {"panel": "env"}, "resources": {"cpu": 0.5}, "experiment": "test-bandit",
    })  # fmt: skip
    report = run_sweep(study, storage=tmp_path / "sweeps")

    assert [(g.variant, g.setting) for g in report.groups] == [
        ("syn-s", "lambda_d=0.01"), ("syn-s", "lambda_d=0.3")
    ]  # fmt: skip
    for group in report.groups:
        assert group.steps.tolist() == [20, 40]  # rounds of each report (log_interval 20)
        assert group.mean.min() >= 0.0 and group.mean.max() <= 1.0
    assert report.figure.stat().st_size > 5_000

    client = MlflowClient(tracking_uri=uri)
    children = sweep_child_runs(client, tmp_path / "sweeps" / "ren2", "test-bandit")
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["env"] == "syn-s"
        history = client.get_metric_history(child.info.run_id, "bandit/reward_window")
        assert [m.step for m in history] == [20, 40]
    by_lambda = {c.data.params["policy_settings.lambda_d"]: c for c in children}
    assert set(by_lambda) == {"0.01", "0.3"}
