"""A trained SASRec policy as an MLflow model: raw-id histories in, top-k raw ids out.

`save_recommender` writes an MLflow model folder (``mlflow.pyfunc`` flavour) that holds the
scoring network's weights, the dataset's item mapping (``items.parquet``: encoded id → raw
id) and the state layout (``L``, ``pad_id``). At the end of ``recrl train`` (with tracking
on), `log_recommender` saves it as ``RUN_DIR/model``, logs it to the run's artifacts
(``model/``) and, when ``TrainConfig.register_model`` names one, registers it as a new
version of that registered model. It loads with ``mlflow.pyfunc.load_model`` (predict on a
DataFrame with a ``history`` column) and serves with ``mlflow models serve --env-manager
local`` run where recrl is installed (the model imports it)::

    POST /invocations
    {"dataframe_records": [{"history": [214536502, 214536500]}, {"history": [214577561]}],
     "params": {"k": 5}}
    -> {"predictions": [{"items": [5 raw ids, best first], "scores": [5 floats]}, ...]}

(``{"inputs": [{"history": [...]}, ...]}`` and ``dataframe_split`` work too; MLflow's
column form ``{"inputs": {"history": [[...], [...]]}}`` does not, for a column of lists.)

A history is a session's items, oldest first, in the raw ids of the log ``recrl prepare``
read. It becomes a state exactly as prepare builds one (`recrl.pipelines.prepare.windows`):
the last ``L`` items, most recent last, left-padded with ``pad_id``. Items are ranked by
the head evaluation ranks with (``TrainConfig.rank_with``) through the network's
``score_all``, the call `recrl.pipelines.evaluation` scores states with, so the top-k is
the one recrl's evaluation ranks. A request with an item id outside the catalogue, an empty
history, a history that is not a flat list of ids or a ``k`` outside ``[1, n_items]`` raises
`MlflowException` with ``INVALID_PARAMETER_VALUE``: the scoring server answers it with HTTP
400 and the message.

This module talks to MLflow for the model format only; the run it logs into is the
`recrl.pipelines.tracking.Tracker`'s, through its public methods.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.network import SASRecQNetwork
from recrl.pipelines.serving import (
    MODEL_DIR,
    BadRequest,
    ItemCatalogue,
    publish_model,
    requirements,
)

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.tracking import Tracker

logger = logging.getLogger(__name__)

HISTORY = "history"
"""Input column: one history per row, a list of raw item ids, oldest first."""
ITEMS = "items"
"""Output column: the top-k raw item ids of each row, best first."""
SCORES = "scores"
"""Output column: the scores of ``items`` (the ranking head's logits), highest first."""
TOP_K = "k"
"""Request parameter: how many items to return per history."""
DEFAULT_TOP_K = 10
"""``k`` when a request does not give it."""
RAW_ITEM_ID = "raw_item_id"
"""Column of the dataset's ``items.parquet`` that holds the raw id of encoded id = row."""
ITEMS_FILE = "items.parquet"
"""The dataset's item mapping (`recrl.pipelines.prepare.output`), copied into the model."""
WEIGHTS_FILE = "network.pt"
"""Model artifact: the scoring network's ``state_dict`` (CPU tensors)."""
SPEC_FILE = "recommender.json"
"""Model artifact: `RecommenderSpec` as JSON."""


@dataclass(frozen=True)
class RecommenderSpec:
    """What rebuilds the scoring network and its state layout."""

    n_items: int
    """Catalogue size I; encoded ids are ``0..I-1``."""
    pad_id: int
    """Id of an empty state slot (``meta.json`` ``pad_id``, = ``n_items``)."""
    encoder: dict[str, Any]
    """`SASRecConfig` as a dict; its ``max_len`` is the state length L."""
    head: str
    """Head that ranks items (``supervised`` or ``q``), as in evaluation."""

    @property
    def state_len(self) -> int:
        return int(self.encoder["max_len"])


class Recommender:
    """Top-k recommendation of a SASRec scoring network over raw item ids (no MLflow)."""

    def __init__(self, network: SASRecQNetwork, spec: RecommenderSpec, raw_ids: np.ndarray):
        if len(raw_ids) != spec.n_items:
            raise ValueError(f"the item mapping has {len(raw_ids)} ids, the model {spec.n_items}")
        self.network = network.eval()
        self.spec = spec
        self.catalogue = ItemCatalogue(raw_ids)
        self.raw_ids = raw_ids
        """Raw id of each encoded id [I]."""

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Encoded ids of the raw ids ``raw`` [N]; -1 where an id is not in the catalogue."""
        return self.catalogue.encode(raw)

    def states(self, histories: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``state`` [B, L] and ``state_len`` [B] of raw-id histories, laid out as
        `recrl.pipelines.prepare.windows.build_windows` lays out a transition's state."""
        length, pad = self.spec.state_len, self.spec.pad_id
        state = np.full((len(histories), length), pad, dtype=np.int64)
        state_len = np.zeros(len(histories), dtype=np.int64)
        unknown: list[str] = []
        for row, history in enumerate(histories):
            raw = self._ids(row, history)
            encoded = self.catalogue.encode(raw)
            missing = raw[encoded < 0]
            if len(missing):
                unknown.append(f"row {row}: {', '.join(map(repr, missing[:5].tolist()))}")
                continue
            recent = encoded[-length:]  # the last L items, most recent last
            state[row, length - len(recent) :] = recent
            state_len[row] = len(recent)
        if unknown:
            raise BadRequest(
                f"item ids not in the model's catalogue ({self.spec.n_items} items of the "
                f"dataset it was trained on): {'; '.join(unknown[:5])}"
            )
        return torch.from_numpy(state), torch.from_numpy(state_len)

    def _ids(self, row: int, history: Any) -> np.ndarray:
        if isinstance(history, str | bytes) or not hasattr(history, "__len__"):
            raise BadRequest(
                f"row {row}: '{HISTORY}' must be a list of item ids, got {history!r}; send "
                f'{{"inputs": {{"{HISTORY}": [[id, id, ...], ...]}}}}'
            )
        try:
            raw = np.asarray(list(history))
        except ValueError:  # ragged nested lists
            raw = np.empty((0, 0))
        if raw.ndim != 1 or (raw.dtype == object and any(np.ndim(x) for x in raw)):
            raise BadRequest(
                f"row {row}: '{HISTORY}' must be a flat list of item ids (one history per "
                "row), got nested lists"
            )
        if raw.size == 0:
            raise BadRequest(
                f"row {row}: empty history; give at least one item id (the session so far)"
            )
        if raw.dtype.kind == "f":
            raise BadRequest(f"row {row}: item ids must be integers or strings, got {raw[:5]}")
        return raw

    def recommend(self, histories: list[Any], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` raw ids [B, k] and their scores [B, k] (float32), best first."""
        if not histories:
            raise BadRequest("no histories in the request: send one row per history")
        if not 1 <= k <= self.spec.n_items:
            raise BadRequest(f"{TOP_K} must be in [1, {self.spec.n_items}], got {k}")
        state, state_len = self.states(histories)
        with torch.inference_mode():
            scores = self.network.score_all(state, state_len, self.spec.head)
            top = torch.topk(scores.float(), k, dim=1)
        return self.raw_ids[top.indices.numpy()], top.values.numpy()


class SASRecRecommender(mlflow.pyfunc.PythonModel):
    """The ``mlflow.pyfunc`` face of `Recommender` (artifacts: `SPEC_FILE`, `WEIGHTS_FILE`,
    `ITEMS_FILE`; signature: `recommender_signature`)."""

    def load_context(self, context) -> None:
        self.recommender = load_recommender(
            context.artifacts[SPEC_FILE], context.artifacts[WEIGHTS_FILE],
            context.artifacts[ITEMS_FILE],
        )  # fmt: skip

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``model_input``: a DataFrame with a ``history`` column (one list of raw ids per
        row); returns a DataFrame of ``items`` and ``scores`` lists, one row per history."""
        k = (params or {}).get(TOP_K)
        k = DEFAULT_TOP_K if k is None else int(k)
        ids, scores = self.recommender.recommend(_histories(model_input), k)
        return pd.DataFrame({ITEMS: list(ids.tolist()), SCORES: list(scores.tolist())})


def _histories(model_input: Any) -> list[Any]:
    """The histories of a request (MLflow's schema enforcement makes it a DataFrame)."""
    if not isinstance(model_input, pd.DataFrame) or list(model_input.columns) != [HISTORY]:
        columns = list(map(str, getattr(model_input, "columns", [])))
        raise BadRequest(f"expected a table with one column '{HISTORY}', got columns {columns}")
    return model_input[HISTORY].tolist()


def load_recommender(spec_file: str | Path, weights_file: str | Path, items_file: str | Path):
    """`Recommender` from the three artifacts `save_recommender` writes."""
    import pyarrow.parquet as pq

    spec = RecommenderSpec(**json.loads(Path(spec_file).read_text()))
    network = SASRecQNetwork(spec.n_items, SASRecConfig(**spec.encoder))
    network.load_state_dict(torch.load(weights_file, map_location="cpu", weights_only=True))
    raw_ids = pq.read_table(items_file, columns=[RAW_ITEM_ID]).column(0).to_numpy()
    return Recommender(network, spec, np.asarray(raw_ids))


def recommender_signature(raw_ids: np.ndarray) -> ModelSignature:
    """Input: ``history`` (array of ids); output: ``items`` (array of ids) and ``scores``
    (array of float); parameter ``k``. Ids are ``long`` or ``string``, as the log's were."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, ParamSchema, ParamSpec, Schema

    ids = DataType.long if np.asarray(raw_ids).dtype.kind in "iu" else DataType.string
    return ModelSignature(
        inputs=Schema([ColSpec(Array(ids), HISTORY)]),
        outputs=Schema([ColSpec(Array(ids), ITEMS), ColSpec(Array(DataType.float), SCORES)]),
        params=ParamSchema([ParamSpec(TOP_K, DataType.long, DEFAULT_TOP_K)]),
    )


def save_recommender(
    path: str | Path, network: SASRecQNetwork, *, dataset: str | Path, head: str = "supervised"
) -> Path:
    """Write the MLflow model of ``network`` (trained on the prepared ``dataset``) to the new
    folder ``path``; ``head`` ranks the items (``TrainConfig.rank_with``)."""
    import pyarrow.parquet as pq
    from recrl.pipelines.prepare.meta import read_meta
    from recrl.pipelines.prepare.reading import resolve_filesystem

    meta = read_meta(str(dataset))
    config = network.encoder.config
    if int(meta["L"]) != config.max_len or int(meta["n_items"]) != network.encoder.n_items:
        raise ValueError(
            f"{dataset} has L={meta['L']}, {meta['n_items']} items; the network was built for "
            f"L={config.max_len}, {network.encoder.n_items} items: pass the dataset it trained on"
        )
    spec = RecommenderSpec(n_items=int(meta["n_items"]), pad_id=int(meta["pad_id"]),
                           encoder=asdict(config), head=head)  # fmt: skip
    fs, root = resolve_filesystem(str(dataset))
    items = pq.read_table(f"{root.rstrip('/')}/{ITEMS_FILE}", columns=[RAW_ITEM_ID], filesystem=fs)
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: str(Path(tmp) / name) for name in (SPEC_FILE, WEIGHTS_FILE, ITEMS_FILE)}
        Path(files[SPEC_FILE]).write_text(json.dumps(asdict(spec), indent=2))
        weights = {name: value.detach().cpu() for name, value in network.state_dict().items()}
        torch.save(weights, files[WEIGHTS_FILE])
        pq.write_table(items, files[ITEMS_FILE])
        mlflow.pyfunc.save_model(
            str(path),
            python_model=SASRecRecommender(),
            artifacts=files,
            signature=recommender_signature(items.column(0).to_numpy()),
            input_example=pd.DataFrame({HISTORY: [items.column(0).slice(0, 2).to_pylist()]}),
            pip_requirements=requirements(),  # given: inferring them loads the model anew
            metadata={"recrl.dataset_id": meta.get("dataset_id"), "recrl.head": head},
        )
    return Path(path)


def log_recommender(tracker: Tracker, module: Any, config: TrainConfig, run_dir: Path) -> None:
    """End of ``recrl train``: save the model of ``module`` (the job's scoring RLModule) as
    ``run_dir/model``, log it to the tracker's run and register it under
    ``config.register_model`` when set. Nothing without tracking."""
    if not config.tracking or tracker.run_id is None:
        return

    def save(staging: Path) -> None:
        save_recommender(staging, module.networks[0], dataset=config.data, head=config.rank_with)

    publish_model(tracker, save, run_dir / MODEL_DIR, config.register_model)
