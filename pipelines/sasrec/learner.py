"""RLlib Learner of the SASRec variants: the loss is `sasrec_objective`, nothing more.

Per update (RLlib's `TorchLearner._uncompiled_update`): ``SASRecRLModule._forward_train`` →
`compute_loss_for_module` (the pure objective; its diagnostics are summed on the device) →
`compute_gradients` → `postprocess_gradients` (global norm, clipping, finiteness flag) →
`apply_gradients` (the phase's learning rate, fused Adam, the Polyak step and the update
counter of the module). Nothing in an update waits for the device: the diagnostics reach
RLlib's metrics once per ``update()`` call (`after_gradient_based_update`), as their means.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.utils.typing import ModuleID, ParamDict, TensorType
from recrl.models.sasrec.loss import sasrec_objective
from recrl.pipelines.sasrec.rl_module import (
    NEGATIVES,
    OBJECTIVE_INPUTS,
    TRAINED_NETWORK,
    SASRecRLModule,
)
from torch import Tensor

NUM_UPDATES_METRIC = "train/num_updates"
"""Gradient updates applied so far, at the end of the iteration."""
SKIPPED_METRIC = "train/skipped_updates"
"""Share of the iteration's updates whose gradients were not finite (their step was skipped)."""
TRAINED_NETWORK_METRIC = "train/trained_network"
"""Mean over the iteration of which network was trained (0/1: the twins' share)."""


class UpdateMeans:
    """Means over the updates of one ``update()`` call of per-update diagnostics, read from
    the device once.

    ``add`` stacks an update's values that live on one device into one vector and adds it
    to that device's running sum (one small kernel, no host sync); ``pop_means`` copies each
    sum to the host once. A key missing from some updates is averaged over the updates that
    had it, and a NaN value makes its mean NaN (a non-finite update must reach the trainer,
    which stops on it).
    """

    def __init__(self) -> None:
        self._sums: dict[tuple[Any, tuple[str, ...]], list[Any]] = {}

    def add(self, values: dict[str, Tensor | float]) -> None:
        groups: dict[Any, tuple[list[str], list[Any]]] = {}
        for key, value in values.items():
            device = value.device if isinstance(value, Tensor) else None
            keys, items = groups.setdefault(device, ([], []))
            keys.append(key)
            items.append(value)
        for device, (keys, items) in groups.items():
            if device is None:
                row: Any = [float(v) for v in items]
            else:
                row = torch.stack([v.detach().reshape(()).float() for v in items])
            entry = self._sums.get((device, tuple(keys)))
            if entry is None:
                self._sums[(device, tuple(keys))] = [row, 1]
                continue
            if device is None:
                entry[0] = [s + v for s, v in zip(entry[0], row, strict=True)]
            else:
                entry[0] = entry[0] + row
            entry[1] += 1

    def pop_means(self) -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        for (device, keys), (row, count) in self._sums.items():
            values = row if device is None else row.tolist()
            for key, value in zip(keys, values, strict=True):
                total = totals.setdefault(key, [0.0, 0])
                total[0] += value
                total[1] += count
        self._sums.clear()
        return {key: value / count for key, (value, count) in totals.items()}


class SASRecLearner(TorchLearner):
    """`TorchLearner` whose loss is `recrl.models.sasrec.loss.sasrec_objective` (design.md §4).

    Expects ``config.lr`` (phase 1) and ``config.lr_phase2`` (after ``warmup_steps`` when the
    objective has a phase 2) on its AlgorithmConfig, and RLlib's ``grad_clip`` with
    ``grad_clip_by="global_norm"``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._means: dict[ModuleID, UpdateMeans] = {}
        self._grad_norms: dict[tuple[ModuleID, str], Tensor] = {}
        self._found_inf: Tensor | None = None

    def sasrec_module(self, module_id: ModuleID) -> SASRecRLModule:
        """The module under ``module_id``, unwrapped from DDP when there are several learners."""
        return self.module[module_id].unwrapped()

    def configure_optimizers_for_module(self, module_id: ModuleID, config=None) -> None:
        # One Adam over the trainable parameters: both twins (each update only the trained
        # one has gradients, the other's stay None and Adam skips them), never the Polyak
        # target (requires_grad=False). The lr is set per update in `apply_gradients`, so
        # no RLlib scheduler is registered (its timesteps are env steps per iteration).
        # Fused: one kernel for all parameters, and it skips a step on the device when told
        # the gradients are not finite (`found_inf`, as AMP's GradScaler does), so a skipped
        # update needs no host sync.
        params = [p for p in self.module[module_id].parameters() if p.requires_grad]
        self.register_optimizer(
            module_id=module_id,
            optimizer=torch.optim.Adam(params, lr=config.lr, fused=True),
            params=params,
        )

    def _update_means(self, module_id: ModuleID) -> UpdateMeans:
        means = self._means.get(module_id)
        if means is None:
            means = self._means[module_id] = UpdateMeans()
        return means

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
        metrics[TRAINED_NETWORK_METRIC] = float(fwd_out[TRAINED_NETWORK])
        self._update_means(module_id).add(metrics)
        return loss

    def compute_gradients(self, loss_per_module: dict[str, TensorType], **kwargs) -> ParamDict:
        # RLlib returns `p.grad` of every registered parameter; the twin that was not trained
        # has None there, which the clipping and `apply_gradients` must not see.
        grads = super().compute_gradients(loss_per_module, **kwargs)
        return {ref: grad for ref, grad in grads.items() if grad is not None}

    def postprocess_gradients(self, gradients_dict: ParamDict) -> ParamDict:
        # Replaces RLlib's clipping (a norm, a nan_to_num and a multiply per tensor, then a
        # second norm for the finiteness test) with one foreach norm and one foreach multiply
        # per optimizer, as `torch.nn.utils.clip_grad_norm_` does. The norm, logged as
        # RLlib logs it (`train/grad_norm`: the last update's, before clipping), also gives
        # the finiteness flag that `apply_gradients` hands to Adam, on the device.
        found_inf = None
        module_ids = list(self.module.keys())  # a MultiRLModule is not iterable
        for module_id in module_ids:
            clip = self.config.get_config_for_module(module_id).grad_clip
            for name, optimizer in self.get_optimizers_for_module(module_id):
                grads = self.filter_param_dict_for_optimizer(gradients_dict, optimizer)
                grads = list(grads.values())
                if not grads:
                    continue
                norm = torch.nn.utils.get_total_norm(grads)
                if clip:
                    torch._foreach_mul_(grads, (clip / (norm + 1e-6)).clamp(max=1.0))
                self._grad_norms[(module_id, name)] = norm
                bad = ~torch.isfinite(norm)
                found_inf = bad if found_inf is None else found_inf | bad
        self._found_inf = None if found_inf is None else found_inf.float()
        return gradients_dict

    def apply_gradients(self, gradients_dict: ParamDict) -> None:
        # A non-finite update is skipped whole (no Adam step, so its moments stay clean) and
        # counted; its NaN loss reaches the iteration's mean and the trainer stops on it.
        found_inf = self._found_inf
        module_ids = list(self.module.keys())  # a MultiRLModule is not iterable
        for module_id in module_ids:
            module = self.sasrec_module(module_id)
            for _, optimizer in self.get_optimizers_for_module(module_id):
                self._set_optimizer_lr(optimizer, self._lr_at(module))
                optimizer.found_inf = found_inf
            skipped = found_inf if found_inf is not None else 0.0
            self._update_means(module_id).add({SKIPPED_METRIC: skipped})
        super().apply_gradients(gradients_dict)
        for module_id in module_ids:
            self.sasrec_module(module_id).finish_update()

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        # Once per `update()` call: the means of the per-update diagnostics (one host copy
        # per device), the last gradient norm and the update counter.
        for module_id, means in self._means.items():
            for key, value in means.pop_means().items():
                self.metrics.log_value((module_id, key), value, reduce="mean")
            num_updates = self.sasrec_module(module_id).num_updates
            self.metrics.log_value((module_id, NUM_UPDATES_METRIC), num_updates, reduce="max")
        for (module_id, name), norm in self._grad_norms.items():
            key = (module_id, f"gradients_{name}_global_norm")
            self.metrics.log_value(key, float(norm), window=1)
        self._grad_norms.clear()
        super().after_gradient_based_update(timesteps=timesteps)

    def _lr_at(self, module: SASRecRLModule) -> float:
        """``lr`` during the warm-up, ``lr_phase2`` once the objective is in phase 2 (the same
        test as `sasrec_objective`, on the same counter)."""
        objective = module.objective
        return self.config.lr_phase2 if objective.in_phase2(module.num_updates) else self.config.lr
