"""A trained slate Q-network policy as an MLflow model: a user's clicks and a candidate pool in,
a slate of k raw item ids out.

`save_slate_policy` writes an MLflow model folder (``mlflow.pyfunc`` flavour) holding what the
policy's greedy slate depends on: the Q-networks' weights with the item features f_a they read
(`recrl.pipelines.slate.rl_module`), the user model whose state s of the click history the
Q-networks were trained on (``user_model.pt``, the format of
`recrl.models.user_model.checkpoint`), the display sets' item mapping (encoded id → raw id) and
`SlatePolicySpec`. At the end of a tracked ``recrl slate`` job, `log_slate_policy` saves the
policy trained with the first of the job's seeds as ``OUT_DIR/slate_<policy>_k<k>/model``,
logs it to the run's artifacts (``model/``) and registers it when ``SlateJob.register_model``
names a registered model. Served with ``mlflow models serve --env-manager local`` where recrl
is installed (the model imports it)::

    POST /invocations
    {"dataframe_records": [{"history": [242, 302], "candidates": [51, 86, 377, 1014, 6, 12]},
                           {"history": [], "candidates": [51, 86, 377, 6, 12, 99]}]}
    -> {"predictions": [{"items": [k raw ids, in slate order], "q": [k floats]}, ...]}

(``{"inputs": [{...}, ...]}`` and ``dataframe_split`` work too.) One row is one request:

* ``history``: the user's clicked items, oldest first, in the raw ids of the log ``recrl
  usermodel build`` read. It may be empty (a user with no click yet: the simulator starts
  users at such page views too). It becomes the simulator's history exactly
  (`recrl.envs.user_model_env`): the last ``history_len`` clicks, most recent last,
  left-padded with ``pad_id``; the state is the training user model's encoding of it, as in
  `recrl.pipelines.slate.training.ModuleSlatePolicy`.
* ``candidates``: the pool to choose from, distinct raw ids, in any order. Items of the
  history are taken out of it (the simulator's rule: a clicked item leaves the pool, and
  Algorithm 1 recommends unclicked items); at least k must remain.
* ``items`` (out): the k chosen raw ids in the order the policy picks them.
* ``q`` (out): cascading Q-networks (cdqn, rwd1, offline): Q_j(s, a*_1..a*_j) of eq. 9 for
  j = 1..k, so the last is the value of the whole slate; additive (gdqn): q(s, a*_j), highest
  first, whose sum is Q(s, A).

k is the slate size the policy was trained for (the cascade has one network per position),
so a request does not choose it. Raw ids are ``long`` when every id of the display sets'
``items.parquet`` (which stores them as text) is the decimal form of an integer, else
``string``. A request with no rows, a row whose ``history`` or ``candidates`` is not a flat
list of ids, an id outside the catalogue, an empty or repeated candidate, or fewer than k
candidates outside the history raises `BadRequest` (``INVALID_PARAMETER_VALUE``): the
scoring server answers it with HTTP 400 and the message.

Only the trained Q-network policies are served. ``random`` has nothing learned to serve, and
``greedy`` (GAN-Greedy) is the user model's own utility ranking, the simulator the other
policies are evaluated against, not a policy recrl trains.
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
from recrl.models.slate.cascading import CascadingQNetwork
from recrl.models.slate.greedy import Q_FORMS, greedy_slate
from recrl.models.user_model.checkpoint import load_user_model, save_user_model
from recrl.models.user_model.network import UserModel
from recrl.pipelines.display_sets.records import ITEMS_FILE, META_FILE, RAW_ITEM_ID
from recrl.pipelines.serving import (
    MODEL_DIR,
    BadRequest,
    ItemCatalogue,
    publish_model,
    requirements,
)
from torch import Tensor

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from recrl.pipelines.slate.config import SlateJob
    from recrl.pipelines.slate.training import ModuleSlatePolicy
    from recrl.pipelines.tracking import Tracker

logger = logging.getLogger(__name__)

HISTORY = "history"
"""Input column: the user's clicked raw item ids, oldest first (may be empty)."""
CANDIDATES = "candidates"
"""Input column: the raw item ids the slate is chosen from."""
ITEMS = "items"
"""Output column: the slate, k raw item ids in the order the policy picks them."""
Q = "q"
"""Output column: the Q-values of ``items`` (see the module docstring)."""
WEIGHTS_FILE = "slate_q.pt"
"""Model artifact: the Q-networks' ``state_dict`` and the item features they read."""
USER_MODEL_FILE = "user_model.pt"
"""Model artifact: the user model that encodes a history into the policy's state."""
SPEC_FILE = "slate_policy.json"
"""Model artifact: `SlatePolicySpec` as JSON."""


@dataclass(frozen=True)
class SlatePolicySpec:
    """What rebuilds the Q-networks and lays out a request as the simulator's observation."""

    policy: str
    """``recrl slate --policy`` name the model was trained as (cdqn, rwd1, gdqn, offline)."""
    q_form: str
    """``cascading`` (Q_1..Q_k, Algorithm 1) or ``additive`` (top-k of one q)."""
    slate_size: int
    """k: items per slate."""
    n_items: int
    """Catalogue size I; encoded ids are ``0..I-1``."""
    pad_id: int
    """Id of an empty history slot or candidate (= ``n_items``)."""
    history_len: int
    """Clicks of a history the state reads: the display sets' and the user model's shorter."""
    state_dim: int
    """S: size of the user model's state."""
    item_dim: int
    """d: size of the item features f_a."""
    hidden: int
    """ℓ: hidden units of each Q-network."""
    chunk: int
    """Candidates scored per block (`CascadingQNetwork`): the same blocks as in training."""

    def __post_init__(self) -> None:
        if self.q_form not in Q_FORMS:
            raise ValueError(f"q_form must be one of {Q_FORMS}: {self.q_form!r}")

    def network(self) -> CascadingQNetwork:
        """The Q-networks of this spec, untrained."""
        levels = self.slate_size if self.q_form == "cascading" else 1
        return CascadingQNetwork(self.state_dim, self.item_dim, levels, self.hidden, self.chunk)


class SlateRecommender:
    """The greedy slate of trained slate Q-networks over raw item ids (no MLflow)."""

    def __init__(
        self,
        network: CascadingQNetwork,
        item_features: Tensor,
        state_model: UserModel,
        spec: SlatePolicySpec,
        raw_ids: np.ndarray,
    ) -> None:
        if len(raw_ids) != spec.n_items or item_features.shape[0] != spec.n_items + 1:
            raise ValueError(
                f"the item mapping has {len(raw_ids)} ids and the features "
                f"{item_features.shape[0]} rows; the model has {spec.n_items} items (+ padding)"
            )
        self.network = network.eval()
        self.item_features = item_features
        """f_a of each encoded id and a zero padding row [I + 1, d]."""
        self.state_model = state_model.eval()
        self.spec = spec
        self.catalogue = ItemCatalogue(raw_ids)

    def observations(self, histories: list[Any], pools: list[Any]) -> tuple[Tensor, Tensor, Tensor]:
        """``history`` [B, L], ``candidates`` [B, P] and ``candidate_mask`` bool [B, P] of
        raw-id requests, in the simulator's layout (`recrl.envs.user_model_env`): histories
        left-padded, most recent last; pools padded to the longest; history items masked."""
        if not histories:
            raise BadRequest("no rows in the request: send one row per user")
        k, pad, length = self.spec.slate_size, self.spec.pad_id, self.spec.history_len
        encoded: list[tuple[np.ndarray, np.ndarray]] = []
        unknown: list[str] = []
        for row, (history, pool) in enumerate(zip(histories, pools, strict=True)):
            clicks = self._encode(row, HISTORY, history, unknown)
            candidates = self._encode(row, CANDIDATES, pool, unknown)
            encoded.append((clicks, candidates))
        if unknown:
            raise BadRequest(
                f"item ids not in the model's catalogue ({self.spec.n_items} items of the "
                f"display sets it was trained on): {'; '.join(unknown[:5])}"
            )
        width = max(len(candidates) for _, candidates in encoded)
        history = np.full((len(encoded), length), pad, dtype=np.int64)
        pool = np.full((len(encoded), width), pad, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=bool)
        for row, (clicks, candidates) in enumerate(encoded):
            if len(candidates) == 0:
                raise BadRequest(f"row {row}: no candidates; give at least k={k} item ids")
            if len(np.unique(candidates)) != len(candidates):
                raise BadRequest(f"row {row}: repeated candidates; give each item once")
            recent = clicks[-length:]  # the last L clicks, most recent last
            history[row, length - len(recent) :] = recent
            pool[row, : len(candidates)] = candidates
            mask[row, : len(candidates)] = ~np.isin(candidates, clicks)
            if mask[row].sum() < k:
                raise BadRequest(
                    f"row {row}: {int(mask[row].sum())} candidates are not in the history, the "
                    f"slate needs k={k}; clicked items are not recommended again"
                )
        return torch.from_numpy(history), torch.from_numpy(pool), torch.from_numpy(mask)

    def _encode(self, row: int, column: str, value: Any, unknown: list[str]) -> np.ndarray:
        """Encoded ids of one cell; raw ids outside the catalogue go to ``unknown``."""
        if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
            raise BadRequest(f"row {row}: '{column}' must be a list of item ids, got {value!r}")
        try:
            raw = np.asarray(list(value))
        except ValueError:  # ragged nested lists
            raw = np.empty((0, 0))
        if raw.ndim != 1 or (raw.dtype == object and any(np.ndim(x) for x in raw)):
            raise BadRequest(f"row {row}: '{column}' must be a flat list of item ids")
        if raw.size and raw.dtype.kind not in "iuUSO":
            raise BadRequest(f"row {row}: item ids must be integers or strings, got {raw[:5]}")
        codes = self.catalogue.encode(raw)
        if (codes < 0).any():
            missing = ", ".join(map(repr, raw[codes < 0][:5].tolist()))
            unknown.append(f"row {row} {column}: {missing}")
        return codes

    def recommend(self, histories: list[Any], pools: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The slates, raw ids [B, k] in pick order, and their Q-values [B, k] (float32)."""
        history, candidates, mask = self.observations(histories, pools)
        with torch.inference_mode():
            state = self.state_model.encode(history)
            slots, q = greedy_slate(self.network, self.spec.q_form, state,
                                    self.item_features[candidates], mask,
                                    self.spec.slate_size)  # fmt: skip
            chosen = torch.gather(candidates, 1, slots)
        return self.catalogue.raw_ids[chosen.numpy()], q.float().numpy()


class SlatePolicyModel(mlflow.pyfunc.PythonModel):
    """The ``mlflow.pyfunc`` face of `SlateRecommender` (artifacts: `SPEC_FILE`,
    `WEIGHTS_FILE`, `USER_MODEL_FILE`, `ITEMS_FILE`; signature: `slate_signature`)."""

    def load_context(self, context) -> None:
        self.recommender = load_slate_recommender(
            context.artifacts[SPEC_FILE], context.artifacts[WEIGHTS_FILE],
            context.artifacts[USER_MODEL_FILE], context.artifacts[ITEMS_FILE],
        )  # fmt: skip

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``model_input``: a DataFrame with ``history`` and ``candidates`` columns (lists of
        raw ids); returns a DataFrame of ``items`` and ``q`` lists, one row per request."""
        columns = list(map(str, getattr(model_input, "columns", [])))
        if not isinstance(model_input, pd.DataFrame) or set(columns) != {HISTORY, CANDIDATES}:
            raise BadRequest(f"expected a table with the columns '{HISTORY}' and "
                             f"'{CANDIDATES}', got columns {columns}")  # fmt: skip
        ids, q = self.recommender.recommend(
            model_input[HISTORY].tolist(), model_input[CANDIDATES].tolist()
        )
        return pd.DataFrame({ITEMS: list(ids.tolist()), Q: list(q.tolist())})


def load_slate_recommender(
    spec_file: str | Path,
    weights_file: str | Path,
    user_model_file: str | Path,
    items_file: str | Path,
) -> SlateRecommender:
    """`SlateRecommender` from the four artifacts `save_slate_policy` writes."""
    import pyarrow.parquet as pq

    spec = SlatePolicySpec(**json.loads(Path(spec_file).read_text()))
    weights = torch.load(weights_file, map_location="cpu", weights_only=True)
    network = spec.network()
    network.load_state_dict(weights["network"])
    state_model = load_user_model(user_model_file).model
    raw_ids = pq.read_table(items_file, columns=[RAW_ITEM_ID]).column(0).to_numpy()
    return SlateRecommender(network, weights["item_features"], state_model, spec,
                            np.asarray(raw_ids))  # fmt: skip


def typed_raw_ids(text: np.ndarray) -> np.ndarray:
    """The display sets' raw ids (stored as text) as int64 when each is the decimal form of an
    integer (the log's ids were integers), else as strings (object array)."""
    text = np.asarray(text, dtype=object)
    try:
        numbers = np.array([int(x) for x in text], dtype=np.int64)
    except (ValueError, OverflowError):
        return text
    if all(str(n) == x for n, x in zip(numbers.tolist(), text, strict=True)):
        return numbers
    return text  # "007" and "7" are different ids; as integers they would collide


def slate_signature(raw_ids: np.ndarray) -> ModelSignature:
    """Input: ``history`` and ``candidates`` (arrays of ids); output: ``items`` (array of ids)
    and ``q`` (array of float). Ids are ``long`` or ``string`` (`typed_raw_ids`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    ids = DataType.long if np.asarray(raw_ids).dtype.kind in "iu" else DataType.string
    return ModelSignature(
        inputs=Schema([ColSpec(Array(ids), HISTORY), ColSpec(Array(ids), CANDIDATES)]),
        outputs=Schema([ColSpec(Array(ids), ITEMS), ColSpec(Array(DataType.float), Q)]),
    )


def save_slate_policy(
    path: str | Path,
    policy: ModuleSlatePolicy,
    *,
    dataset: str | Path,
    name: str,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the MLflow model of ``policy`` (a trained `ModuleSlatePolicy` with the user model
    it was trained with, on the display sets ``dataset``) to ``path``, a new or empty folder;
    ``name`` is its ``recrl slate --policy`` name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    module, state_model = policy.module, policy.state_model
    if state_model is None:
        raise ValueError("the policy has no state model: serve the user model it trained with")
    meta = json.loads((Path(dataset) / META_FILE).read_text())
    features = module.item_features.detach().cpu()
    n_items = int(meta["n_items"])
    if features.shape[0] != n_items + 1 or state_model.pad_id != int(meta["pad_id"]):
        raise ValueError(
            f"{dataset} has {n_items} items; the policy was trained on "
            f"{features.shape[0] - 1}: pass the display sets it trained on"
        )
    network = module.network
    spec = SlatePolicySpec(
        policy=name, q_form=module.q_form, slate_size=module.k, n_items=n_items,
        pad_id=int(meta["pad_id"]),
        history_len=min(int(meta["history_len"]), state_model.config.history_len),
        state_dim=network.state_in[0].in_features, item_dim=network.item_dim,
        hidden=network.state_in[0].out_features, chunk=network.chunk,
    )  # fmt: skip
    items = pq.read_table(Path(dataset) / ITEMS_FILE, columns=[RAW_ITEM_ID]).column(0)
    raw_ids = typed_raw_ids(items.to_numpy(zero_copy_only=False))
    with tempfile.TemporaryDirectory() as tmp:
        files = {file: str(Path(tmp) / file)
                 for file in (SPEC_FILE, WEIGHTS_FILE, USER_MODEL_FILE, ITEMS_FILE)}  # fmt: skip
        Path(files[SPEC_FILE]).write_text(json.dumps(asdict(spec), indent=2))
        weights = {key: value.detach().cpu() for key, value in network.state_dict().items()}
        torch.save({"network": weights, "item_features": features}, files[WEIGHTS_FILE])
        # the state encoder only: the file's reward network is the same one (stored once)
        save_user_model(files[USER_MODEL_FILE], state_model, state_model,
                        state_model.items.fixed.cpu().numpy())  # fmt: skip
        pq.write_table(pa.table({RAW_ITEM_ID: pa.array(raw_ids.tolist())}), files[ITEMS_FILE])
        mlflow.pyfunc.save_model(
            str(path),
            python_model=SlatePolicyModel(),
            artifacts=files,
            signature=slate_signature(raw_ids),
            input_example=pd.DataFrame(
                {
                    HISTORY: [raw_ids[:1].tolist()],
                    CANDIDATES: [raw_ids[1 : 2 + spec.slate_size].tolist()],
                }
            ),
            pip_requirements=requirements(),  # given: inferring them loads the model anew
            metadata={
                "recrl.policy": name,
                "recrl.slate_size": spec.slate_size,
                **(metadata or {}),
            },
        )
    return Path(path)


def log_slate_policy(tracker: Tracker, policy: ModuleSlatePolicy, job: SlateJob, seed: int) -> None:
    """End of a tracked ``recrl slate`` job: save ``policy`` (trained with ``seed``) as
    ``OUT_DIR/slate_<policy>_k<k>/model``, log it to the tracker's run as ``model/`` and
    register it under ``job.register_model`` when set. Nothing without tracking."""
    if not job.tracking or tracker.run_id is None:
        return
    folder = Path(job.out_dir) / f"slate_{job.policy}_k{job.k}" / MODEL_DIR

    def save(staging: Path) -> None:
        save_slate_policy(staging, policy, dataset=job.data, name=job.policy,
                          metadata={"recrl.seed": seed})  # fmt: skip

    publish_model(tracker, save, folder, job.register_model)
    tracker.set_tags({"recrl.model_seed": str(seed)})
