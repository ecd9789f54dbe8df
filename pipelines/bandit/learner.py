"""RLlib Learner of the bandit policies: owns the agent that learns.

A bandit policy's update is not a gradient step on a loss: the GLM parts refit from all
feedback so far and the design-matrix inverses take Sherman–Morrison steps (``policy.update``,
every round), and the representation refits every ``refit_interval`` rounds with its own
optimiser (``recrl.models.bandits.latent_factor`` / ``sequence_representation``). So this Learner
registers no RLlib optimiser and is driven by ``learn_rounds`` — called by
``BanditAlgorithm.training_step`` through ``LearnerGroup.foreach_learner`` — instead of
``update``; RLlib still gives it its place in the stack: one owner of the learning state, on
its own process or GPU when ``num_learners > 0``, checkpointed with the algorithm, and the
source of the EnvRunners' weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from recrl.pipelines.bandit.rl_module import BanditRLModule


class BanditLearner(TorchLearner):
    """Applies rounds of feedback to the agent of its `BanditRLModule`, in round order."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """None: the agent's parts bring their own fitting (module docstring)."""

    def compute_loss_for_module(self, *, module_id, config=None, batch, fwd_out):
        raise NotImplementedError(
            "BanditLearner has no loss: BanditAlgorithm calls learn_rounds, not update."
        )

    @property
    def bandit_module(self) -> BanditRLModule:
        return self.module[DEFAULT_MODULE_ID].unwrapped()

    def learn_rounds(self, rounds: Sequence[dict[str, Any]]) -> int:
        """Fold in ``rounds`` (each: ``observation``, ``slate`` [k], ``item_rewards`` [k],
        ``clicks`` [k]) one after another; returns the agent's round count. Each round's
        context is rebuilt from the Learner's representation, which equals the one the
        slate was picked with when the EnvRunners sync after every round."""
        agent = self.bandit_module.agent
        for row in rounds:
            agent.learn(
                row["observation"],
                torch.as_tensor(row["slate"]),
                torch.as_tensor(row["item_rewards"], dtype=torch.float32),
                torch.as_tensor(row["clicks"]),
            )
        return agent.rounds
