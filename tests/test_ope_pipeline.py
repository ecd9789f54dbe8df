"""``recrl ope`` and `recrl.ope` on small logs in the Open Bandit layout (design.md §9)."""

from __future__ import annotations

import pandas as pd
import pytest
from recrl.envs.synthetic_log import write_open_bandit_like
from recrl.pipelines.cli import build_parser, main
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.ope.job import read_open_bandit, run_ope
from recrl.pipelines.prepare.errors import DataError


@pytest.fixture
def obd(tmp_path):
    write_open_bandit_like(tmp_path / "obd", n=600, seed=1)
    return tmp_path / "obd"


def test_help_teaches_each_estimator(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ope", "--help"])
    text = capsys.readouterr().out
    for name in ("ips", "snips", "dm", "dr", "switch-dr"):
        assert f"\n  {name} " in text
    assert "Dudík et al. 2011" in text and "Wang et al. 2017" in text
    assert "unlogged mass" in text and "(default: 1000)" in text


def test_run_estimates_with_intervals_and_the_own_log_check(obd):
    config = OPEConfig(data_path=str(obd), n_bootstrap=100, tracking=False)
    results = {r.name: r for r in run_ope(config)}
    own = results["random:random"]
    assert own.truth == pytest.approx(pd.read_csv(obd / "random" / "all.csv")["click"].mean())
    assert own.estimates["ips"].value == pytest.approx(own.truth, abs=1e-12)
    assert own.estimates["snips"].value == pytest.approx(own.truth, abs=1e-12)
    for result in results.values():
        for interval in result.estimates.values():
            assert interval.low <= interval.value <= interval.high
    bts = results["bts:random"]
    assert abs(bts.estimates["dr"].value - bts.truth) < 0.05  # 600 rows, click rates ~0.1


def test_cli_prints_the_table(obd, capsys):
    code = main(["ope", "--data", str(obd), "--bootstrap", "50", "--estimators", "ips", "dr",
                 "--set", "folds=2", "--no-mlflow"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "| target:log | truth | ips | dr |" in out and "| random:bts |" in out


def test_bad_propensity_names_file_line_and_column(obd, capsys):
    path = obd / "bts" / "all.csv"
    frame = pd.read_csv(path, index_col=0)
    frame.loc[4, "propensity_score"] = 0.0
    frame.loc[7, "propensity_score"] = 1.2
    frame.to_csv(path)
    with pytest.raises(DataError, match=r"bts/all.csv:6, column 'propensity_score'.*not > 0"):
        read_open_bandit(obd)
    assert main(["ope", "--data", str(obd), "--no-mlflow"]) == 2
    assert "column 'propensity_score'" in capsys.readouterr().err
    frame.drop(columns="propensity_score").to_csv(path)
    with pytest.raises(DataError, match="column 'propensity_score': column missing"):
        read_open_bandit(obd)


def test_unknown_estimator_is_a_setting_error(obd):
    with pytest.raises(ValueError, match="unknown estimator 'ipw'"):
        OPEConfig(estimators=("ipw",))


def test_fewer_rows_than_folds_is_one_line(tmp_path, capsys):
    write_open_bandit_like(tmp_path / "tiny", n=4, seed=1)
    for policy in ("random", "bts"):  # a row at each of the 3 positions, 4 rows in all
        path = tmp_path / "tiny" / policy / "all.csv"
        frame = pd.read_csv(path, index_col=0)
        frame["position"] = [1, 2, 3, 1]
        frame.to_csv(path)
    assert main(["ope", "--data", str(tmp_path / "tiny"), "--no-mlflow"]) == 2
    assert "4 rows to estimate on, fewer than the 5 folds that dr and switch-dr" in (
        capsys.readouterr().err
    )
    # without the cross-fitted estimators the same log is estimated
    assert main(["ope", "--data", str(tmp_path / "tiny"), "--bootstrap", "10",
                 "--estimators", "ips", "snips", "dm", "--no-mlflow"]) == 0  # fmt: skip


def test_a_position_without_rows_is_one_line(obd, capsys):
    path = obd / "bts" / "all.csv"
    frame = pd.read_csv(path, index_col=0)
    frame = frame[frame["position"] != frame["position"].max()]
    frame.to_csv(path)
    assert main(["ope", "--data", str(obd), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert "bts/all.csv" in err and "column 'position'" in err and "no row at position 3" in err
