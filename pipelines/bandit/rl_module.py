"""RLlib RLModule of a bandit policy: thin glue over ``recrl.pipelines.bandit.agent.BanditAgent``.

``model_config``: ``run`` (the ``BanditRunConfig``), ``n_users``, ``n_items`` and
``item_topics`` (or None) of the environment. The module holds one agent — the policy of
``recrl.models.bandits`` and its representation — and adds no computation of its own:

- ``forward_exploration`` (what EnvRunners call): for every observation of the batch, the
  policy's acquisition scores over the catalogue (`ACQUISITION_SCORES`, [B, I]) and the slate
  it picks (``Columns.ACTIONS``, [B, k]; RLlib's ``GetActions`` connector passes given actions
  through, so no action distribution is involved);
- ``forward_inference``: the same slate; ``forward_train``: the scores only.

State (``get_state``/``set_state``): not ``state_dict()`` — the policy's statistics
(Sherman–Morrison inverses, GLM coefficients, impression counts) and the representation's
tables are plain tensors of the agent, exported under flat keys by ``BanditAgent.get_state``.
The Learner's module is the one that learns; RLlib's weight sync (``EnvRunnerGroup
.sync_weights``) copies its state into the EnvRunners' modules after each update, so the
forward pass that reads the inverses always runs on the Learner's latest ones.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from recrl.pipelines.bandit.agent import BanditAgent

ACQUISITION_SCORES = "acquisition_scores"
"""Forward output: the policy's scores [B, I] before the first pick of the slate."""
OBS_USER, OBS_HISTORY, OBS_HISTORY_LEN = "user", "history", "history_len"
"""Keys of the environments' dict observations (``recrl.envs.synthetic_bandit``,
``recrl.envs.user_choice_env``)."""


def bandit_module_config(
    run, n_users: int, n_items: int, item_topics: np.ndarray | None = None
) -> dict[str, Any]:
    """``model_config`` of `BanditRLModule` (``run``: a ``BanditRunConfig``)."""
    topics = None if item_topics is None else np.asarray(item_topics, dtype=np.int64)
    return {"run": run, "n_users": n_users, "n_items": n_items, "item_topics": topics}


class BanditRLModule(TorchRLModule):
    """One `BanditAgent`; its forward passes are the agent's ``act``."""

    def setup(self) -> None:
        config = self.model_config
        self.agent = BanditAgent(
            config["run"], config["n_users"], config["n_items"], config.get("item_topics")
        )
        self.slate_size = config["run"].slate_size

    def _observations(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        obs = batch[Columns.OBS]
        users = torch.as_tensor(obs[OBS_USER]).reshape(-1)
        histories = torch.as_tensor(obs[OBS_HISTORY]).reshape(len(users), -1)
        lengths = torch.as_tensor(obs[OBS_HISTORY_LEN]).reshape(-1)
        return [
            {OBS_USER: int(users[row]), OBS_HISTORY: histories[row].numpy(),
             OBS_HISTORY_LEN: int(lengths[row])}
            for row in range(len(users))
        ]  # fmt: skip

    def _act(self, batch: dict[str, Any]) -> dict[str, Any]:
        scores, slates = [], []
        for observation in self._observations(batch):
            _, score, slate = self.agent.act(observation, self.slate_size, with_scores=True)
            scores.append(score[0])
            slates.append(slate[0])
        return {ACQUISITION_SCORES: torch.stack(scores), Columns.ACTIONS: torch.stack(slates)}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch)

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._act(batch)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        scores = [
            self.agent.policy.scores(self.agent.context(observation))[0]
            for observation in self._observations(batch)
        ]
        return {ACQUISITION_SCORES: torch.stack(scores)}

    def get_state(
        self,
        components: str | Collection[str] | None = None,
        *,
        not_components: str | Collection[str] | None = None,
        inference_only: bool = False,
        **kwargs,
    ) -> dict[str, Any]:
        # numpy copies: the state leaves the process (object store) or outlives this round
        return {k: torch.as_tensor(v).numpy().copy() for k, v in self.agent.get_state().items()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.agent.set_state(state)
