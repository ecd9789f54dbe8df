"""Every subcommand's ordinary mistakes end in one ``recrl: error:`` line that names the
setting, file or folder, exit 2 (1 for a job that ran and failed), before any expensive
work (Ray starts once, in the fixture that prepares the dataset), and leave the outputs
already on disk byte-for-byte intact. The run-folder refusal and
``--resume``'s checks of item 8 too; resumed training itself is in `test_train_resume.py`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from recrl.pipelines.sasrec.config import TrainConfig

from tests.hostile import assert_user_error, run_recrl, tree_digest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, ray_session) -> dict[str, Path]:
    """Folders the mistakes point at: a small prepared dataset (Ray starts here, once), a
    run folder holding a checkpoint, a display-set look-alike, a regular file."""
    from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
    from recrl.pipelines.prepare.config import PrepareConfig
    from recrl.pipelines.prepare.pipeline import prepare

    root = tmp_path_factory.mktemp("hostile")
    raw = tmp_path_factory.mktemp("raw")
    generate_sessions(SessionGeneratorConfig(seed=1, n_sessions=200, n_items=50)).to_parquet(
        raw / "sessions.parquet", index=False
    )
    data = root / "prepared"
    prepare(PrepareConfig(source="generic", input_path=str(raw), output_path=str(data)))
    run = root / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "progress.json").write_text(json.dumps({"updates": 20}))
    config = TrainConfig.for_variant("sasrec", str(data), total_steps=40)
    (run / "config.json").write_text(
        json.dumps({"config": dataclasses.asdict(config), "run_id": None})
    )
    sets = root / "sets"
    sets.mkdir()
    (sets / "meta.json").write_text("{}")
    model_out = root / "um"
    model_out.mkdir()
    (model_out / "user_model.pt").write_bytes(b"an earlier fit")
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    a_file = root / "a_file"
    a_file.write_text("x")
    empty = root / "empty"
    empty.mkdir()
    return {"root": root, "data": data, "run": run, "sets": sets, "model_out": model_out,
            "garbage": garbage, "file": a_file, "empty": empty}  # fmt: skip


def _intact(world, outcome_fn):
    """Run ``outcome_fn`` and check that nothing under the fixture's root changed."""
    before = tree_digest(world["root"])
    outcome = outcome_fn()
    assert tree_digest(world["root"]) == before
    return outcome


def _train(capsys, world, *argv):
    return _intact(world, lambda: run_recrl(capsys, "train", "--data", world["data"], *argv))


# --- train ---------------------------------------------------------------------------


def test_train_unknown_variant_lists_the_variants(capsys, world):
    line = assert_user_error(_train(capsys, world, "--variant", "sasreq"), "sasreq", "sasrec_ccql")
    assert "snqn" in line


def test_train_unknown_setting_suggests_the_closest(capsys, world):
    assert_user_error(_train(capsys, world, "--set", "lrr=0.1"), "'lrr'", "did you mean 'lr'")


def test_train_wrong_type_names_setting_type_and_value(capsys, world):
    assert_user_error(_train(capsys, world, "--set", "lr=abc"), "lr", "float", "'abc'")


def test_train_wrong_type_of_an_encoder_setting(capsys, world):
    assert_user_error(_train(capsys, world, "--set", "hidden_size=2.5"), "hidden_size", "int")


def test_train_zero_steps_is_named(capsys, world):
    assert_user_error(_train(capsys, world, "--steps", "0"), "total_steps", "> 0")


def test_train_set_without_equals(capsys, world):
    assert_user_error(_train(capsys, world, "--set", "lr"), "--set", "KEY=VALUE")


def test_train_missing_config_file(capsys, world):
    missing = world["root"] / "nope.yaml"
    assert_user_error(_train(capsys, world, "--config", missing), "--config", str(missing))


def test_train_config_file_not_a_mapping(capsys, world, tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    assert_user_error(_train(capsys, world, "--config", bad), str(bad), "mapping")


def test_train_bad_learner_resource(capsys, world):
    assert_user_error(_train(capsys, world, "--learner-resource", "slot"), "--learner-resource")


def test_train_on_a_folder_that_is_not_a_prepared_dataset(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "train", "--data", world["empty"]))
    assert_user_error(outcome, str(world["empty"]), "not a prepared dataset", "meta.json")


def test_train_on_a_missing_dataset(capsys, world):
    missing = world["root"] / "missing"
    outcome = run_recrl(capsys, "train", "--data", missing)
    assert_user_error(outcome, "--data", str(missing), "no such")


def test_train_without_data(capsys):
    assert_user_error(run_recrl(capsys, "train"), "--data")


def test_train_run_dir_under_a_regular_file(capsys, world):
    run_dir = world["file"] / "run"
    line = assert_user_error(_train(capsys, world, "--run-dir", run_dir), "--run-dir")
    assert f"{world['file']} is a file" in line


def test_train_refuses_a_run_dir_holding_a_checkpoint(capsys, world):
    line = assert_user_error(
        _train(capsys, world, "--variant", "sasrec", "--run-dir", world["run"]),
        str(world["run"]), "--resume", "--overwrite",
    )  # fmt: skip
    assert "update 20" in line


def test_resume_refuses_changed_settings(capsys, world):
    outcome = _intact(
        world, lambda: run_recrl(capsys, "train", "--resume", world["run"], "--set", "lr=0.1")
    )
    assert_user_error(outcome, "lr=0.1", "0.005", "total_steps")


def test_resume_refuses_another_dataset(capsys, world):
    outcome = _intact(
        world, lambda: run_recrl(capsys, "train", "--resume", world["run"], "--data", "x")
    )
    assert_user_error(outcome, "data")


def test_resume_and_overwrite_contradict(capsys, world):
    outcome = run_recrl(capsys, "train", "--resume", world["run"], "--overwrite")
    assert_user_error(outcome, "--resume", "--overwrite")


def test_resume_of_a_folder_that_is_not_a_run(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "train", "--resume", world["empty"]))
    assert_user_error(outcome, "--resume", str(world["empty"]), "config.json")


def test_resume_with_a_wrong_step_count(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "train", "--resume", world["run"],
                                              "--steps", "0"))  # fmt: skip
    assert_user_error(outcome, "total_steps")


# --- stats, generate, demo, prepare ---------------------------------------------------


def test_stats_on_a_folder_that_is_not_a_prepared_dataset(capsys, world):
    outcome = run_recrl(capsys, "stats", world["empty"])
    assert_user_error(outcome, str(world["empty"]), "meta.json", "train")


def test_stats_on_a_missing_folder(capsys, world):
    assert_user_error(run_recrl(capsys, "stats", world["root"] / "gone"), "gone", "no such")


def test_generate_bad_count(capsys, tmp_path):
    assert_user_error(run_recrl(capsys, "generate", "--out", tmp_path, "--sessions", "0"),
                      "n_sessions")  # fmt: skip


def test_generate_out_under_a_file(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "generate", "--out", world["file"] / "g"))
    assert_user_error(outcome, "--out", str(world["file"]))


def test_demo_negative_steps(capsys, tmp_path):
    assert_user_error(run_recrl(capsys, "demo", "--workdir", tmp_path, "--steps", "-1"),
                      "--steps")  # fmt: skip


def test_demo_settings_are_the_generators(capsys, tmp_path):
    """``--set``/``--config`` reach the demo's dataset settings, checked like ``generate``'s."""
    line = assert_user_error(
        run_recrl(capsys, "demo", "--workdir", tmp_path, "--set", "n_sessions=0"), "n_sessions"
    )
    assert "unrecognized" not in line
    assert_user_error(run_recrl(capsys, "demo", "--workdir", tmp_path, "--set", "colour=red"),
                      "colour", "n_sessions")  # fmt: skip


def test_demo_workdir_under_a_file(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "demo", "--workdir", world["file"]))
    assert_user_error(outcome, "--workdir", str(world["file"]))


def test_prepare_missing_input(capsys, world):
    missing = world["root"] / "no_input"
    outcome = _intact(world, lambda: run_recrl(
        capsys, "prepare", "--source", "generic", "--input", missing,
        "--output", world["root"] / "out"))  # fmt: skip
    assert_user_error(outcome, str(missing))


# --- tune, report -----------------------------------------------------------------------


def test_tune_missing_study(capsys, world):
    missing = world["root"] / "study.yaml"
    assert_user_error(run_recrl(capsys, "tune", missing), str(missing))


def test_tune_unknown_setting_in_a_study(capsys, world):
    outcome = _intact(world, lambda: run_recrl(
        capsys, "tune", REPO / "tune_configs" / "smoke_cpu.yaml", "--set", f"data={world['data']}",
        "--set", "lrr=0.1"))  # fmt: skip
    assert_user_error(outcome, "lrr", "smoke_cpu.yaml")


def test_tune_study_on_a_folder_that_is_not_a_dataset(capsys, world):
    outcome = run_recrl(capsys, "tune", REPO / "tune_configs" / "smoke_cpu.yaml",
                        "--set", f"data={world['empty']}")  # fmt: skip
    assert_user_error(outcome, str(world["empty"]), "not a prepared dataset")


def test_report_of_a_missing_sweep(capsys, world):
    assert_user_error(run_recrl(capsys, "report", world["empty"]), str(world["empty"]))


# --- bandit -----------------------------------------------------------------------------


def test_bandit_unknown_policy(capsys):
    assert_user_error(run_recrl(capsys, "bandit", "--policy", "renn", "--no-mlflow"), "renn")


def test_bandit_wrong_type(capsys):
    outcome = run_recrl(capsys, "bandit", "--set", "lambda_d=abc", "--no-mlflow")
    assert_user_error(outcome, "lambda_d", "float", "'abc'")


def test_bandit_unknown_setting(capsys):
    outcome = run_recrl(capsys, "bandit", "--set", "lambda_dd=0.1", "--no-mlflow")
    assert_user_error(outcome, "lambda_dd", "did you mean 'lambda_d'")


def test_bandit_zero_rounds(capsys):
    assert_user_error(run_recrl(capsys, "bandit", "--rounds", "0", "--no-mlflow"), "rounds")


def test_bandit_missing_data(capsys, world):
    outcome = run_recrl(capsys, "bandit", "--env", "ml-100k", "--data", world["root"] / "ml",
                        "--no-mlflow")  # fmt: skip
    assert_user_error(outcome, "--data", "ml")


def test_bandit_run_dir_under_a_file(capsys, world):
    outcome = _intact(world, lambda: run_recrl(capsys, "bandit", "--no-mlflow", "--run-dir",
                                              world["file"] / "b"))  # fmt: skip
    assert_user_error(outcome, "--run-dir", str(world["file"]))


# --- usermodel, slate -------------------------------------------------------------------


def test_usermodel_build_missing_input(capsys, world):
    outcome = run_recrl(capsys, "usermodel", "build", "--source", "movielens", "--input",
                        world["root"] / "ml", "--output", world["root"] / "sets2")  # fmt: skip
    assert_user_error(outcome, "ml")


def test_usermodel_fit_on_a_folder_that_is_not_display_sets(capsys, world, tmp_path):
    outcome = run_recrl(capsys, "usermodel", "fit", "--data", world["empty"], "--out", tmp_path)
    assert_user_error(outcome, str(world["empty"]), "display-set")


def test_usermodel_fit_bad_epochs(capsys, world, tmp_path):
    outcome = run_recrl(capsys, "usermodel", "fit", "--data", world["sets"], "--out", tmp_path,
                        "--epochs", "-1")  # fmt: skip
    assert_user_error(outcome, "epochs")


def test_usermodel_fit_refuses_an_earlier_model(capsys, world):
    outcome = _intact(
        world,
        lambda: run_recrl(
            capsys, "usermodel", "fit", "--data", world["sets"], "--out", world["model_out"]
        ),
    )
    assert_user_error(outcome, "user_model.pt", "--overwrite")


def test_usermodel_evaluate_missing_model(capsys, world):
    outcome = run_recrl(capsys, "usermodel", "evaluate", "--model", world["root"] / "m.pt",
                        "--data", world["sets"])  # fmt: skip
    assert_user_error(outcome, "--model", "m.pt")


def test_usermodel_evaluate_foreign_model_file(capsys, world):
    outcome = run_recrl(capsys, "usermodel", "evaluate", "--model", world["garbage"],
                        "--data", world["sets"])  # fmt: skip
    assert_user_error(outcome, str(world["garbage"]), "not a user model")


def test_slate_missing_user_model(capsys, world):
    outcome = run_recrl(capsys, "slate", "--data", world["sets"], "--user-model",
                        world["root"] / "um.pt", "--no-mlflow")  # fmt: skip
    assert_user_error(outcome, "--user-model", "um.pt")


def test_slate_bad_warmup(capsys, world):
    outcome = run_recrl(capsys, "slate", "--data", world["sets"], "--user-model",
                        world["garbage"], "--steps", "10", "--warmup-steps", "20")  # fmt: skip
    assert_user_error(outcome, "warmup_steps")


# --- submit, mlflow-sync, main ----------------------------------------------------------


def test_submit_without_a_command(capsys):
    assert_user_error(run_recrl(capsys, "submit", "--"), "name the command")


def test_submit_from_a_folder_that_is_not_a_checkout(capsys, world):
    outcome = run_recrl(capsys, "submit", "--working-dir", world["empty"], "--", "stats", "x")
    assert_user_error(outcome, str(world["empty"]), "not a recrl checkout")


def test_submit_to_an_unreachable_cluster(capsys, monkeypatch):
    from tests.services import free_port

    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    outcome = run_recrl(capsys, "submit", "--address", f"127.0.0.1:{free_port()}",
                        "--working-dir", REPO, "--", "stats", "x")  # fmt: skip
    assert_user_error(outcome, "no Ray job server", "ray start --head")


def test_mlflow_sync_missing_spool(capsys, world):
    outcome = run_recrl(capsys, "mlflow-sync", world["empty"])
    assert_user_error(outcome, "no spool", str(world["empty"]))


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch):
    from recrl.pipelines import cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), interrupted))
    assert_user_error(run_recrl(capsys, "train", "--data", "x"), "interrupted", code=130)


def test_a_user_error_raised_in_a_ray_task_is_unwrapped():
    """Ray wraps what a task raised in a RayTaskError whose text is the remote traceback;
    main() finds the UserError inside it (simulated: the wrapper's shape, not a task)."""
    from recrl.pipelines.cli import _user_cause
    from recrl.pipelines.errors import SettingError

    inner = SettingError("setting lr: expected float")
    wrapper = type("RayTaskError(SettingError)", (SettingError,), {})("Traceback ...\n...")
    wrapper.cause = inner
    assert _user_cause(wrapper) is inner
    assert _user_cause(RuntimeError("bug")) is None


def test_a_diverged_job_exits_1(capsys, monkeypatch):
    from recrl.pipelines import cli
    from recrl.pipelines.sasrec.job import TrainingDiverged

    def diverged(args):
        raise TrainingDiverged("loss/td became non-finite at update 30; training stopped", 30)

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser(), diverged))
    assert_user_error(run_recrl(capsys, "train", "--data", "x"), "loss/td", code=1)


def _with_handler(parser, handler):
    """``parser`` with the train subcommand's handler replaced."""
    for action in parser._subparsers._group_actions:
        action.choices["train"].set_defaults(handler=handler)
    return parser
