"""RLlib RLModule of the slate Q-networks: thin glue over `recrl.models.slate`.

Observation (a dict, `recrl.envs.user_model_env`): ``state`` float [B, S] (the frozen user
model's state), ``candidates`` int64 [B, P] item ids (padded), ``candidate_mask`` [B, P].
Action: int64 [B, k] candidate slots. ``q_form`` picks the Q-function:

* ``"cascading"`` (GAN-CDQN, RWD1): Q_1..Q_k of eq. 9, slate by Algorithm 1
  (`CascadingQNetwork.greedy_slate`);
* ``"additive"`` (GAN-GDQN): Q(s, A) = Σ_j q(s, a_j), slate = top-k of q
  (`recrl.models.slate.additive`).

Inference returns the greedy slate; exploration replaces it, per row with probability ε
(RLlib's ``epsilon`` schedule over the sampled env steps ``t``), by k distinct available
candidates drawn uniformly. The target network is made on the Learner only
(`TargetNetworkAPI`), so EnvRunners hold the online network alone (`InferenceOnlyAPI`).

``model_config``: ``item_features`` (nested lists [n_items + 1, d]: f_a of each item and a
zero padding row), ``state_dim``, ``slate_size``, ``hidden``, ``q_form``, ``epsilon``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.schedules.scheduler import Scheduler
from recrl.models.slate.additive import item_q
from recrl.models.slate.cascading import CascadingQNetwork
from recrl.models.slate.greedy import Q_FORMS, greedy_slate
from torch import Tensor

STATE, CANDIDATES, CANDIDATE_MASK = "state", "candidates", "candidate_mask"
"""Keys of the observation dict."""
Q_TAKEN = "q_taken"
"""Forward-train output: Q_j (cascading) or q(s, a_j) (additive) of the slate taken [B, k]."""


class SlateQRLModule(TorchRLModule, TargetNetworkAPI, InferenceOnlyAPI):
    """See the module docstring."""

    def setup(self) -> None:
        cfg = self.model_config
        if cfg["q_form"] not in Q_FORMS:
            raise ValueError(f"q_form must be one of {Q_FORMS}: {cfg['q_form']!r}")
        self.q_form, self.k = cfg["q_form"], int(cfg["slate_size"])
        features = torch.as_tensor(np.asarray(cfg["item_features"], dtype=np.float32))
        # A buffer, not a parameter: f_a belongs to the frozen user model, and as module
        # state it reaches the EnvRunners with the weights.
        self.register_buffer("item_features", features)
        levels = self.k if self.q_form == "cascading" else 1
        self.network = CascadingQNetwork(
            int(cfg["state_dim"]), features.shape[1], levels, int(cfg["hidden"])
        )
        self.epsilon_schedule = Scheduler(cfg.get("epsilon", 0.0), framework="torch")

    # --- slates --------------------------------------------------------------------

    def observation_tensors(self, obs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(state [B, S], candidate features [B, P, d], mask bool [B, P])."""
        return (
            obs[STATE].float(),
            self.item_features[obs[CANDIDATES].long()],
            obs[CANDIDATE_MASK].bool(),
        )

    def greedy(self, network: CascadingQNetwork, obs: dict[str, Tensor]) -> Tensor:
        """The greedy slate of ``network`` (this module's or its target) → slots [B, k]."""
        state, candidates, mask = self.observation_tensors(obs)
        return greedy_slate(network, self.q_form, state, candidates, mask, self.k)[0]

    def q_of_slate(self, obs: dict[str, Tensor], slots: Tensor) -> Tensor:
        """Q_j(s, a_1..a_j) (cascading) or q(s, a_j) (additive) of given slots → [B, k]."""
        state, candidates, _ = self.observation_tensors(obs)
        slate = torch.gather(
            candidates, 1, slots.long()[:, :, None].expand(-1, -1, candidates.shape[2])
        )
        if self.q_form == "cascading":
            return self.network.q_values(state, slate)
        return torch.stack(
            [item_q(self.network, state, slate[:, j : j + 1])[:, 0] for j in range(self.k)], 1
        )

    # --- RLModule forwards ---------------------------------------------------------

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            return {Columns.ACTIONS: self.greedy(self.network, batch[Columns.OBS])}

    def _forward_exploration(self, batch: dict[str, Any], t: int = 0, **kwargs):
        obs = batch[Columns.OBS]
        with torch.no_grad():
            greedy = self.greedy(self.network, obs)
            self.epsilon_schedule.update(t)
            epsilon = float(self.epsilon_schedule.get_current_value())
            mask = obs[CANDIDATE_MASK].bool()
            # k distinct available slots uniformly: the top-k of i.i.d. uniform keys.
            keys = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
            random = torch.topk(keys, self.k, dim=1).indices
            explore = torch.rand(mask.shape[0], device=mask.device) < epsilon
        return {Columns.ACTIONS: torch.where(explore[:, None], random, greedy)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Q_TAKEN: self.q_of_slate(batch[Columns.OBS], batch[Columns.ACTIONS])}

    # --- target network ------------------------------------------------------------

    def make_target_networks(self) -> None:
        self.target_network = make_target_network(self.network)

    def get_target_network_pairs(self):
        return [(self.network, self.target_network)]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The target network's greedy slate of ``batch[OBS]`` (the Learner evaluates the
        online network's slate with the target instead: double Q)."""
        with torch.no_grad():
            return {Columns.ACTIONS: self.greedy(self.target_network, batch[Columns.OBS])}

    def get_non_inference_attributes(self) -> list[str]:
        return ["target_network"]
