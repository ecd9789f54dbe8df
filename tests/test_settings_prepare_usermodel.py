"""`recrl prepare`, `generate` and `usermodel build|fit` take their flags, help and defaults
from the config fields, accept ``--set`` and ``--config``, and name the key of a bad value
in one line. No Ray: the configs are built from parsed arguments, and the one end-to-end
fit stops at the job it would run."""

from __future__ import annotations

import dataclasses
import json

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.models.user_model.config import UserModelConfig
from recrl.pipelines.cli import build_parser
from recrl.pipelines.commands.generate import generator_config
from recrl.pipelines.commands.prepare import prepare_config
from recrl.pipelines.commands.usermodel import display_set_config, user_model_job
from recrl.pipelines.display_sets.config import (
    DISPLAY_SOURCE_SUMMARIES,
    DISPLAY_SOURCES,
    DisplaySetConfig,
)
from recrl.pipelines.prepare.adapters import ADAPTERS
from recrl.pipelines.prepare.config import SOURCES, PrepareConfig
from recrl.pipelines.settings import field_default, field_docs
from recrl.pipelines.usermodel.job import UserModelJob

from tests.hostile import assert_user_error, run_recrl

PREPARE = ["prepare", "--source", "generic", "--input", "in", "--output", "out"]
FIT = ["usermodel", "fit", "--data", "sets", "--out", "um"]


@pytest.fixture(autouse=True)
def wide_help(monkeypatch):
    """Help on long lines, so a phrase is not split by argparse's wrapping."""
    monkeypatch.setenv("COLUMNS", "400")


def _help(capsys, *command: str) -> str:
    outcome = run_recrl(capsys, *command, "--help")
    assert outcome.code == 0, outcome.err
    return " ".join(outcome.out.split())


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _first_sentence(doc: str) -> str:
    return doc.split(". ")[0].replace("``", "`")


def test_prepare_help_shows_every_default_and_doc_of_prepare_config(capsys):
    text = _help(capsys, "prepare")
    for field in dataclasses.fields(PrepareConfig):
        default = field_default(PrepareConfig, field.name)
        if default not in (dataclasses.MISSING, None) and not isinstance(default, bool):
            assert f"(default: {_shown(default)})" in text, field.name
        assert _first_sentence(field_docs(PrepareConfig)[field.name]) in text, field.name


def test_prepare_help_lists_every_source_of_the_registry(capsys):
    assert set(ADAPTERS) == set(SOURCES)
    text = _help(capsys, "prepare")
    assert "{" + ",".join(SOURCES) + "}" in text  # the choices
    for name, adapter in ADAPTERS.items():
        assert f"{name} {adapter.description}" in text


def test_usermodel_help_lists_every_display_source_and_fit_setting(capsys):
    assert set(DISPLAY_SOURCE_SUMMARIES) == set(DISPLAY_SOURCES)
    text = _help(capsys, "usermodel")
    for name, summary in DISPLAY_SOURCE_SUMMARIES.items():
        assert f"{name} {summary}" in text
    assert "{" + ",".join(DISPLAY_SOURCES) + "}" in _help(capsys, "usermodel", "build")
    fit = _help(capsys, "usermodel", "fit")
    for field in dataclasses.fields(UserModelConfig):  # a flag or a listed setting each
        assert f"(default: {field.default})" in fit, field.name
        assert _first_sentence(field_docs(UserModelConfig)[field.name]) in fit, field.name


def test_generate_help_shows_the_generator_defaults(capsys):
    text = _help(capsys, "generate")
    for field in dataclasses.fields(SessionGeneratorConfig):
        assert f"(default: {field.default})" in text, field.name


def test_prepare_settings_reach_the_config_file_then_set_then_flags(tmp_path):
    parser = build_parser()
    assert prepare_config(parser.parse_args(PREPARE)) == PrepareConfig("generic", "in", "out")
    assert prepare_config(parser.parse_args([*PREPARE, "--set", "state_len=5"])).state_len == 5
    file = tmp_path / "prepare.yaml"
    file.write_text("state_len: 7\nr_buy: 2\nsplit_fractions: [0.7, 0.2, 0.1]\n")
    config = prepare_config(parser.parse_args([*PREPARE, "--config", str(file)]))
    assert (config.state_len, config.r_buy, config.split_fractions) == (7, 2.0, (0.7, 0.2, 0.1))
    config = prepare_config(parser.parse_args(
        [*PREPARE, "--config", str(file), "--set", "state_len=6", "--state-len", "4"]
    ))  # fmt: skip
    assert config.state_len == 4 and config.r_buy == 2.0
    flags = ["--input", "x", "--time-range", "2000", "2030", "--keep-duplicates", "--overwrite"]
    config = prepare_config(parser.parse_args([*PREPARE, *flags]))
    assert config.input_path == "x" and config.time_range == (2000, 2030)
    assert config.keep_duplicates and config.overwrite


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--set", "state_len=abc"], ["state_len", "expected int", "abc"]),
        (["--set", "state_lenn=5"], ["state_lenn", "state_len", "known:"]),
        (["--set", "split=random"], ["split", "random", "session"]),
        (["--split-fractions", "0.5", "0.5"], ["split_fractions"]),
        (["--set", "state_len=0"], ["state_len", ">= 1"]),
    ],
)
def test_a_bad_prepare_setting_is_one_line_naming_the_key(capsys, tmp_path, extra, names):
    outcome = run_recrl(capsys, *PREPARE[:-1], tmp_path / "out", *extra)
    assert_user_error(outcome, *names)
    assert not (tmp_path / "out").exists()


def test_a_bad_value_in_a_config_file_names_the_key(capsys, tmp_path):
    file = tmp_path / "prepare.yaml"
    file.write_text("r_buy: lots\n")
    outcome = run_recrl(capsys, *PREPARE[:-1], tmp_path / "out", "--config", file)
    assert_user_error(outcome, "r_buy", "expected float", "lots")


def test_generate_settings_reach_the_generator_config(capsys, tmp_path):
    args = build_parser().parse_args(
        ["generate", "--out", "g", "--sessions", "7", "--set", "latent_dim=4"]
    )
    assert generator_config(args) == SessionGeneratorConfig(n_sessions=7, latent_dim=4)
    outcome = run_recrl(capsys, "generate", "--out", tmp_path / "g", "--set", "zipf_exponent=x")
    assert_user_error(outcome, "zipf_exponent", "expected float")
    assert not (tmp_path / "g").exists()


def test_usermodel_build_settings_reach_the_display_set_config():
    args = build_parser().parse_args([
        "usermodel", "build", "--source", "movielens", "--input", "i", "--output", "o",
        "--set-size", "5", "--set", "per_user=3",
    ])  # fmt: skip
    assert display_set_config(args) == DisplaySetConfig(
        "movielens", "i", "o", set_size=5, per_user=3
    )


def test_usermodel_fit_settings_reach_the_model_and_the_job():
    parser = build_parser()
    assert user_model_job(parser.parse_args(FIT)) == UserModelJob("sets", "um")
    job = user_model_job(parser.parse_args([
        *FIT, "--set", "lr=0.01", "--set", "model.batch_size=64", "--embedding-dim", "8",
        "--fit-on", "test", "--no-baselines", "--no-mlflow",
    ]))  # fmt: skip
    assert job.model == UserModelConfig(lr=0.01, batch_size=64, item_embedding_dim=8)
    assert (job.train_split, job.baselines, job.tracking) == ("test", False, False)


def test_usermodel_fit_set_lr_reaches_the_job_it_runs(capsys, tmp_path, monkeypatch):
    import recrl.pipelines.usermodel.job as job_module

    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "meta.json").write_text(json.dumps({}))
    ran = []
    scores = {"prec1": 0.5, "prec2": 0.7, "loss": 1.0}

    def fake_run(job):
        ran.append(job)
        return job_module.UserModelResult(model_path="m.pt", best_epoch=1, test=scores)

    monkeypatch.setattr(job_module, "run_user_model_job", fake_run)
    outcome = run_recrl(capsys, "usermodel", "fit", "--data", sets, "--out", tmp_path / "um",
                        "--set", "lr=0.01", "--no-mlflow")  # fmt: skip
    assert outcome.code == 0, outcome.err
    (job,) = ran
    assert job.model.lr == 0.01 and job.tracking is False
    assert job.model == dataclasses.replace(UserModelConfig(), lr=0.01)


def test_usermodel_fit_wrong_type_is_one_line_naming_the_key(capsys, tmp_path):
    outcome = run_recrl(capsys, *FIT, "--set", "lr=fast")
    assert_user_error(outcome, "lr", "expected float", "fast")
    outcome = run_recrl(capsys, *FIT, "--set", "fit_on=test")
    assert_user_error(outcome, "fit_on", "train_split")  # the key is the field's name
