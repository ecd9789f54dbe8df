"""A SASRec model evaluated on a sequential log with propensities (design.md §9.6): the
log's reader and its refusals, the model's scores of each row's candidates, the estimates
on a 5-row log against hand values, and ``recrl ope --log``."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from recrl.models.ope.candidates import Ragged, catalogue_sets
from recrl.models.ope.policies import TargetPolicyConfig
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.network import SASRecQNetwork
from recrl.pipelines.cli import build_parser, main
from recrl.pipelines.errors import UserError
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.ope.sasrec_policy import score_candidates, with_id_type_of
from recrl.pipelines.ope.session_job import run_session_ope
from recrl.pipelines.ope.session_log import read_session_log
from recrl.pipelines.prepare.errors import DataError
from recrl.pipelines.prepare.output import write_items
from recrl.pipelines.sasrec.serving import Recommender, RecommenderSpec, save_recommender

# Five impressions. The model knows items 10, 20, 30 (not 40) and scores them 0, ln 3, ln 2
# whatever the history, so its softmax over {10, 20} is (1/4, 3/4) and over {10, 20, 30}
# (1/6, 1/2, 1/3); row 4 has no candidate it knows and is left out.
LOG_CSV = """\
session_id,history,candidates,item,propensity,reward,candidate_expected_reward
1,10,10 20,10,0.5,1,0.2 0.6
2,,10 20 30,20,0.25,1,0.1 0.5 0.3
2,30 40,20 40,40,0.5,1,0.4 0.9
3,20,10 20 30,30,0.5,0,0.2 0.3 0.7
3,10,40,40,1.0,1,0.5
"""
BIASES = [0.0, np.log(3.0), np.log(2.0)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The MLflow model of a network whose scores are its head's biases, over a catalogue
    whose raw ids are strings, as `recrl prepare` writes a generic log's ids."""
    root = tmp_path_factory.mktemp("ope_model")
    dataset = root / "prepared"
    dataset.mkdir()
    (dataset / "meta.json").write_text(json.dumps({"n_items": 3, "pad_id": 3, "L": 3}))
    write_items(str(dataset), np.array(["10", "20", "30"]), {0: np.ones(3, dtype=np.int64)})
    network = SASRecQNetwork(3, SASRecConfig(hidden_size=4, max_len=3))
    with torch.no_grad():
        network.encoder.supervised_weight.zero_()
        network.encoder.supervised_bias.copy_(torch.tensor(BIASES))
    return save_recommender(root / "run" / "model", network, dataset=dataset).parent


@pytest.fixture
def log_csv(tmp_path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(LOG_CSV)
    return path


def config(log: Path, model: Path, **policy) -> OPEConfig:
    return OPEConfig(
        log_path=str(log), policy_model=str(model), estimators=("ips", "snips"),
        n_bootstrap=50, tracking=False, target_policy=TargetPolicyConfig(**policy),
    )  # fmt: skip


def test_hand_values_on_a_five_row_log(log_csv, model_dir):
    [soft] = run_session_ope(config(log_csv, model_dir))
    assert soft.name == "softmax_t1:log"
    assert soft.excluded == {"no_scorable_candidate": 1} and soft.rows == 4
    # π at the shown items: 1/4, 1/2, 0 (item 40 unscored), 1/3 -> w = 0.5, 2, 0, 2/3
    assert soft.estimates["ips"].value == pytest.approx((0.5 + 2 + 0) / 4)
    assert soft.estimates["snips"].value == pytest.approx(2.5 / (0.5 + 2 + 2 / 3))
    # truth Σ π q per row: 0.5, 1/60 + 1/4 + 1/10, 0.4 (all mass on 20), 1/30 + 3/20 + 7/30
    rows = [0.5, 1 / 60 + 0.25 + 0.1, 0.4, 1 / 30 + 0.15 + 7 / 30]
    assert soft.truth == pytest.approx(np.mean(rows))
    assert soft.log_value == pytest.approx(0.75)
    w = np.array([0.5, 2, 0, 2 / 3])
    assert soft.effective_sample_size == pytest.approx(w.sum() ** 2 / (w**2).sum())
    [greedy] = run_session_ope(config(log_csv, model_dir, policy="top_k"))
    # top-1 picks 20 in every row; only row 1 showed it: w = 1/0.25 = 4, reward 1
    assert greedy.estimates["ips"].value == pytest.approx(1.0)
    assert greedy.truth == pytest.approx(np.mean([0.6, 0.5, 0.4, 0.3]))
    [two] = run_session_ope(config(log_csv, model_dir, policy="top_k", top_k=2))
    # {20, 10}, {20, 30}, {20} (the only scored one), {20, 30}: w = 1, 2, 0, 1 (reward 0)
    assert two.estimates["ips"].value == pytest.approx(3 / 4)
    assert two.truth == pytest.approx(np.mean([0.4, 0.4, 0.4, 0.5]))


def test_csv_and_parquet_read_alike(log_csv, tmp_path):
    from_csv = read_session_log(log_csv)
    frame = pd.DataFrame({
        "history": [[10], [], [30, 40], [20], [10]],
        "candidates": [[10, 20], [10, 20, 30], [20, 40], [10, 20, 30], [40]],
        "item": [10, 20, 40, 30, 40],
        "propensity": [0.5, 0.25, 0.5, 0.5, 1.0],
        "reward": [1.0, 1, 1, 0, 1],
        "candidate_expected_reward": [[0.2, 0.6], [0.1, 0.5, 0.3], [0.4, 0.9], [0.2, 0.3, 0.7],
                                      [0.5]],
    })  # fmt: skip
    frame.to_parquet(tmp_path / "log.parquet")
    from_parquet = read_session_log(tmp_path / "log.parquet")
    for log in (from_csv, from_parquet):
        np.testing.assert_array_equal(log.history.values, [10, 30, 40, 20, 10])
        np.testing.assert_array_equal(log.history.offsets, [0, 1, 1, 3, 4, 5])
        np.testing.assert_array_equal(log.sets.vocabulary, [10, 20, 30, 40])
        np.testing.assert_array_equal(log.sets.shown, [0, 1, 1, 2, 0])
        np.testing.assert_allclose(log.expected_reward[3], [0.2, 0.3, 0.7])
        assert log.sets.items.shape == (5, 3) and log.history.values.dtype == np.int64


@pytest.mark.parametrize(
    ("row", "column", "value", "error"),
    [
        (2, "propensity", "0", r"log.csv:4, column 'propensity': value 0.0 is not > 0"),
        (0, "propensity", "1.5", r"log.csv:2, column 'propensity': value 1.5 is above 1"),
        (3, "propensity", "", r"log.csv:5, column 'propensity': value nan is missing"),
        (1, "propensity", "high", r"log.csv:3, column 'propensity': value 'high' is not a number"),
        (1, "item", "99", r"log.csv:3, column 'item': value 99 is not among the row's candid"),
        (2, "candidates", "", r"log.csv:4, column 'candidates': is empty"),
        (0, "candidates", "10 20 10", r"log.csv:2, column 'candidates': lists an item twice"),
        (4, "reward", "x", r"log.csv:6, column 'reward': value 'x' is not a number"),
        (1, "candidate_expected_reward", "0.1", r"column 'candidate_expected_reward': has 1 "),
    ],
)
def test_a_bad_value_names_file_line_and_column(tmp_path, row, column, value, error):
    frame = pd.read_csv(pd.io.common.StringIO(LOG_CSV), dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataError, match=error):
        read_session_log(tmp_path / "log.csv")


def test_missing_columns_and_parquet_rows_are_named(log_csv, tmp_path):
    frame = pd.read_csv(log_csv, dtype=str, keep_default_na=False)
    frame.drop(columns="propensity").to_csv(tmp_path / "no_pscore.csv", index=False)
    with pytest.raises(DataError, match=r"column 'propensity': column missing \(the logging"):
        read_session_log(tmp_path / "no_pscore.csv")
    table = pd.DataFrame({"history": [[1], None], "item": [1, 2], "propensity": [0.5, 0.5],
                          "reward": [1.0, 0.0]})  # fmt: skip
    table.to_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError, match=r"log.parquet, column 'history': row 2: is missing"):
        read_session_log(tmp_path / "log.parquet")
    table["history"] = [[1], []]
    table["propensity"] = [0.5, 0.0]
    table.to_parquet(tmp_path / "log.parquet")
    with pytest.raises(DataError, match=r"column 'propensity': row 2: value 0.0 is not > 0"):
        read_session_log(tmp_path / "log.parquet")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(DataError, match=r"expected a \.parquet or \.csv log"):
        read_session_log(tmp_path / "log.json")


def test_scores_are_the_served_models_and_unknown_history_items_are_left_out():
    torch.manual_seed(0)
    config_ = SASRecConfig(hidden_size=8, max_len=3)
    network = SASRecQNetwork(5, config_).eval()
    raw = np.array([3, 5, 7, 9, 11])
    spec = RecommenderSpec(n_items=5, pad_id=5, encoder=asdict(config_), head="supervised")
    recommender = Recommender(network, spec, raw)
    histories = [[3], [5, 7, 9, 11, 3], [11, 9], [7, 5, 3, 9]]
    scored = score_candidates(recommender, Ragged.from_lists(histories),
                              catalogue_sets(np.array([3, 5, 7, 9]), raw))  # fmt: skip
    state, state_len = recommender.states(histories)  # the served model's own states
    with torch.inference_mode():
        expected = network.score_all(state, state_len).numpy()
    np.testing.assert_allclose(scored.scores, expected, rtol=1e-5, atol=1e-6)
    assert scored.scorable.all() and scored.unknown_history_items == 0
    # an item the model does not know (4) is skipped: the state of [11, 4, 9] is that of [11, 9]
    with_unknown = score_candidates(recommender, Ragged.from_lists([[11, 4, 9], []]),
                                    catalogue_sets(np.array([3, 3]), raw))  # fmt: skip
    np.testing.assert_allclose(with_unknown.scores[0], expected[2], rtol=1e-5, atol=1e-6)
    assert with_unknown.unknown_history_items == 1 and with_unknown.rows_with_unknown_history == 1
    with torch.inference_mode():  # an empty history is scored from the empty-state vector
        empty = network.score_all(torch.full((1, 3), 5), torch.zeros(1, dtype=torch.long))
    np.testing.assert_allclose(with_unknown.scores[1], empty[0].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="the log's item ids are strings, the model's integers"):
        with_id_type_of(recommender, np.array(["a"], dtype=object))


def test_cli_estimates_a_model_on_a_log(log_csv, model_dir, capsys):
    code = main(["ope", "--log", str(log_csv), "--policy-model", str(model_dir),
                 "--estimators", "ips", "snips", "--bootstrap", "50", "--policy", "top_k",
                 "--no-mlflow"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "| top_1:log | 45.000 | 100.000 [" in out
    assert (
        "4 rows (left out: no_scorable_candidate 1)" in out
        and "(mean logged reward): 75.000" in out
    )
    assert main(["ope", "--log", str(log_csv), "--policy-model", str(model_dir),
                 "--no-mlflow"]) == 2  # fmt: skip
    assert "4 rows to estimate on, fewer than the 5 folds" in capsys.readouterr().err
    assert main(["ope", "--log", str(log_csv), "--policy-model", str(log_csv.parent),
                 "--no-mlflow"]) == 2  # fmt: skip
    assert "not an MLflow model folder" in capsys.readouterr().err
    bad = log_csv.read_text().replace("3,10,40,40,1.0,1,0.5", "3,10,40,40,0,1,0.5")
    log_csv.write_text(bad)
    assert main(["ope", "--log", str(log_csv), "--policy-model", str(model_dir),
                 "--no-mlflow"]) == 2  # fmt: skip
    assert "log.csv:6, column 'propensity'" in capsys.readouterr().err
    assert main(["ope", "--policy-model", str(model_dir), "--no-mlflow"]) == 2
    assert "log_path and policy_model go together" in capsys.readouterr().err


def test_help_teaches_the_sequential_log(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ope", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--policy-model", "--top-k", "(default: 1)", "candidate_expected_reward",
                  "{softmax,top_k}", "Softmax temperature T"):  # fmt: skip
        assert words in text


def test_estimates_are_logged_to_mlflow(log_csv, model_dir, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    import recrl

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    recrl.ope(replace(config(log_csv, model_dir), tracking=True))
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("recrl-ope").experiment_id])
    assert run.info.run_name == "ope-log"
    assert run.data.metrics["ope/softmax_t1_from_log/ips"] == pytest.approx(0.625)
    assert run.data.metrics["ope/softmax_t1_from_log/excluded_no_scorable_candidate"] == 1
