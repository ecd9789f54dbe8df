"""`recrl bandit` and `recrl slate` on the one settings system: flags generated from the config
fields (defaults and help from there), ``--set`` and ``--config`` routed by `apply_settings`,
help lists read from the registries, and one warm-up rule for the slate Q-learners."""

from __future__ import annotations

import pytest
from recrl.models.bandits.registry import POLICIES
from recrl.pipelines.bandit.config import ENVIRONMENTS, REFERENCE_POLICIES, BanditRunConfig
from recrl.pipelines.cli import build_parser, main
from recrl.pipelines.commands.bandit import bandit_config
from recrl.pipelines.commands.slate import slate_config
from recrl.pipelines.errors import SettingError
from recrl.pipelines.settings import field_docs
from recrl.pipelines.slate import policy_names
from recrl.pipelines.slate.config import CDQNConfig, SlateJob
from recrl.pipelines.tune.kinds import BANDIT, SLATE


def _help(capsys, command: str) -> str:
    """``recrl COMMAND --help`` with its line breaks undone (argparse wraps the columns)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def _bandit(*argv: str) -> BanditRunConfig:
    return bandit_config(build_parser().parse_args(["bandit", "--no-mlflow", *argv]))


def _slate(*argv: str) -> SlateJob:
    return slate_config(build_parser().parse_args(["slate", *argv]))


SLATE_ARGS = ("--data", "sets", "--user-model", "um.pt")


# --- recrl bandit -----------------------------------------------------------------------


def test_bandit_flags_show_the_config_defaults_and_docs(capsys):
    text = _help(capsys, "bandit")
    for flag, name in (("--rounds", "rounds"), ("--slate-size", "slate_size"),
                       ("--users", "n_users"), ("--seed", "seed")):  # fmt: skip
        doc = field_docs(BanditRunConfig)[name].replace("``", "`")
        default = getattr(BanditRunConfig(), name)
        assert f"{doc} (default: {default})" in text, flag
    assert "--backend {loop,rllib}" in text  # choices from the field's Literal
    # no flag repeats a default: given nothing, the command builds the config's defaults
    assert _bandit() == BanditRunConfig(tracking=False)


def test_bandit_help_lists_every_policy_and_environment_from_the_registries(capsys):
    text = _help(capsys, "bandit")
    for name, spec in POLICIES.items():
        assert spec.summary, f"policy {name} has no summary for --help"
        assert f"{name} {spec.summary}" in text
    for name, summary in {**REFERENCE_POLICIES, **ENVIRONMENTS}.items():
        assert f"{name} {summary}" in text
    assert "lambda_d=0.3" in text  # a policy's keys, with the default of its config
    assert "embedding_dim Width d of the user and item embeddings" in text  # other settings


@pytest.mark.parametrize(
    ("policy", "key", "value", "path"),
    [
        ("ren", "lambda_d", 0.01, ("policy_settings", "lambda_d")),
        ("ren", "lambda_u", 0.1, ("policy_settings", "lambda_u")),
        ("ren", "history", "context", ("policy_settings", "history")),
        ("ren", "history_window", 30, ("policy_settings", "history_window")),
        ("n-dropout-ucb", "beta", 0.5, ("policy_settings", "beta")),
        ("n-dropout-ucb", "passes", 3, ("policy_settings", "passes")),
        ("n-dropout-ucb", "dropout", 0.3, ("policy_settings", "dropout")),
        ("s-n-galm-ucb", "gamma", 0.3, ("policy_settings", "gamma")),
        ("s-n-galm-ucb", "lr", 0.1, ("policy_settings", "lr")),
        ("s-n-gblm-ucb", "covariance", "diagonal", ("policy_settings", "covariance")),
        ("2-n-greedy", "min_group_items", 7, ("policy_settings", "min_group_items")),
        ("2-n-greedy", "budget", 100, ("policy_settings", "budget")),
        ("ren", "embedding_dim", 4, ("representation", "embedding_dim")),
        ("linucb", "l2", 2.0, ("representation", "l2")),  # the run's, not the GLM's
        ("ren", "sweeps", 3, ("representation", "sweeps")),
        ("ren", "init_std", 0.2, ("representation", "init_std")),
        ("ren", "hidden_size", 8, ("sasrec", "hidden_size")),
        ("ren", "max_len", 5, ("sasrec", "max_len")),
        ("ren", "num_blocks", 2, ("sasrec", "num_blocks")),
        ("ren", "num_heads", 2, ("sasrec", "num_heads")),
        ("ren", "encoder_dropout", 0.1, ("sasrec", "encoder_dropout")),
        ("ren", "encoder_lr", 0.01, ("sasrec", "encoder_lr")),
        ("ren", "steps_per_refit", 3, ("sasrec", "steps_per_refit")),
        ("ren", "batch_size", 16, ("sasrec", "batch_size")),
        ("ren", "window", 5, ("window",)),
        ("ren", "log_interval", 2, ("log_interval",)),
        ("ren", "n_users", 7, ("n_users",)),
        ("ren", "refit_interval", 3, ("refit_interval",)),
        ("ren", "feedback_rows", "shown", ("feedback_rows",)),
        ("ren", "rounds_per_update", 2, ("rounds_per_update",)),
        ("ren", "num_env_runners", 1, ("num_env_runners",)),
        ("ren", "encoder", "sasrec", ("encoder",)),
        ("2-n-greedy", "seed", 3, ("seed",)),  # the run's seed, which the policy takes
    ],
)
def test_every_documented_bandit_key_reaches_its_field(policy, key, value, path):
    config = _bandit("--policy", policy, "--set", f"{key}={value}")
    reached = config
    for name in path:
        reached = reached[name] if isinstance(reached, dict) else getattr(reached, name)
    assert reached == value
    if path[0] != "policy_settings":
        assert key not in config.policy_settings


def test_bandit_policy_settings_are_typed_and_unknown_keys_list_the_known_ones():
    assert _bandit("--set", "lambda_d=1").policy_settings == {"lambda_d": 1.0}
    with pytest.raises(SettingError, match=r"setting lambda_d: expected float, got 'abc'"):
        _bandit("--set", "lambda_d=abc")
    with pytest.raises(SettingError) as error:
        _bandit("--set", "lambda_dd=1")
    message = str(error.value)
    assert "unknown setting 'lambda_dd' (did you mean 'lambda_d'?)" in message
    known = message.split("known: ")[1].split(", ")
    assert {"lambda_u", "history_window", "embedding_dim", "hidden_size", "rounds"} <= set(known)
    with pytest.raises(SettingError, match="unknown setting 'lambda_d'"):
        _bandit("--policy", "oracle", "--set", "lambda_d=0.1")  # the oracle has no settings
    # the old name of the latent-factor width is gone, not silently a policy setting
    with pytest.raises(SettingError, match="unknown setting 'dim'"):
        _bandit("--set", "dim=4")


def test_bandit_config_file_then_set_then_flags(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("rounds: 7\nlambda_d: 0.05\nembedding_dim: 4\nwindow: 3\n")
    config = _bandit("--config", str(file), "--set", "window=5", "--rounds", "9")
    assert (config.rounds, config.window) == (9, 5)
    assert config.representation.embedding_dim == 4
    assert config.policy_settings == {"lambda_d": 0.05}


def test_the_bandit_sweep_builds_what_the_command_builds():
    settings = {"policy": "s-n-gblm-ucb", "beta": 0.3, "embedding_dim": 4, "seed": 2,
                "tracking": False}  # fmt: skip
    assert BANDIT.build("", None, settings) == _bandit(
        "--policy", "s-n-gblm-ucb", "--seed", "2", "--set", "beta=0.3", "--set", "embedding_dim=4"
    )  # fmt: skip


# --- recrl slate ------------------------------------------------------------------------


def test_slate_flags_show_the_config_defaults_and_no_default_is_repeated(capsys):
    text = _help(capsys, "slate")
    assert f"(default: {CDQNConfig.env_steps})" in text and "--steps ENV_STEPS" in text
    assert f"Slate size. (default: {SlateJob.k})" in text
    for name, summary in policy_names.POLICIES.items():
        assert f"{name} {summary}" in text
    assert _slate(*SLATE_ARGS) == SlateJob(data="sets", user_model="um.pt")


def test_slate_settings_route_to_the_job_and_the_q_learner(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text("data: sets\nuser_model: um.pt\ngamma: 0.9\nepisodes: 0\nhidden: 16\n")
    job = _slate("--config", str(file), "--set", "lr=0.01", "--seeds", "1", "2", "--k", "3",
                 "--no-mlflow")  # fmt: skip
    assert (job.cdqn.gamma, job.cdqn.lr, job.cdqn.hidden) == (0.9, 0.01, 16)
    assert (job.seeds, job.k, job.tracking) == ((1, 2), 3, False)
    assert job.episodes is None  # 0: each test user once
    assert _slate(*SLATE_ARGS, "--episodes", "0").episodes is None
    assert _slate(*SLATE_ARGS, "--set", "cdqn.tau=0.5").cdqn.tau == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--set", "reward=pm1"), "unknown slate setting 'reward'"),  # rwd1 is a policy
        (("--set", "q_form=additive"), "unknown slate setting 'q_form'"),  # gdqn is one
        (("--set", "seed=3"), r"unknown slate setting 'seed' \(did you mean 'seeds'\?\)"),
        (("--set", "gamm=0.1"), r"did you mean 'gamma'\?\); known: .*env_steps"),
        (("--set", "episodes=x"), "setting episodes: expected int or null"),
    ],
)
def test_slate_settings_the_job_decides_or_does_not_know_are_refused(argv, message):
    with pytest.raises(SettingError, match=message):
        _slate(*SLATE_ARGS, *argv)


def test_slate_needs_its_data_and_user_model():
    with pytest.raises(SettingError, match="slate setting user_model is required"):
        _slate("--data", "sets")


@pytest.mark.parametrize(
    ("steps", "warmup"), [(5000, 500), (20_000, 500), (1000, 100), (40, 4), (5, 0)]
)
def test_the_slate_warmup_is_one_rule_for_the_command_the_sweep_and_python(steps, warmup):
    fixed = {"policy": "cdqn", "user_model": "um.pt", "env_steps": steps}
    configs = {
        "python": CDQNConfig(env_steps=steps),
        "command": _slate(*SLATE_ARGS, "--steps", str(steps)).cdqn,
        "sweep": SLATE.build("sets", None, {**fixed, "seed": 0}).cdqn,
    }
    for source, config in configs.items():
        assert config.effective_warmup_steps == warmup, source
        assert config.epsilon_schedule()[1] == (warmup, 1.0), source
    assert _slate(*SLATE_ARGS, "--steps", "1000", "--warmup-steps", "20").cdqn.epsilon_schedule()[
        1
    ] == (20, 1.0)
    params = SlateJob(data="d", user_model="u", cdqn=CDQNConfig(env_steps=steps)).as_params()
    assert params["cdqn"]["warmup_steps"] == warmup  # MLflow shows the warm-up used


def test_a_slate_trial_runs_one_seed_of_the_study():
    job = SLATE.build("sets", None, {"policy": "cdqn", "user_model": "um.pt", "seed": 4})
    assert job.seeds == (4,) and job.cdqn.seed == CDQNConfig.seed  # each seed set per run
