"""A trained SASRec-family model as the target policy of off-policy evaluation (design.md
§9.6): its scores for each row's candidates, from the MLflow model ``recrl train`` logs.

The model is loaded as `recrl.pipelines.sasrec.serving` saves it (``RUN_DIR/model``, or its
``runs:/`` / ``models:/`` URI), and a history becomes a state exactly as the served model
builds one: its last ``L`` items, most recent last, left-padded. Items are scored by the
head evaluation ranks with (``TrainConfig.rank_with``), through ``score_all``. Where this
departs from serving, it is to evaluate the log whole, not refuse rows: a history item the
model's catalogue lacks is left out of the state (counted), an empty history gets the
network's empty-history vector, and a candidate the model cannot score gets no score (the
target gives it no mass). Turning the scores into $\\pi$ is `TargetPolicyConfig`'s pure maths.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from recrl.models.ope.candidates import CandidateSets, Ragged
from recrl.pipelines.errors import UserError
from recrl.pipelines.sasrec.serving import MODEL_DIR, Recommender, RecommenderSpec

logger = logging.getLogger(__name__)

SCORING_ROWS = 1024
"""Rows scored per forward pass: bounds the ``[rows, I]`` score matrix of a big catalogue."""
MLFLOW_URI_SCHEMES = ("runs:/", "models:/")
"""Model locations MLflow resolves itself (a run's artifact, a registered version)."""


def load_policy_model(location: str | Path) -> Recommender:
    """The `Recommender` of an MLflow model written by ``recrl train``: its folder
    (``RUN_DIR/model``), the run folder that holds it, or a ``runs:/`` or ``models:/`` URI."""
    import mlflow.pyfunc

    location = str(location)
    if not location.startswith(MLFLOW_URI_SCHEMES):
        folder = Path(location)
        if (folder / MODEL_DIR / "MLmodel").is_file():
            folder = folder / MODEL_DIR
        if not (folder / "MLmodel").is_file():
            raise UserError(
                f"--policy-model {location}: not an MLflow model folder (no MLmodel file); give "
                f"the run folder of a tracked `recrl train` or its {MODEL_DIR}/ folder"
            )
        location = str(folder)
    model = mlflow.pyfunc.load_model(location).unwrap_python_model()
    recommender = getattr(model, "recommender", None)
    if not isinstance(recommender, Recommender):
        raise UserError(f"--policy-model {location}: not a recrl SASRec model")
    return recommender


@dataclass(frozen=True)
class CandidateScores:
    """The model's ``scores`` ``[n, C]`` (float64) of each row's candidate slots, valid
    where ``scorable`` (a real candidate in the model's catalogue); and how many history
    items, in how many rows, the model did not know (left out of the states)."""

    scores: np.ndarray
    scorable: np.ndarray
    unknown_history_items: int
    rows_with_unknown_history: int


def score_candidates(
    recommender: Recommender, history: Ragged, sets: CandidateSets
) -> CandidateScores:
    """Score every row's candidates with ``recommender``'s network (module docstring);
    the ids of ``history`` and ``sets`` must be of the type of the model's
    (`with_id_type_of`)."""
    encoded = recommender.encode(history.values) if len(history.values) else np.empty(0, int)
    state, state_len = _states(history.with_values(encoded), recommender.spec)
    unknown = encoded < 0
    model_ids = recommender.encode(np.asarray(sets.vocabulary))[np.maximum(sets.items, 0)]
    scorable = sets.mask & (model_ids >= 0)
    scores = np.full(sets.items.shape, -np.inf)
    network, head = recommender.network.eval(), recommender.spec.head
    with torch.inference_mode():
        for start in range(0, len(state), SCORING_ROWS):
            rows = slice(start, start + SCORING_ROWS)
            all_items = network.score_all(state[rows], state_len[rows], head).float()
            columns = torch.from_numpy(np.maximum(model_ids[rows], 0))
            scores[rows] = all_items.gather(1, columns).double().numpy()
    scores[~scorable] = -np.inf
    rows_with_unknown = len(np.unique(history.row_ids[unknown]))
    if unknown.any():
        logger.warning("%d history items (in %d rows) are not in the model's catalogue and "
                       "were left out of the states", unknown.sum(), rows_with_unknown)  # fmt: skip
    return CandidateScores(scores, scorable, int(unknown.sum()), rows_with_unknown)


def _states(encoded: Ragged, spec: RecommenderSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``state`` [n, L] and ``state_len`` [n] of histories of encoded ids (-1: unknown, left
    out): each row's last L known items, most recent in slot L-1, padded with ``pad_id``."""
    known = encoded.values >= 0
    kept = Ragged(encoded.values[known], np.concatenate([[0], np.cumsum(
        np.bincount(encoded.row_ids[known], minlength=len(encoded)))]))  # fmt: skip
    length = spec.state_len
    steps_back = np.repeat(kept.lengths, kept.lengths) - 1 - kept.positions
    recent = steps_back < length
    state = np.full((len(kept), length), spec.pad_id, dtype=np.int64)
    state[kept.row_ids[recent], length - 1 - steps_back[recent]] = kept.values[recent]
    return torch.from_numpy(state), torch.from_numpy(np.minimum(kept.lengths, length))


def with_id_type_of(recommender: Recommender, ids: np.ndarray) -> Recommender:
    """``recommender`` with raw ids of the type of the log's ``ids``. ``recrl prepare``
    keeps some sources' ids as strings ("100007"); a log that writes them as integers is
    matched through their decimal form, as long as every model id is one (no leading zero,
    no sign but a minus). Any other mismatch of types is refused: no id would match."""
    ours, theirs = np.asarray(ids).dtype.kind in "iu", recommender.raw_ids.dtype.kind in "iu"
    if not len(ids) or ours == theirs:
        return recommender
    raw = recommender.raw_ids
    if ours and all(isinstance(v, str) and re.fullmatch(r"-?(0|[1-9]\d*)", v) for v in raw):
        as_integers = np.array([int(v) for v in raw], dtype=np.int64)
        return Recommender(recommender.network, recommender.spec, as_integers)
    raise UserError(
        f"the log's item ids are {'integers' if ours else 'strings'}, the model's "
        f"{'integers' if theirs else 'strings'}: the log must use the raw ids of the data "
        "the model was trained on"
    )
