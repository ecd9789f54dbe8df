"""RLlib RLModule of the SASRec variants: holds the network(s) and runs their forward passes.

Thin glue over `recrl.models.sasrec.network` (design.md §3-4). The module owns:
- ``networks[0]``: the network that serves recommendations (``score_all``, inference);
- ``networks[1]`` (only when the objective has TD terms): the second twin
  (``double_q="twin"``, SQN recipe: each update a coin flip picks which twin is trained and
  the other gives the targets) or the Polyak target of ``networks[0]`` (``double_q="target"``,
  frozen, moved by ``tau`` after every update, see `finish_update`).

All randomness of an update (the twin coin, negatives, augmentations) is a pure function of
``(seed, num_updates)`` (plus the learner's rank for negatives and augmentations), and
``num_updates`` is part of the module state, so a run resumed from a checkpoint draws exactly
what the uninterrupted run would have drawn. Dropout uses torch's global generator and is the
only exception. The coin deliberately ignores the rank: with several data-parallel learners,
every replica must train the same twin or DDP would average gradients of different networks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from recrl.models import batch as B
from recrl.models.objectives import sample_negatives
from recrl.models.sasrec.augment import AugmentConfig
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.network import ObjectiveInputs, SASRecQNetwork, objective_inputs
from recrl.models.sasrec.objective_config import SASRecObjectiveConfig
from recrl.models.sasrec.precision import autocast_dtype
from torch import Tensor, nn

OBJECTIVE_INPUTS = "objective_inputs"
"""`_forward_train` output: the `ObjectiveInputs` of the trained network."""
NEGATIVES = "negatives"
"""`_forward_train` output: sampled negative item ids [B, n_neg] (None when n_neg = 0)."""
TRAINED_NETWORK = "trained_network"
"""`_forward_train` output: index (0 or 1) of the network this update trains."""
NUM_UPDATES = "num_updates"
"""Key of the update counter in the module state (`get_state` / `set_state`)."""


def encoder_config(value: SASRecConfig | dict[str, Any]) -> SASRecConfig:
    """`SASRecConfig` from itself or from its ``dataclasses.asdict`` form."""
    return value if isinstance(value, SASRecConfig) else SASRecConfig(**value)


def objective_config(value: SASRecObjectiveConfig | dict[str, Any]) -> SASRecObjectiveConfig:
    """`SASRecObjectiveConfig` from itself or from its ``dataclasses.asdict`` form."""
    if isinstance(value, SASRecObjectiveConfig):
        return value
    augment = dict(value.get("augment", {}))
    if "methods" in augment:  # JSON turns the tuple into a list; the dataclass is frozen
        augment["methods"] = tuple(augment["methods"])
    return SASRecObjectiveConfig(**{**value, "augment": AugmentConfig(**augment)})


def sasrec_model_config(
    n_items: int,
    encoder: SASRecConfig,
    objective: SASRecObjectiveConfig,
    seed: int,
    item_popularity: list[float] | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """The ``model_config`` of `SASRecRLModule`: plain dicts, so that RLlib can copy, pickle
    and print it. ``item_popularity`` [I] (train counts) is only needed by the popularity
    negative sampler and the SA2C propensity factor; leave it out otherwise (it is large).
    ``precision`` is one of `recrl.models.sasrec.precision.PRECISIONS` (training passes only)."""
    autocast_dtype(precision, "cpu")  # fails here, not in a remote learner
    return {
        "precision": precision,
        "n_items": int(n_items),
        "encoder": dataclasses.asdict(encoder),
        "objective": dataclasses.asdict(objective),
        "seed": int(seed),
        "item_popularity": None if item_popularity is None else list(item_popularity),
    }


def needs_item_popularity(objective: SASRecObjectiveConfig) -> bool:
    """The popularity negative sampler and the SA2C propensity factor read item counts."""
    return objective.neg_sampler == "popularity" or (
        objective.phase2 == "sa2c" and objective.sa2c_smooth > 0
    )


def _rng_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from small integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, dtype=np.uint64)[0] >> 1)


class SASRecRLModule(TorchRLModule):
    """SASRec Q-network(s) behind RLlib's RLModule API (``model_config``: see
    `sasrec_model_config`; spaces are informative only: the module reads ``state`` ids).

    - ``_forward_inference`` / ``_forward_exploration``: ``action_dist_inputs`` = supervised
      logits [B, I] of ``networks[0]`` (a categorical policy over items).
    - ``_forward_train``: picks the trained network, runs `objective_inputs` and samples the
      negatives; the Learner turns that into the loss with `sasrec_objective`.
    - ``score_all(state, state_len, head)``: full-ranking scores for evaluation (design.md §2).
    """

    def setup(self) -> None:
        config = self.model_config
        self.n_items = int(config["n_items"])
        self.encoder_config = encoder_config(config["encoder"])
        self.objective = objective_config(config["objective"])
        self.seed = int(config.get("seed", 0))
        self.precision = str(config.get("precision", "auto"))
        autocast_dtype(self.precision, "cpu")  # validates the name
        self.num_updates = 0
        """Gradient updates applied so far (the objective's ``step``); saved with the state."""
        popularity = config.get("item_popularity")
        if needs_item_popularity(self.objective) and popularity is None:
            raise ValueError(
                "neg_sampler='popularity' and the SA2C propensity factor need item counts: "
                "pass item_popularity (meta['item_counts_train']) to sasrec_model_config."
            )
        if popularity is not None and len(popularity) != self.n_items:
            raise ValueError(f"item_popularity has {len(popularity)} entries, not {self.n_items}")
        # Not persistent: it is data from meta.json, not a learned weight.
        pop = None if popularity is None else torch.as_tensor(popularity, dtype=torch.float32)
        self.register_buffer("item_popularity", pop, persistent=False)

        # Initialise from `seed` alone, whatever the global RNG state (same weights on every
        # learner and in every rebuild of the module); the twins get different draws.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            nets = [SASRecQNetwork(self.n_items, self.encoder_config)]
            if self.objective.td_weight > 0:
                nets.append(SASRecQNetwork(self.n_items, self.encoder_config))
        self.networks = nn.ModuleList(nets)
        if self.uses_target:
            self.networks[1].load_state_dict(self.networks[0].state_dict())
            self.networks[1].requires_grad_(False)  # never in the optimizer nor in DDP
        self._sampler: torch.Generator | None = None
        self._rank: int | None = None

    @property
    def uses_target(self) -> bool:
        """True when ``networks[1]`` is a Polyak target (not a trained twin)."""
        return len(self.networks) == 2 and self.objective.double_q == "target"

    # --- inference --------------------------------------------------------------------

    def score_all(self, state: Tensor, state_len: Tensor, head: str = "supervised") -> Tensor:
        """Scores of every item [B, I] by ``networks[0]`` (``head``: supervised or q)."""
        return self.networks[0].score_all(state.long(), state_len.long(), head)

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        state = torch.as_tensor(batch[B.STATE] if B.STATE in batch else batch[Columns.OBS])
        if B.STATE_LEN in batch:
            state_len = torch.as_tensor(batch[B.STATE_LEN])
        else:  # left-padded ids: the real items are the non-pad ones
            state_len = (state != self.n_items).sum(dim=-1)
        with torch.no_grad():
            return {Columns.ACTION_DIST_INPUTS: self.score_all(state, state_len)}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward_inference(batch, **kwargs)

    # --- training ---------------------------------------------------------------------

    def trained_index(self, step: int) -> int:
        """Network trained at update ``step``: the twin coin flip, or 0 (online network)."""
        if len(self.networks) == 1 or self.uses_target:
            return 0
        return int(np.random.default_rng(_rng_seed(self.seed, step)).random() < 0.5)

    def _generator(self, device: torch.device, step: int) -> torch.Generator:
        if self._sampler is None or self._sampler.device != device:
            self._sampler = torch.Generator(device=device)
        if self._rank is None:
            dist = torch.distributed
            self._rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        return self._sampler.manual_seed(_rng_seed(self.seed, step, self._rank + 1))

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        step = self.num_updates
        index = self.trained_index(step)
        trained = self.networks[index]
        other = self.networks[1 - index] if len(self.networks) == 2 else None
        device = batch[B.STATE].device
        generator = self._generator(device, step)
        # bf16 autocast on GPU by default (design.md §3); the objectives compute their losses in
        # float32 whatever the dtype of these outputs.
        dtype = autocast_dtype(self.precision, device.type)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            inputs: ObjectiveInputs = objective_inputs(
                trained, other, batch, self.objective, generator
            )
        negatives = None
        if self.objective.n_neg > 0:
            pop = self.item_popularity if self.objective.neg_sampler == "popularity" else None
            exclude = batch[B.STATE] if self.objective.neg_exclude == "state" else None
            negatives = sample_negatives(
                batch[B.ACTION], self.n_items, self.objective.n_neg, generator, pop,
                exclude=exclude,
            )  # fmt: skip
        return {OBJECTIVE_INPUTS: inputs, NEGATIVES: negatives, TRAINED_NETWORK: index}

    @torch.no_grad()
    def finish_update(self) -> None:
        """After each gradient update: move the target by ``tau`` toward the online network
        (``θ' ← (1 − τ)·θ' + τ·θ``, target mode only) and count the update."""
        if self.uses_target:
            # One foreach kernel for all tensors instead of a launch per tensor.
            target = list(self.networks[1].parameters())
            torch._foreach_lerp_(target, list(self.networks[0].parameters()), self.objective.tau)
        self.num_updates += 1

    # --- state ------------------------------------------------------------------------

    def get_state(self, *args, **kwargs) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[NUM_UPDATES] = np.int64(self.num_updates)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if NUM_UPDATES in state:
            self.num_updates = int(state.pop(NUM_UPDATES))
        super().set_state(state)
