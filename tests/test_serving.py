"""A trained SASRec policy as an MLflow model (`recrl.pipelines.sasrec.serving`).

The model is checked against recrl's own scoring: the states are built by prepare's window
code (`build_windows`), scored by the score function evaluation uses (`module_score_fn`),
and the model, given the raw-id histories those states came from, must return the same
top-k raw ids and scores, through ``mlflow.pyfunc.load_model`` and through
``mlflow models serve`` (a real server on loopback). A short real ``recrl train --register``
logs and registers the model, which must agree with the checkpoint it was trained to.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.network import SASRecQNetwork
from recrl.pipelines.prepare.output import write_items
from recrl.pipelines.prepare.windows import build_windows
from recrl.pipelines.sasrec.job import module_score_fn
from recrl.pipelines.sasrec.serving import (
    DEFAULT_TOP_K,
    HISTORY,
    ITEMS,
    SCORES,
    save_recommender,
)

from tests.services import free_port, mlflow_executable, wait_port_closed

N_ITEMS, L, HIDDEN = 40, 5, 16
HISTORIES = 100


def write_dataset(folder: Path, raw_ids: np.ndarray) -> Path:
    """The parts of a prepared dataset the model reads: ``meta.json`` and ``items.parquet``
    (written by prepare's own writer)."""
    folder.mkdir(parents=True)
    meta = {"n_items": len(raw_ids), "pad_id": len(raw_ids), "L": L}
    (folder / "meta.json").write_text(json.dumps(meta))
    write_items(str(folder), raw_ids, {0: np.ones(len(raw_ids), dtype=np.int64)})
    return folder


def sample_histories(raw_ids: np.ndarray, n: int, seed: int = 0):
    """``n`` events of random sessions, each as (raw-id history: every earlier item of its
    session, prepare's ``state`` [L] and ``state_len``). Sessions run up to 3·L events, so
    many histories are longer than a state and get truncated."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 3 * L, size=4 * n)
    sessions = np.repeat(np.arange(len(lengths)), lengths)
    items = rng.integers(0, len(raw_ids), size=len(sessions))
    windows = build_windows(sessions, items, state_len=L, pad_id=len(raw_ids))
    rows = rng.choice(np.flatnonzero(windows.state_len > 0), size=n, replace=False)
    histories = [raw_ids[items[row - windows.step[row] : row]].tolist() for row in rows]
    return histories, windows.state[rows], windows.state_len[rows]


def recrl_top_k(network, state, state_len, k: int, head: str = "supervised"):
    """Top-k encoded ids and scores as recrl's evaluation scores the states."""
    network.eval()
    with torch.inference_mode():
        score = module_score_fn(network, head)
        scores = score(torch.from_numpy(state), torch.from_numpy(state_len))
        top = torch.topk(scores, k, dim=1)
    return top.indices.numpy(), top.values.numpy()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    """A SASRec network with random weights, saved as an MLflow model with a catalogue of
    raw ids that are not 0..I-1 (so that a missed mapping shows)."""
    root = tmp_path_factory.mktemp("serving")
    raw_ids = np.sort(np.random.default_rng(1).choice(10**9, N_ITEMS, replace=False))
    dataset = write_dataset(root / "prepared", raw_ids.astype(np.int64))
    torch.manual_seed(0)
    network = SASRecQNetwork(N_ITEMS, SASRecConfig(hidden_size=HIDDEN, max_len=L)).eval()
    path = save_recommender(root / "model", network, dataset=dataset)
    return {"root": root, "path": path, "network": network, "raw_ids": raw_ids}


@pytest.mark.parametrize("head", ["supervised", "q"])
def test_the_loaded_model_ranks_100_histories_as_recrl_scores_them(model, head, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    path = model["path"]
    if head != "supervised":
        path = save_recommender(tmp_path / "model", model["network"], dataset=model["root"] /
                                "prepared", head=head)  # fmt: skip
    loaded = mlflow.pyfunc.load_model(str(path))
    histories, state, state_len = sample_histories(model["raw_ids"], HISTORIES)
    assert max(map(len, histories)) > L  # some histories are truncated to a state

    # the states the model builds are prepare's, slot for slot
    built, built_len = loaded.unwrap_python_model().recommender.states(histories)
    np.testing.assert_array_equal(built.numpy(), state)
    np.testing.assert_array_equal(built_len.numpy(), state_len)

    out = loaded.predict(pd.DataFrame({HISTORY: histories}))
    assert list(out.columns) == [ITEMS, SCORES] and len(out) == HISTORIES
    ids, scores = recrl_top_k(model["network"], state, state_len, DEFAULT_TOP_K, head)
    assert out[ITEMS].tolist() == model["raw_ids"][ids].tolist()
    np.testing.assert_allclose(np.array(out[SCORES].tolist()), scores, rtol=1e-5, atol=1e-6)

    three = loaded.predict(pd.DataFrame({HISTORY: histories[:4]}), params={"k": 3})
    assert three[ITEMS].tolist() == model["raw_ids"][ids[:4, :3]].tolist()


def test_string_item_ids_are_served_in_their_own_type(tmp_path):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.types.schema import DataType

    raw_ids = np.array([f"sku-{i:03d}" for i in range(N_ITEMS)], dtype=object)
    dataset = write_dataset(tmp_path / "prepared", raw_ids)
    torch.manual_seed(1)
    network = SASRecQNetwork(N_ITEMS, SASRecConfig(hidden_size=HIDDEN, max_len=L)).eval()
    loaded = mlflow.pyfunc.load_model(str(save_recommender(tmp_path / "m", network,
                                                           dataset=dataset)))  # fmt: skip
    assert loaded.metadata.signature.inputs.input_types()[0].dtype == DataType.string
    histories, state, state_len = sample_histories(raw_ids, 20, seed=3)
    out = loaded.predict(pd.DataFrame({HISTORY: histories}))
    ids, _ = recrl_top_k(network, state, state_len, DEFAULT_TOP_K)
    assert out[ITEMS].tolist() == raw_ids[ids].tolist()


def test_bad_requests_are_invalid_parameter_values_with_a_message(model):
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException

    loaded = mlflow.pyfunc.load_model(str(model["path"]))
    known = int(model["raw_ids"][0])
    cases = [
        (pd.DataFrame({HISTORY: [[known], [known, 7]]}), {}, "not in the model's catalogue"),
        (pd.DataFrame({HISTORY: [[known], []]}), {}, "row 1: empty history"),
        (pd.DataFrame({HISTORY: [[[known, known]]]}), {}, "convert"),  # nested: schema
        (pd.DataFrame({HISTORY: [known]}), {}, "list or numpy array"),  # scalar: schema
        (pd.DataFrame({"items": [[known]]}), {}, "missing inputs ['history']"),
        (pd.DataFrame({HISTORY: [[known]]}), {"k": 0}, f"k must be in [1, {N_ITEMS}]"),
    ]
    for frame, params, message in cases:
        with pytest.raises(MlflowException) as error:
            loaded.predict(frame, params=params)
        assert error.value.error_code == "INVALID_PARAMETER_VALUE", frame
        assert message in error.value.message, (message, error.value.message)


def test_a_network_for_another_dataset_is_refused(model, tmp_path):
    network = SASRecQNetwork(N_ITEMS + 1, SASRecConfig(hidden_size=HIDDEN, max_len=L))
    with pytest.raises(ValueError, match="pass the dataset it trained on"):
        save_recommender(tmp_path / "m", network, dataset=model["root"] / "prepared")


# --- mlflow models serve ------------------------------------------------------------------

SERVER_START_S = 180.0
"""The scoring server imports torch and mlflow: about 10 s idle, more on a loaded machine."""


@contextlib.contextmanager
def model_server(model_uri: str, log_path: Path, env: dict | None = None):
    """``mlflow models serve`` on 127.0.0.1 and a free port, in its own process group; yields
    its URL once /ping answers and stops the group on exit (also when the test fails)."""
    port = free_port()
    command = [mlflow_executable(), "models", "serve", "-m", model_uri, "--env-manager",
               "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, **(env or {})}
    # the server execs `uvicorn`, which lies beside the interpreter running the tests
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/ping", timeout=2).status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                raise AssertionError(f"mlflow models serve did not answer /ping:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        wait_port_closed(port)


def post(url: str, body) -> tuple[int, dict]:
    """POST ``body`` (JSON, or raw bytes) to /invocations: (status, decoded answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/invocations", data=data,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.service
def test_mlflow_models_serve_answers_with_recrls_top_k_and_400_for_bad_requests(model, tmp_path):
    histories, state, state_len = sample_histories(model["raw_ids"], HISTORIES, seed=5)
    ids, scores = recrl_top_k(model["network"], state, state_len, 7)
    expected = model["raw_ids"][ids].tolist()
    known = int(model["raw_ids"][0])
    with model_server(str(model["path"]), tmp_path / "serve.log") as url:
        records = [{HISTORY: history} for history in histories]
        status, answer = post(url, {"dataframe_records": records, "params": {"k": 7}})
        assert status == 200, answer
        predictions = answer["predictions"]
        assert [row[ITEMS] for row in predictions] == expected
        served = np.array([row[SCORES] for row in predictions])
        np.testing.assert_allclose(served, scores, rtol=1e-5, atol=1e-6)
        status, answer = post(url, {"inputs": records[:3]})  # the other records form
        assert status == 200 and len(answer["predictions"][0][ITEMS]) == DEFAULT_TOP_K

        bad = {
            "unknown item id": ({"dataframe_records": [{HISTORY: [known, 7]}]},
                                "item ids not in the model's catalogue"),
            "empty history": ({"dataframe_records": [{HISTORY: []}]}, "empty history"),
            "nested lists": ({"dataframe_records": [{HISTORY: [[known, known]]}]}, "Array(long)"),
            "a scalar": ({"dataframe_records": [{HISTORY: known}]}, "Array(long)"),
            "no history column": ({"dataframe_records": [{"items": [known]}]},
                                  "missing inputs ['history']"),
            "k = 0": ({"dataframe_records": [{HISTORY: [known]}], "params": {"k": 0}},
                      "k must be in"),
            "not JSON": (b"[[1, 2", "valid JSON"),
        }  # fmt: skip
        for case, (body, message) in bad.items():
            status, answer = post(url, body)
            assert status == 400, (case, status, answer)
            assert message in answer["message"], (case, answer["message"])


# --- recrl train --register ---------------------------------------------------------------


def test_the_train_command_takes_register():
    from recrl.pipelines.cli import build_parser
    from recrl.pipelines.commands.train import train_config

    args = build_parser().parse_args(["train", "--data", "d", "--register", "recs"])
    assert train_config(args).register_model == "recs"
    assert train_config(build_parser().parse_args(["train", "--data", "d"])).register_model is None
    with pytest.raises(ValueError, match="register_model must be a model name"):
        train_config(build_parser().parse_args(["train", "--data", "d", "--register", " "]))


@pytest.mark.ray
def test_train_with_register_logs_a_model_that_ranks_as_its_checkpoint(
    ray_session, tmp_path, monkeypatch
):
    import mlflow.pyfunc
    import pandas as pd
    import pyarrow.parquet as pq
    from mlflow import MlflowClient
    from ray.rllib.core.rl_module.rl_module import RLModule
    from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
    from recrl.pipelines.evaluation import load_eval_split
    from recrl.pipelines.prepare.config import PrepareConfig
    from recrl.pipelines.prepare.pipeline import prepare
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.sasrec.job import train

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    frame = generate_sessions(SessionGeneratorConfig(seed=5, n_sessions=600, n_items=60))
    (tmp_path / "raw").mkdir()
    frame.to_parquet(tmp_path / "raw" / "sessions.parquet", index=False)
    data = tmp_path / "prepared"
    prepare(PrepareConfig(source="generic", input_path=str(tmp_path / "raw"),
                          output_path=str(data)))  # fmt: skip
    config = TrainConfig.for_variant(
        "sasrec", str(data), hidden_size=16, batch_size=32, total_steps=30, eval_interval=30,
        eval_max_rows=50, experiment="test-serving", register_model="recrl-test-recs",
    )  # fmt: skip
    result = train(config, run_dir=tmp_path / "run")

    client = MlflowClient(tracking_uri=uri)
    versions = client.search_model_versions("name='recrl-test-recs'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", result.run_id)]
    run = client.get_run(result.run_id)
    assert run.data.tags["recrl.registered_model"] == "recrl-test-recs/1"
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(result.run_id, "model")}
    assert (tmp_path / "run" / "model" / "MLmodel").is_file()
    loaded = mlflow.pyfunc.load_model("models:/recrl-test-recs/1")

    # 100 random test-split states, as raw-id histories, against the checkpoint's scores
    rl_module = tmp_path / "run" / "checkpoint" / "learner_group" / "learner" / "rl_module"
    checkpoint = RLModule.from_checkpoint(str(rl_module / "default_policy"))
    split = load_eval_split(data, "test")
    rows = np.flatnonzero(split.state_len.numpy() > 0)
    assert len(rows) >= HISTORIES
    rows = np.random.default_rng(0).choice(rows, HISTORIES, replace=False)
    state, state_len = split.state.numpy()[rows], split.state_len.numpy()[rows]
    raw_ids = pq.read_table(data / "items.parquet").column("raw_item_id").to_numpy()
    length = state.shape[1]
    histories = [raw_ids[s[length - n :]].tolist() for s, n in zip(state, state_len, strict=True)]
    out = loaded.predict(pd.DataFrame({HISTORY: histories}))
    ids, scores = recrl_top_k(checkpoint, state, state_len, DEFAULT_TOP_K)
    assert out[ITEMS].tolist() == raw_ids[ids].tolist()
    np.testing.assert_allclose(np.array(out[SCORES].tolist()), scores, rtol=1e-5, atol=1e-6)
