"""A trained slate policy as an MLflow model (`recrl.pipelines.slate.serving`).

Requests are made from the simulator's own observations (`UserModelEnv`: its histories, its
candidate pools with clicked items masked), written in raw ids with the pool shuffled, and the
served slate must be the one the policy picks from that observation as evaluation runs it
(`ModuleSlatePolicy.select`, the RLModule's greedy forward), with its Q-values
(`SlateQRLModule.q_of_slate`): through ``mlflow.pyfunc.load_model`` and through ``mlflow models
serve`` (a real server on loopback). A short real ``recrl slate --policy offline --register``
logs and registers the model, which must agree with the policy the job trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.slate.policies import RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel
from recrl.pipelines.display_sets.records import Records, write_meta, write_records
from recrl.pipelines.slate.serving import (
    CANDIDATES,
    HISTORY,
    ITEMS,
    Q,
    save_slate_policy,
    typed_raw_ids,
)

from tests.test_serving import model_server, post

N_ITEMS, M, K, POOL = 40, 4, 3, 24
"""Catalogue, history length, slate size and candidate pool of the unit tests."""
REQUESTS = 100


def write_display_sets(folder: Path, raw_ids: np.ndarray) -> Path:
    """A display-set folder of one page view, written by the display sets' own writer: the
    model reads its ``meta.json`` and ``items.parquet`` (raw ids stored as text)."""
    pad = len(raw_ids)
    records = Records(user=np.array([0]), timestamp=np.array([0]),
                      history=np.full((1, M), pad), shown=np.array([[0, 1]]),
                      click=np.array([0]))  # fmt: skip
    features = np.zeros((pad, 0), dtype=np.float32)
    write_records(str(folder), records, np.array([0]), raw_ids, features, [])
    write_meta(str(folder), {"n_items": pad, "pad_id": pad, "history_len": M})
    return folder


def slate_module(user_model: UserModel, q_form: str, seed: int):
    """A `SlateQRLModule` with random weights over the user model's state and f_a, built as
    training builds it (`slate_q_module_config`)."""
    import gymnasium as gym
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from recrl.pipelines.slate.config import CDQNConfig, slate_q_module_config
    from recrl.pipelines.slate.evaluation import item_feature_table
    from recrl.pipelines.slate.rl_module import SlateQRLModule

    features = item_feature_table(user_model).numpy()
    state_dim = user_model.encode(torch.full((1, M), user_model.pad_id)).shape[1]
    config = CDQNConfig(hidden=16, q_form=q_form)
    torch.manual_seed(seed)
    spec = RLModuleSpec(
        module_class=SlateQRLModule,
        observation_space=gym.spaces.Dict({}),
        action_space=gym.spaces.MultiDiscrete([POOL] * K),
        model_config=slate_q_module_config(config, features, state_dim, K),
    )
    return spec.build().eval()


def simulated_requests(env: UserModelEnv, raw_ids: np.ndarray, n: int, seed: int = 0):
    """``n`` observations of the simulator (random slates between them, so histories grow
    with clicks), each with its request: the history's raw ids (oldest first) and the
    available candidates' raw ids, shuffled."""
    rng = np.random.default_rng(seed)
    clicker = RandomSlatePolicy(env.config.slate_size, seed=seed)
    observations, requests = [], []
    obs, _ = env.reset(seed=seed)
    while len(observations) < n:
        history = obs["history"][obs["history"] != env.pad_id]
        pool = obs["candidates"][obs["candidate_mask"].astype(bool)]
        observations.append(obs)
        requests.append({HISTORY: raw_ids[history].tolist(),
                         CANDIDATES: raw_ids[rng.permutation(pool)].tolist()})  # fmt: skip
        obs, _, _, truncated, _ = env.step(clicker.select(obs))
        if truncated:
            obs, _ = env.reset()
    return observations, requests


def policy_slates(policy, observations: list[dict], raw_ids: np.ndarray):
    """Raw ids [N, k] and Q-values [N, k] of the slates ``policy`` (a `ModuleSlatePolicy`)
    picks from the observations, one at a time as evaluation runs it."""
    items, values = [], []
    for obs in observations:
        slots = policy.select(obs)
        batch = {key: torch.as_tensor(value)[None] for key, value in obs.items()}
        batch["state"] = policy.state_model.encode(batch["history"])
        with torch.no_grad():
            q = policy.module.q_of_slate(batch, torch.as_tensor(slots)[None])[0]
        items.append(raw_ids[obs["candidates"][slots]].tolist())
        values.append(q.numpy())
    return items, np.array(values)


def frame(requests: list[dict]):
    import pandas as pd

    return pd.DataFrame({HISTORY: [r[HISTORY] for r in requests],
                         CANDIDATES: [r[CANDIDATES] for r in requests]})  # fmt: skip


@pytest.fixture(scope="module")
def unit(tmp_path_factory) -> dict:
    """A user model with random weights, the simulator of random page views on it, and raw ids
    that are not 0..I-1 (so that a missed mapping shows)."""
    root = tmp_path_factory.mktemp("slate-serving")
    raw_ids = np.sort(np.random.default_rng(1).choice(10**9, N_ITEMS, replace=False))
    sets = write_display_sets(root / "sets", raw_ids)
    torch.manual_seed(0)
    config = UserModelConfig(history_len=M, item_embedding_dim=8, utility_hidden=8)
    model = UserModel(np.zeros((N_ITEMS + 1, 0), dtype=np.float32), config)
    model.eval().requires_grad_(False)
    rng = np.random.default_rng(2)
    history = rng.integers(0, N_ITEMS, (60, M))
    clicks = np.arange(60) % (M + 1)  # empty, short and full histories
    history[np.arange(M)[None, :] < M - clicks[:, None]] = N_ITEMS  # left-padded
    views = DisplaySetArrays(
        history=history, shown=np.stack([rng.choice(N_ITEMS, 10, replace=False)
                                         for _ in range(60)]),
        click=np.zeros(60, dtype=np.int64), user=np.arange(60) % 12, pad_id=N_ITEMS,
    )  # fmt: skip
    loaded = LoadedUserModel(model, model, np.zeros((N_ITEMS + 1, 0), np.float32), {})
    env = UserModelEnv(loaded, views, UserModelEnvConfig(slate_size=K, max_pool=POOL))
    return {"root": root, "sets": sets, "raw_ids": raw_ids, "model": model, "env": env}


@pytest.mark.parametrize(("name", "q_form"), [("cdqn", "cascading"), ("gdqn", "additive")])
def test_the_loaded_model_picks_the_policys_slates_for_100_requests(unit, name, q_form):
    import mlflow.pyfunc
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    policy = ModuleSlatePolicy(slate_module(unit["model"], q_form, seed=3), unit["model"])
    path = save_slate_policy(unit["root"] / name, policy, dataset=unit["sets"], name=name)
    loaded = mlflow.pyfunc.load_model(str(path))
    observations, requests = simulated_requests(unit["env"], unit["raw_ids"], REQUESTS)
    assert {len(r[HISTORY]) for r in requests} >= {0, 2, M}  # empty, short and full histories

    # the histories the model builds are the simulator's, slot for slot
    recommender = loaded.unwrap_python_model().recommender
    history, _, mask = recommender.observations(
        [r[HISTORY] for r in requests], [r[CANDIDATES] for r in requests]
    )
    np.testing.assert_array_equal(history.numpy(), [obs["history"] for obs in observations])
    assert mask.sum(1).tolist() == [int(obs["candidate_mask"].sum()) for obs in observations]

    out = loaded.predict(frame(requests))
    assert list(out.columns) == [ITEMS, Q] and len(out) == REQUESTS
    items, values = policy_slates(policy, observations, unit["raw_ids"])
    assert out[ITEMS].tolist() == items
    np.testing.assert_allclose(np.array(out[Q].tolist()), values, rtol=1e-5, atol=1e-6)
    assert loaded.metadata.metadata["recrl.policy"] == name


def test_clicked_items_are_not_recommended_again(unit):
    import mlflow.pyfunc
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    policy = ModuleSlatePolicy(slate_module(unit["model"], "cascading", seed=4), unit["model"])
    path = save_slate_policy(unit["root"] / "clicked", policy, dataset=unit["sets"], name="cdqn")
    loaded = mlflow.pyfunc.load_model(str(path))
    raw = unit["raw_ids"]
    pool = raw[:8].tolist()
    first = loaded.predict(frame([{HISTORY: [], CANDIDATES: pool}]))[ITEMS][0]
    # the first slate's items, clicked (and beyond the history length), leave the pool
    clicked = [*first, *raw[30 : 30 + M].tolist()]
    second = loaded.predict(frame([{HISTORY: clicked, CANDIDATES: pool}]))[ITEMS][0]
    assert not set(first) & set(second) and set(second) <= set(pool)


def test_string_item_ids_are_served_in_their_own_type(unit, tmp_path):
    import mlflow.pyfunc
    from mlflow.types.schema import DataType
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    raw_ids = np.array([f"sku-{i:03d}" for i in range(N_ITEMS)], dtype=object)
    sets = write_display_sets(tmp_path / "sets", raw_ids)
    policy = ModuleSlatePolicy(slate_module(unit["model"], "cascading", seed=5), unit["model"])
    loaded = mlflow.pyfunc.load_model(
        str(save_slate_policy(tmp_path / "m", policy, dataset=sets, name="cdqn"))
    )
    assert loaded.metadata.signature.inputs.input_types()[0].dtype == DataType.string
    observations, requests = simulated_requests(unit["env"], raw_ids, 20, seed=6)
    out = loaded.predict(frame(requests))
    assert out[ITEMS].tolist() == policy_slates(policy, observations, raw_ids)[0]


def test_raw_ids_are_integers_only_where_every_id_is_one():
    assert typed_raw_ids(np.array(["12", "-3", "7"])).tolist() == [12, -3, 7]
    assert typed_raw_ids(np.array(["12", "-3", "7"])).dtype == np.int64
    for text in (["12", "007"], ["12", "a1"], ["1_000", "2"], ["99999999999999999999", "1"]):
        assert typed_raw_ids(np.array(text)).tolist() == text


BAD = {
    "unknown item id": ([{HISTORY: [7], CANDIDATES: "pool"}], "not in the model's catalogue"),
    "empty pool": ([{HISTORY: [], CANDIDATES: []}], "row 0: no candidates"),
    "too few after the history": ([{HISTORY: "pool3", CANDIDATES: "pool4"}],
                                  "row 0: 1 candidates are not in the history, the slate needs"),
    "repeated candidates": ([{HISTORY: [], CANDIDATES: "pool+pool"}], "row 0: repeated candidates"),
}  # fmt: skip
"""Bad requests both the pyfunc and the server refuse: rows (with "pool", "poolN" and
"pool+pool" standing for known ids) and the message."""


def bad_rows(rows: list[dict], raw_ids: np.ndarray) -> list[dict]:
    pool = raw_ids[:6].tolist()
    known = {"pool": pool, "pool3": pool[:3], "pool4": pool[:4], "pool+pool": pool + pool[:1]}
    return [{key: known.get(value, value) if isinstance(value, str) else value
             for key, value in row.items()} for row in rows]  # fmt: skip


def test_bad_requests_are_invalid_parameter_values_with_a_message(unit):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    policy = ModuleSlatePolicy(slate_module(unit["model"], "cascading", seed=7), unit["model"])
    path = save_slate_policy(unit["root"] / "bad", policy, dataset=unit["sets"], name="cdqn")
    loaded = mlflow.pyfunc.load_model(str(path))
    known = int(unit["raw_ids"][0])
    pool = unit["raw_ids"][:6].tolist()
    cases = [(frame(bad_rows(rows, unit["raw_ids"])), message) for rows, message in BAD.values()]
    cases += [
        (pd.DataFrame({HISTORY: [[[known]]], CANDIDATES: [pool]}), "convert"),  # nested: schema
        (pd.DataFrame({HISTORY: [known], CANDIDATES: [pool]}), "list or numpy array"),
        (pd.DataFrame({CANDIDATES: [pool]}), "missing inputs ['history']"),
        (frame([]), "no rows in the request"),
    ]
    for request, message in cases:
        with pytest.raises(MlflowException) as error:
            loaded.predict(request)
        assert error.value.error_code == "INVALID_PARAMETER_VALUE", request
        assert message in error.value.message, (message, error.value.message)


def test_a_policy_for_other_display_sets_is_refused(unit, tmp_path):
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    sets = write_display_sets(tmp_path / "sets", np.arange(N_ITEMS + 1))
    policy = ModuleSlatePolicy(slate_module(unit["model"], "cascading", seed=8), unit["model"])
    with pytest.raises(ValueError, match="pass the display sets it trained on"):
        save_slate_policy(tmp_path / "m", policy, dataset=sets, name="cdqn")


# --- mlflow models serve ------------------------------------------------------------------


@pytest.mark.service
def test_mlflow_models_serve_answers_with_the_policys_slates_and_400s(unit, tmp_path):
    from recrl.pipelines.slate.training import ModuleSlatePolicy

    policy = ModuleSlatePolicy(slate_module(unit["model"], "cascading", seed=9), unit["model"])
    path = save_slate_policy(tmp_path / "model", policy, dataset=unit["sets"], name="cdqn")
    observations, requests = simulated_requests(unit["env"], unit["raw_ids"], REQUESTS, seed=10)
    items, values = policy_slates(policy, observations, unit["raw_ids"])
    with model_server(str(path), tmp_path / "serve.log") as url:
        status, answer = post(url, {"dataframe_records": requests})
        assert status == 200, answer
        assert [row[ITEMS] for row in answer["predictions"]] == items
        served = np.array([row[Q] for row in answer["predictions"]])
        np.testing.assert_allclose(served, values, rtol=1e-5, atol=1e-6)
        status, answer = post(url, {"inputs": requests[:3]})  # the other records form
        assert status == 200 and [row[ITEMS] for row in answer["predictions"]] == items[:3]

        known, pool = int(unit["raw_ids"][0]), unit["raw_ids"][:6].tolist()
        bad = {case: ({"dataframe_records": bad_rows(rows, unit["raw_ids"])}, message)
               for case, (rows, message) in BAD.items()}  # fmt: skip
        bad |= {
            "nested lists": ({"dataframe_records": [{HISTORY: [[known]], CANDIDATES: pool}]},
                             "Array(long)"),
            "a scalar pool": ({"dataframe_records": [{HISTORY: [], CANDIDATES: known}]},
                              "Array(long)"),
            "no history column": ({"dataframe_records": [{CANDIDATES: pool}]},
                                  "missing inputs ['history']"),
            "no rows": ({"dataframe_records": []}, ""),
            "not JSON": (b"[[1, 2", "valid JSON"),
        }  # fmt: skip
        for case, (body, message) in bad.items():
            status, answer = post(url, body)
            assert status == 400, (case, status, answer)
            assert message in answer["message"], (case, answer["message"])


# --- recrl slate --register ---------------------------------------------------------------


def test_the_slate_command_takes_register():
    from recrl.pipelines.cli import build_parser
    from recrl.pipelines.commands.slate import slate_config

    base = ["slate", "--data", "d", "--user-model", "u"]
    parse = build_parser().parse_args
    assert slate_config(parse([*base, "--register", "slates"])).register_model == "slates"
    assert slate_config(parse(base)).register_model is None
    refused = {
        "register_model must be a model name": [*base, "--register", " "],
        "needs tracking": [*base, "--register", "slates", "--no-mlflow"],
        "policy random learns nothing": [*base, "--register", "slates", "--policy", "random"],
    }
    for message, args in refused.items():
        with pytest.raises(ValueError, match=message):
            slate_config(parse(args))


def test_slate_with_register_logs_a_model_that_picks_as_the_trained_policy(
    tmp_path, monkeypatch, one_torch_thread
):
    import mlflow.pyfunc
    import pyarrow.parquet as pq
    from mlflow import MlflowClient
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.models.user_model.checkpoint import load_user_model
    from recrl.pipelines.cli import main
    from recrl.pipelines.display_sets.records import load_display_sets
    from recrl.pipelines.slate import job as slate_job

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    write_generated_dataset(SessionGeneratorConfig(n_sessions=300, n_items=50), tmp_path / "gen")
    sets, um = tmp_path / "sets", tmp_path / "um"
    assert main(["usermodel", "build", "--source", "generic", "--input",
                 str(tmp_path / "gen" / "sessions"), "--output", str(sets)]) == 0  # fmt: skip
    assert main(["usermodel", "fit", "--data", str(sets), "--out", str(um), "--epochs", "1",
                 "--no-baselines", "--no-mlflow"]) == 0  # fmt: skip
    trained = []
    make_policy = slate_job._policy

    def recorded(*args, **kwargs):
        trained.append(make_policy(*args, **kwargs))
        return trained[-1]

    monkeypatch.setattr(slate_job, "_policy", recorded)
    assert main(["slate", "--policy", "offline", "--k", "3", "--data", str(sets),
                 "--user-model", str(um / "user_model.pt"), "--seeds", "4", "5",
                 "--episodes", "4", "--episode-length", "3", "--steps", "30",
                 "--batch-size", "16", "--out", str(tmp_path / "out"),
                 "--register", "recrl-test-slates"]) == 0  # fmt: skip

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("recrl-slate").experiment_id])
    versions = client.search_model_versions("name='recrl-test-slates'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", run.info.run_id)]
    assert run.data.tags["recrl.registered_model"] == "recrl-test-slates/1"
    assert run.data.tags["recrl.model_seed"] == "4"
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert (tmp_path / "out" / "slate_offline_k3" / "model" / "MLmodel").is_file()
    loaded = mlflow.pyfunc.load_model("models:/recrl-test-slates/1")

    # the first seed's policy, on 100 observations of the test users' simulator
    policy = trained[0]
    raw_ids = typed_raw_ids(pq.read_table(sets / "items.parquet").column("raw_item_id").to_numpy())
    assert raw_ids.dtype == np.int64 and not np.array_equal(raw_ids, np.arange(len(raw_ids)))
    dataset = load_display_sets(sets)
    env = UserModelEnv(load_user_model(um / "user_model.pt"), dataset.splits["test"],
                       UserModelEnvConfig(slate_size=3))  # fmt: skip
    observations, requests = simulated_requests(env, raw_ids, REQUESTS, seed=11)
    out = loaded.predict(frame(requests))
    items, values = policy_slates(policy, observations, raw_ids)
    assert out[ITEMS].tolist() == items
    np.testing.assert_allclose(np.array(out[Q].tolist()), values, rtol=1e-5, atol=1e-6)
    meta = json.loads((sets / "meta.json").read_text())
    assert loaded.unwrap_python_model().recommender.spec.history_len == meta["history_len"]
