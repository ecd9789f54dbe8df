"""Study files (pipelines/tune/study.py), trial concurrency, and the stability report's
judgement on synthetic curves (pipelines/tune/report.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from recrl.pipelines.tune.report import (
    RunCurve,
    format_table,
    judge,
    summarize,
    write_stability_figure,
)
from recrl.pipelines.tune.study import ReportConfig, StudyError, load_study, study_from_dict
from recrl.pipelines.tune.sweep import max_concurrent_trials, with_reader_cpus
from recrl.pipelines.tune.trainable import trial_dirname, trial_name

REPO = Path(__file__).resolve().parents[1]
BASE = {"name": "s", "data": "d", "variants": ["snqn"], "search": {"n_neg": {"grid": [1, 5]}}}


@pytest.mark.parametrize(
    "name", ["negatives", "negatives_gpu", "cql_alpha_temperature", "contrastive_temperature",
             "discount", "smoke_cpu"],
)  # fmt: skip
def test_shipped_studies_load_and_count_their_grid(name):
    study = load_study(REPO / "tune_configs" / f"{name}.yaml")
    assert study.metric.startswith("eval/")
    grid = 1
    for dimension in study.search.values():
        grid *= len(dimension.values) if dimension.kind == "grid" else 1
    assert study.n_grid_points() == grid * len(study.variants) * len(study.seeds)


def test_negatives_study_is_the_papers_stability_experiment():
    study = load_study(REPO / "tune_configs" / "negatives.yaml")
    assert study.search["n_neg"].values == (1, 5, 10, 20, 50)
    assert set(study.variants) == {"snqn", "sa2c", "sasrec_ccql"}
    assert study.n_grid_points() == 3 * 5 * 3


def test_the_gpu_window_study_runs_all_30_trials_at_once_on_16_cpus_and_one_gpu():
    study = load_study(REPO / "tune_configs" / "negatives_gpu.yaml")
    assert study.search["n_neg"].values == (1, 5, 10, 20, 50)
    assert set(study.variants) == {"snqn", "sa2c", "sasrec_ccql"}
    assert study.n_grid_points() == 3 * 5 * 2
    assert study.shared_data and study.fixed["total_steps"] == 6000
    assert max_concurrent_trials(study, 16.0) >= 30  # no reader CPUs: 16 / 0.5 = 32
    assert 30 * study.resources.gpu <= 1.0
    # Without the shared split each trial keeps a reader CPU free: a third as many fit.
    assert max_concurrent_trials(replace(study, shared_data=False), 16.0) == 10


def test_overrides_replace_top_level_keys_or_fixed_settings(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndata: d\nvariants: [sasrec]\nfixed: {total_steps: 100}\n")
    study = load_study(path, {"data": "other", "seeds": "0,1,2", "total_steps": 50, "lr": 1e-3})
    assert study.data == "other" and study.seeds == (0, 1, 2)
    assert study.fixed == {"total_steps": 50, "lr": 1e-3}
    config = study.trial_settings("sasrec", 2, {})
    assert (config.total_steps, config.lr, config.seed) == (50, 1e-3, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ["nope"]}, "unknown variant 'nope'"),
        ({"fixed": {"n_negs": 3}}, "unknown setting 'n_negs' (did you mean 'n_neg'?)"),
        ({"search": {"n_neg": {"logspace": [1, 2]}}}, "unknown kind 'logspace'"),
        ({"search": {"lr": {"loguniform": [0, 1]}}}, "loguniform needs low > 0"),
        ({"search": {"lr": {"uniform": [1, 0.1]}}}, "low < high"),
        ({"metric": "loss/total"}, "not reported by sasrec trials"),
        ({"fixed": {"seed": 3}}, "set by the study itself"),
        ({"fixed": {"n_neg": 3}}, "both fixed and searched"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"shared_data": "false"}, "shared_data must be true or false, got 'false'"),
        ({"search": {"cql_actions": {"grid": ["negatives"]}}, "variants": ["sasrec_ac"],
          "fixed": {"cql_alpha": 0.1}}, "needs n_neg > 0"),
    ],
)  # fmt: skip
def test_invalid_studies_fail_naming_the_file_and_the_problem(change, message):
    with pytest.raises(StudyError) as error:
        study_from_dict({**BASE, **change}, source="tune_configs/x.yaml")
    assert "tune_configs/x.yaml" in str(error.value)
    assert message in str(error.value)


def test_concurrency_keeps_a_reader_cpu_free_per_running_trial():
    study = study_from_dict({**BASE, "resources": {"cpu": 1, "data_cpu": 1}})
    assert max_concurrent_trials(study, 4.0) == 2  # 2 x (1 trial + 1 reader)
    # 16 CPUs: 8 trials, 8 CPUs free for their readers (with one CPU kept for all readers,
    # ten trials on an H200 node never reached their first evaluation)
    assert max_concurrent_trials(study, 16.0) == 8
    assert max_concurrent_trials(study_from_dict(BASE), 16.0) == 8  # data_cpu defaults to 1
    capped = study_from_dict({**BASE, "max_concurrent_trials": 3})
    assert max_concurrent_trials(capped, 16.0) == 3
    with pytest.raises(StudyError, match=r"Lower resources\.cpu"):
        max_concurrent_trials(study, 1.5)
    small = study_from_dict({**BASE, "resources": {"cpu": 0.5, "data_cpu": 1}})
    assert max_concurrent_trials(small, 2.0) == 1  # the 2-CPU CI machine


def test_a_shared_train_split_frees_the_reader_cpus():
    shared = study_from_dict({**BASE, "shared_data": True,
                              "resources": {"cpu": 0.5, "data_cpu": 0.5}})  # fmt: skip
    assert max_concurrent_trials(shared, 16.0) == 32  # data_cpu is not kept: no readers
    assert with_reader_cpus(shared) is shared  # nor checked
    assert max_concurrent_trials(replace(shared, shared_data=False), 16.0) == 16
    with pytest.raises(StudyError, match="shared_data is for studies whose trials read"):
        study_from_dict({"name": "b", "trainable": "bandit", "metric": "bandit/reward_window",
                         "shared_data": True})  # fmt: skip


def test_a_reader_gets_at_least_its_actor_and_one_read_task():
    old = study_from_dict({**BASE, "resources": {"cpu": 1, "data_cpu": 0.5}})  # still loads
    with pytest.raises(StudyError, match=r"data_cpu is 0\.5; a trial's reader needs at least 1"):
        with_reader_cpus(old)
    assert with_reader_cpus(old, resume=True).resources.data_cpu == 1.0  # an older sweep
    ok = study_from_dict({**BASE, "resources": {"cpu": 1, "data_cpu": 1.5}})
    assert with_reader_cpus(ok) is ok


# --- the report on synthetic curves --------------------------------------------------------


def curve(name, values, seed=0, setting=None, q=0.5, q_limit=20.0, non_finite=False):
    steps = np.arange(1, len(values) + 1) * 100
    return RunCurve(name, "snqn", setting or {"n_neg": 10}, seed, steps,
                    np.asarray(values, dtype=float), q, non_finite, q_limit)  # fmt: skip


def test_a_collapsing_run_is_flagged_and_a_stable_one_is_not():
    config = ReportConfig(divergence_drop=0.2, q_blowup=10.0)
    stable = curve("stable", [0.10, 0.20, 0.30, 0.29, 0.28])  # 7 % under its best
    collapsing = curve("collapsing", [0.10, 0.30, 0.25, 0.15, 0.10])  # 67 % under its best
    assert judge(stable, config) is None
    assert "67%" in judge(collapsing, config)
    assert judge(curve("q", [0.1, 0.2], q=25.0), config).startswith("|Q| reached 25")
    assert judge(curve("nan", [0.1, 0.2], non_finite=True), config) == "non-finite loss or Q"
    # For a metric to minimise, rising is falling.
    assert judge(curve("min", [0.5, 0.3, 0.45]), config, mode="min") is not None


def test_a_running_run_is_not_judged_by_its_latest_value():
    config = ReportConfig(divergence_drop=0.2)
    dipping = curve("running", [0.10, 0.30, 0.20])  # 33 % under its best at step 300
    dipping.final_step = 600  # ... of 600: still training (or interrupted)
    assert not dipping.finished and judge(dipping, config) is None
    dipping.final_step = 300
    assert dipping.finished and "33%" in judge(dipping, config)
    blown = curve("running-q", [0.1], q=25.0)
    blown.final_step = 600
    assert judge(blown, ReportConfig()).startswith("|Q| reached")  # judged at any time
    running = curve("r", [0.1, 0.2])
    running.final_step = 500
    table = format_table(summarize([running], config), "eval/ndcg_20_purchase")
    assert "unfinished: r: last evaluation at 200 of 500" in table


def test_groups_average_over_seeds_on_the_common_steps():
    runs = [
        curve("a-s0", [0.1, 0.3, 0.5], seed=0),
        curve("a-s1", [0.3, 0.5], seed=1),  # stopped early: the group uses steps 100, 200
        curve("b-s0", [0.2, 0.2, 0.2], setting={"n_neg": 50}),
    ]
    groups = summarize(runs, ReportConfig())
    assert [g.setting for g in groups] == ["n_neg=10", "n_neg=50"]
    a = groups[0]
    assert a.steps.tolist() == [100, 200]
    np.testing.assert_allclose(a.mean, [0.2, 0.4])
    np.testing.assert_allclose(a.std, [0.1, 0.1])
    assert a.best("max") == (pytest.approx(0.4), 200)
    final_mean, final_std = a.final()  # each run's own last value: 0.5 and 0.5
    assert (final_mean, final_std) == (pytest.approx(0.5), pytest.approx(0.0))
    table = format_table(groups, "eval/ndcg_20_purchase")
    assert "n_neg=50" in table and "0/2" in table


def test_a_group_without_evaluations_reports_nan_not_a_crash():
    groups = summarize([curve("empty", [])], ReportConfig())
    best, at = groups[0].best("max")
    assert math.isnan(best) and at == 0
    assert all(math.isnan(x) for x in groups[0].final())


def test_a_study_survives_its_round_trip_through_sweep_json():
    study = load_study(REPO / "tune_configs" / "cql_alpha_temperature.yaml")
    again = study_from_dict(study.to_dict(), source="sweep.json")
    assert replace(again, source=study.source) == study


def test_trials_are_named_by_their_settings():
    study = study_from_dict({**BASE, "search": {"n_neg": {"grid": [10]}, "lr": {"grid": [0.005]}}})
    config = {"variant": "snqn", "seed": 0, "n_neg": 10, "lr": 0.00123456}
    assert trial_name(config, study) == "snqn n_neg=10 lr=0.00123 seed=0"  # MLflow run name
    assert trial_dirname(config, study, "ab12") == "snqn-n_neg=10-lr=0.00123-seed=0-ab12"


def test_the_sweep_stability_figure_draws_every_logged_point_per_setting(tmp_path):
    def with_history(run: RunCurve, offset: float) -> RunCurve:
        run.history = {"loss/ce": [(s, 3.0 - s / 1000 + offset) for s in range(10, 310, 10)],
                       "eval/ndcg_20_purchase": [(100, 0.1), (200, 0.2), (300, 0.3)]}  # fmt: skip
        run.phase_step = 150
        return run

    runs = [
        with_history(curve("a-s0", [0.1, 0.2, 0.3], seed=0), 0.0),
        with_history(curve("a-s1", [0.1, 0.2, 0.3], seed=1), 0.1),
        with_history(curve("b-s0", [0.1, 0.3, 0.05], setting={"n_neg": 50}), 0.0),  # diverged
    ]
    groups = summarize(runs, ReportConfig())
    plot = write_stability_figure(groups, tmp_path / "stability.png", title="negatives")
    assert plot.path == tmp_path / "stability.png" and plot.path.stat().st_size > 10_000
    assert plot.panels == ("eval/ndcg_20_purchase", "loss/ce")
    # one mean curve per setting over every logged step: 30 loss points, 3 evaluations
    assert plot.points == {"eval/ndcg_20_purchase": 2 * 3, "loss/ce": 2 * 30}
    assert plot.markers == ("phase 2 at 150", "diverged: snqn n_neg=50 seed=0")
    assert write_stability_figure(summarize([curve("x", [0.1])], ReportConfig()),
                                  tmp_path / "none.png") is None  # fmt: skip
    assert not (tmp_path / "none.png").exists()
