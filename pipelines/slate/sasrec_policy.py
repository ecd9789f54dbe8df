"""A SASRec-family model trained offline (``recrl train``) as a slate policy of the
simulated user (`recrl.envs.user_model_env`): its top-k over the environment's candidate
pool, given the user's click history.

The two sides number items differently. The display sets (``recrl usermodel build``) and a
prepared dataset (``recrl prepare``) each label-encode the items of their own log, and both
keep the raw ids in ``items.parquet``; a model trained on MovieLens ratings serves a user
model built from the same ratings through those raw ids. `display_to_model_ids` joins the
two tables once, so a step costs one lookup per history and pool slot:

* the history (display-set ids, most recent last, left-padded) becomes a state exactly as
  ``recrl prepare`` lays one out and the served model builds one
  (`recrl.pipelines.sasrec.serving.Recommender.states`): its last ``L`` items the model
  knows, most recent last, left-padded with the model's ``pad_id``. A history item the
  model never saw (an item only the held-out users rated, say) is left out, as off-policy
  evaluation does (`recrl.pipelines.ope.sasrec_policy`); an empty history gets the
  network's empty-history vector;
* the pool is scored by the head evaluation ranks with (``TrainConfig.rank_with``) through
  ``score_all``, the call offline evaluation and serving score with, and the slate is the
  k available candidates of highest score, best first (`top_k_slots`). A candidate the model
  cannot score ranks below every scorable one, so the policy still shows k items.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from recrl.pipelines.display_sets.records import ITEM, ITEMS_FILE, RAW_ITEM_ID
from recrl.pipelines.ope.sasrec_policy import load_policy_model
from recrl.pipelines.sasrec.serving import Recommender

logger = logging.getLogger(__name__)

UNKNOWN = -1
"""Model id of a display-set item the model has no row for (and of the display padding)."""


def display_raw_ids(display_sets: str | Path) -> np.ndarray:
    """Raw id of each display-set item, indexed by its encoded id (``items.parquet``)."""
    table = pq.read_table(Path(display_sets) / ITEMS_FILE, columns=[ITEM, RAW_ITEM_ID])
    encoded = table.column(ITEM).to_numpy()
    raw = np.asarray(table.column(RAW_ITEM_ID).to_numpy(zero_copy_only=False))
    out = np.empty(len(raw), dtype=raw.dtype)
    out[encoded] = raw
    if not np.array_equal(np.sort(encoded), np.arange(len(raw))):
        raise ValueError(f"{display_sets}/{ITEMS_FILE}: item ids are not 0..{len(raw) - 1}")
    return out


def display_to_model_ids(display_raw: np.ndarray, model_raw: np.ndarray) -> np.ndarray:
    """int64 [n + 1]: the model's encoded id of display-set item ``i`` (raw id
    ``display_raw[i]``) at row ``i``, `UNKNOWN` where the model (raw id of encoded id ``j``:
    ``model_raw[j]``) lacks the item; the last row (the display sets' ``pad_id`` = n) is
    `UNKNOWN` too, so a padded history or pool slot maps to "no item".

    The two tables may type the same ids differently: the display sets keep MovieLens ids
    as strings ("42"), ``recrl prepare`` as integers (42). Then the integers are matched by
    their decimal form, so "42" finds 42 and "042" finds nothing."""
    display_raw, model_raw = np.asarray(display_raw), np.asarray(model_raw)
    if (display_raw.dtype.kind in "iu") != (model_raw.dtype.kind in "iu"):
        display_raw, model_raw = display_raw.astype(str), model_raw.astype(str)
    index = {raw: j for j, raw in enumerate(model_raw.tolist())}
    ids = [index.get(raw, UNKNOWN) for raw in display_raw.tolist()]
    return np.array([*ids, UNKNOWN], dtype=np.int64)


def history_state(history: np.ndarray, length: int, pad_id: int) -> tuple[np.ndarray, int]:
    """``state`` int64 [L] and ``state_len`` of one history of model ids (`UNKNOWN` slots
    dropped, order kept): its last ``length`` known items, most recent last, left-padded
    with ``pad_id`` — the layout of a prepared transition's state."""
    known = history[history != UNKNOWN][-length:] if length else history[:0]
    state = np.full(length, pad_id, dtype=np.int64)
    state[length - len(known) :] = known
    return state, len(known)


def top_k_slots(scores: np.ndarray, available: np.ndarray, k: int) -> np.ndarray:
    """int64 [k]: the ``k`` available slots of highest score, best first; ties (and the
    -inf of unscorable candidates) keep slot order. Fewer than ``k`` available slots is an
    error: the environment ends a visit before its pool runs that low."""
    slots = np.flatnonzero(available)
    if len(slots) < k:
        raise ValueError(f"{len(slots)} available candidates, fewer than k={k}")
    order = np.argsort(-scores[slots], kind="stable")
    return slots[order[:k]].astype(np.int64)


class SASRecSlatePolicy:
    """``select(obs) -> int64 [k]``: the model's top-k of the observation's available
    candidates (module docstring). ``to_model`` is `display_to_model_ids`."""

    def __init__(self, recommender: Recommender, to_model: np.ndarray, k: int) -> None:
        self.recommender, self.to_model, self.k = recommender, to_model, k
        self.network = recommender.network.eval()

    @classmethod
    def load(cls, model: str | Path, display_sets: str | Path, k: int) -> SASRecSlatePolicy:
        """The policy of a ``recrl train`` run folder (or its ``model/``, or an MLflow model
        URI) on the display sets in ``display_sets``; logs how many of their items the model
        cannot score."""
        recommender = load_policy_model(model)
        to_model = display_to_model_ids(display_raw_ids(display_sets), recommender.raw_ids)
        unknown = int((to_model[:-1] == UNKNOWN).sum())
        logger.info("%s: %d of %d display-set items unknown to the model (ranked last)",
                    model, unknown, len(to_model) - 1)  # fmt: skip
        return cls(recommender, to_model, k)

    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """float64 [P]: the model's score of each pool slot, -inf where it has no item."""
        spec = self.recommender.spec
        state, state_len = history_state(self.to_model[obs["history"]], spec.state_len,
                                         spec.pad_id)  # fmt: skip
        candidates = self.to_model[obs["candidates"]]
        with torch.inference_mode():
            scored = self.network.score_all(
                torch.from_numpy(state)[None, :], torch.tensor([state_len]), spec.head
            )
        all_items = scored[0].double().numpy()
        return np.where(candidates != UNKNOWN, all_items[np.maximum(candidates, 0)], -np.inf)

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return top_k_slots(self.scores(obs), obs["candidate_mask"].astype(bool), self.k)
