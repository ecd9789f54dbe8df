"""RLlib Learner of the SASRec variants: the loss is `sasrec_objective`, nothing more.

Per update (RLlib's `TorchLearner._uncompiled_update`): ``SASRecRLModule._forward_train`` →
`compute_loss_for_module` (the pure objective, every diagnostic logged) → `compute_gradients`
→ clipping by global norm (RLlib's ``grad_clip``) → `apply_gradients` (the phase's learning
rate, Adam, then the Polyak step and the update counter of the module).
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.typing import ModuleID, ParamDict, TensorType

from models.sasrec.loss import sasrec_objective
from models.sasrec.sasrec_rl_module import (
    NEGATIVES,
    OBJECTIVE_INPUTS,
    TRAINED_NETWORK,
    SASRecRLModule,
)

NUM_UPDATES_METRIC = "train/num_updates"
"""Logged each update: gradient updates applied so far (after this one)."""
SKIPPED_METRIC = "train/skipped_updates"
"""Logged each update: 1 when its gradients were not finite and the step was skipped."""
TRAINED_NETWORK_METRIC = "train/trained_network"
"""Logged each update: which network was trained (0/1; its mean is the twins' share)."""


class SASRecLearner(TorchLearner):
    """`TorchLearner` whose loss is `models.sasrec.loss.sasrec_objective` (SPEC §4).

    Expects ``config.lr`` (phase 1) and ``config.lr_phase2`` (after ``warmup_steps`` when the
    objective has a phase 2) on its AlgorithmConfig, and RLlib's ``grad_clip`` with
    ``grad_clip_by="global_norm"``.
    """

    def sasrec_module(self, module_id: ModuleID) -> SASRecRLModule:
        """The module under ``module_id``, unwrapped from DDP when there are several learners."""
        return self.module[module_id].unwrapped()

    def configure_optimizers_for_module(self, module_id: ModuleID, config=None) -> None:
        # One Adam over the trainable parameters: both twins (each update only the trained
        # one has gradients, the other's stay None and Adam skips them), never the Polyak
        # target (requires_grad=False). The lr is set per update in `apply_gradients`, so
        # no RLlib scheduler is registered (its timesteps are env steps per iteration).
        params = [p for p in self.module[module_id].parameters() if p.requires_grad]
        self.register_optimizer(
            module_id=module_id, optimizer=torch.optim.Adam(params, lr=config.lr), params=params
        )

    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: Any = None,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> TensorType:
        module = self.sasrec_module(module_id)
        loss, metrics = sasrec_objective(
            fwd_out[OBJECTIVE_INPUTS],
            batch,
            fwd_out[NEGATIVES],
            module.objective,
            step=module.num_updates,
            item_popularity=module.item_popularity,
        )
        # Every diagnostic, averaged over the updates of one `update()` call (one iteration).
        self.metrics.log_dict(metrics, key=module_id, reduce="mean")
        self.metrics.log_value(
            (module_id, TRAINED_NETWORK_METRIC), float(fwd_out[TRAINED_NETWORK]), reduce="mean"
        )
        self.metrics.log_value(
            (module_id, NUM_UPDATES_METRIC), module.num_updates + 1, reduce="max"
        )
        return loss

    def compute_gradients(self, loss_per_module: dict[str, TensorType], **kwargs) -> ParamDict:
        # RLlib returns `p.grad` of every registered parameter; the twin that was not trained
        # has None there, which its clipping tolerates but `apply_gradients` does not.
        grads = super().compute_gradients(loss_per_module, **kwargs)
        return {ref: grad for ref, grad in grads.items() if grad is not None}

    def apply_gradients(self, gradients_dict: ParamDict) -> None:
        # One finiteness check on the total norm instead of RLlib's two per tensor (~7% of
        # a CE update on CPU, a host sync per tensor on GPU; the adapter turns them off with
        # `torch_skip_nan_gradients=True`). A non-finite update is skipped whole, so Adam's
        # moments stay clean; its NaN loss is logged and the trainer stops on it.
        grads = list(gradients_dict.values())
        finite = not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        module_ids = list(self.module.keys())  # a MultiRLModule is not iterable
        for module_id in module_ids:
            module = self.sasrec_module(module_id)
            for _, optimizer in self.get_optimizers_for_module(module_id):
                self._set_optimizer_lr(optimizer, self._lr_at(module))
            self.metrics.log_value(
                (module_id, SKIPPED_METRIC), 0.0 if finite else 1.0, reduce="mean"
            )
        if finite:
            super().apply_gradients(gradients_dict)
        for module_id in module_ids:
            self.sasrec_module(module_id).finish_update()

    def _lr_at(self, module: SASRecRLModule) -> float:
        """``lr`` during the warm-up, ``lr_phase2`` once the objective is in phase 2 (the same
        test as `sasrec_objective`, on the same counter)."""
        objective = module.objective
        phase2 = objective.phase2 != "none" and module.num_updates >= objective.warmup_steps
        return self.config.lr_phase2 if phase2 else self.config.lr
