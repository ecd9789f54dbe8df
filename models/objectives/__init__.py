"""Pure objectives of the SASRec variants (design.md §4): tensors in, ``(value, diagnostics)`` out.

One file per family; each function's docstring names its paper and equation. Imports torch only.
"""

from recrl.models.objectives.ce import ce_loss
from recrl.models.objectives.contrastive import info_nce_loss
from recrl.models.objectives.cql import CQLActions, cql_loss
from recrl.models.objectives.negatives import sample_negatives
from recrl.models.objectives.sa2c import (
    propensity_factor,
    sa2c_advantage,
    sa2c_weights,
    sac_weights,
)
from recrl.models.objectives.td import negative_td_loss, td_loss, td_target

__all__ = [
    "CQLActions",
    "ce_loss",
    "cql_loss",
    "info_nce_loss",
    "negative_td_loss",
    "propensity_factor",
    "sa2c_advantage",
    "sa2c_weights",
    "sac_weights",
    "sample_negatives",
    "td_loss",
    "td_target",
]
