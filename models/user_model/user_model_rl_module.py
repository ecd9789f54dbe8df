"""RLlib RLModule of the GAN user model: thin glue over `models.user_model.network`.

``model_config``: ``user_model`` (the `UserModelConfig` as a dict) and ``item_features``
(nested lists [n_items + 1, F]). Batch columns: `HISTORY`, `SHOWN`, `SHOWN_MASK`, `CLICK`;
the forward pass returns the choice logits η·u with the no-click column last, as RLlib's
``action_dist_inputs`` (a categorical over the K slots + no-click).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from models.user_model.config import UserModelConfig
from models.user_model.network import UserModel

HISTORY, SHOWN, SHOWN_MASK, CLICK = "history", "shown", "shown_mask", "click"
"""Batch columns (int64 [B, m], int64 [B, K], bool [B, K], int64 [B] slot or -1)."""


def user_model_config(config: UserModelConfig, item_features: np.ndarray) -> dict[str, Any]:
    """``model_config`` of `UserModelRLModule` as plain data RLlib can copy and pickle."""
    return {
        "user_model": dataclasses.asdict(config),
        "item_features": np.asarray(item_features, dtype=np.float32).tolist(),
    }


class UserModelRLModule(TorchRLModule):
    """Holds one `UserModel` (φ, whose utility is the reward r under Lemma 2)."""

    def setup(self) -> None:
        features = np.asarray(self.model_config["item_features"], dtype=np.float32)
        self.network = UserModel(features, UserModelConfig(**self.model_config["user_model"]))

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        logits = self.network.choice_logits(batch[HISTORY], batch[SHOWN], batch[SHOWN_MASK])
        return {Columns.ACTION_DIST_INPUTS: logits}
