"""RLlib Learner of the GAN user model: maximum likelihood, the Shannon-entropy case of the
min-max (paper Lemma 2). The loss is `shannon_mle_loss`; its diagnostics are logged."""

from __future__ import annotations

from typing import Any

from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.typing import ModuleID, TensorType

from models.user_model.losses import shannon_mle_loss
from models.user_model.user_model_rl_module import CLICK


class UserModelLearner(TorchLearner):
    """`TorchLearner` whose loss is `models.user_model.losses.shannon_mle_loss`."""

    def compute_loss_for_module(
        self, *, module_id: ModuleID, config: Any = None, batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> TensorType:  # fmt: skip
        loss, metrics = shannon_mle_loss(fwd_out[Columns.ACTION_DIST_INPUTS], batch[CLICK])
        self.metrics.log_dict(metrics, key=module_id, reduce="mean")
        return loss
