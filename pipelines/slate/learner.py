"""RLlib Learner of the slate Q-networks (`SlateQRLModule`): the shared-target TD loss.

Built on RLlib's `DQNLearner` for what it already does right: it makes the target network,
adds ``NEXT_OBS`` to batches sampled from the episode replay buffer, and after each update
moves the target towards the online network (Polyak rate ``tau`` every
``target_network_update_freq`` sampled env steps). The loss is ours:

* cascading (GAN-CDQN / RWD1): `cascading_td_loss`, every Q_j regresses
  y = r + γ·Q_k^target(s', a*'), a*' the online network's Algorithm-1 slate
  (`next_state_value`);
* additive (GAN-GDQN): `additive_td_loss` with `additive_next_value`.

A next state whose pool holds fewer than k available candidates cannot be shown another
slate: its value is 0 (the environment truncates there). A time-limit truncation is not an
end: it bootstraps.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.algorithms.dqn.dqn_learner import DQNLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.typing import ModuleID, TensorType
from recrl.models.slate.additive import additive_next_value
from recrl.models.slate.cascading import next_state_value
from recrl.models.slate.losses import additive_td_loss, cascading_td_loss
from recrl.pipelines.slate.rl_module import Q_TAKEN, SlateQRLModule


def bootstrap_value(module: SlateQRLModule, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Value of each next state at the online network's greedy slate, evaluated by the
    target network; 0 where fewer than k candidates remain. → [B], no gradient."""
    state, candidates, mask = module.observation_tensors(next_obs)
    value = state.new_zeros(state.shape[0])
    ok = mask.sum(dim=1) >= module.k
    if ok.any():
        args = (module.network, module.target_network, state[ok], candidates[ok], mask[ok])
        value[ok] = (
            next_state_value(*args)
            if module.q_form == "cascading"
            else additive_next_value(*args, module.k)
        )
    return value


class SlateQLearner(DQNLearner, TorchLearner):
    """See the module docstring."""

    def compute_loss_for_module(
        self, *, module_id: ModuleID, config: Any = None, batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> TensorType:  # fmt: skip
        module = self.module[module_id].unwrapped()
        reward = batch[Columns.REWARDS].float()
        done = batch[Columns.TERMINATEDS].float()
        next_value = bootstrap_value(module, batch[Columns.NEXT_OBS])
        loss_fn = cascading_td_loss if module.q_form == "cascading" else additive_td_loss
        loss, metrics = loss_fn(fwd_out[Q_TAKEN], reward, done, next_value, gamma=config.gamma)
        self.metrics.log_dict(metrics, key=module_id, reduce="mean")
        return loss

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        # DQNLearner also asks for QNetAPI (per-action Q-values of a discrete action), which
        # a slate action has no use for.
        return [TargetNetworkAPI]
