"""`recrl train` settings: one typed dataclass, defaults from design.md §3, §4 and §8."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.objective_config import VARIANTS, SASRecObjectiveConfig, objective_for
from recrl.models.sasrec.precision import PRECISIONS
from recrl.pipelines.errors import SettingError
from recrl.pipelines.settings import apply_settings

PRE_LEARNER_CPUS = 0.5
"""CPUs of the reader's pre-learner actor (one per learner)."""
READ_TASK_CPUS = 0.5
"""CPUs of each Ray Data read task of the training split. Both are fractional because on a
2-CPU machine whole CPUs for the reader would starve the learner."""
READER_CPUS = PRE_LEARNER_CPUS + READ_TASK_CPUS
"""What one training job's reader needs to make progress: its actor and one read task."""


@dataclass(frozen=True)
class TrainConfig:
    """Train one SASRec variant offline on prepared transitions and evaluate it (design.md §2).

    ``encoder`` and ``objective`` are the model's settings; the rest is how training runs.
    Build one with `TrainConfig.for_variant`, which applies the variant's preset.
    """

    data: str
    """Prepared dataset folder (``recrl prepare`` output with train/, val/, test/)."""
    variant: str = "sasrec_ccql"
    """One of the named presets of design.md §4
    (`recrl.models.sasrec.objective_config.VARIANTS`)."""
    encoder: SASRecConfig = field(default_factory=SASRecConfig)
    """SASRec backbone (H, L, blocks, heads, dropout)."""
    objective: SASRecObjectiveConfig = field(default_factory=SASRecObjectiveConfig)
    """Loss weights and switches; the variant's preset."""
    lr: float = 0.005
    """Adam learning rate of the first phase."""
    lr_phase2: float = 0.001
    """Learning rate after ``objective.warmup_steps`` when a phase-2 weighting is on."""
    batch_size: int = 256
    """Transitions per update (per learner)."""
    grad_clip: float | None = 5.0
    """Clip gradients by global norm; None turns clipping off."""
    total_steps: int = 4000
    """Number of gradient updates."""
    eval_interval: int = 1000
    """Evaluate on val every this many updates (and at the end)."""
    eval_max_rows: int | None = None
    """Evaluate on at most this many val rows (None: all); test always uses all rows."""
    eval_batch_size: int = 1024
    """Rows scored at once during evaluation."""
    rank_with: Literal["supervised", "q"] = "supervised"
    """Head that ranks items in evaluation (design.md §2: the CE head by default)."""
    seed: int = 0
    """Seed of parameters, negatives, augmentations and data order."""
    num_learners: int = 0
    """RLlib learner actors; 0 trains in the driver process."""
    num_gpus_per_learner: float = 0.0
    """GPUs per learner (fractions allowed); 0 trains on CPU."""
    num_cpus_per_learner: float | None = None
    """CPUs each remote learner reserves (fractions allowed); None: RLlib's choice (1 without
    GPUs, 0 with). On a 2-core machine 0.5 leaves room for the data readers."""
    custom_resources_per_learner: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each remote learner needs, e.g. ``{"learner_slot": 1}`` with one
    slot per node to put the learners on different nodes (not CPU or GPU)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Forward passes in bf16 autocast: ``auto`` on CUDA only (design.md §3), ``bf16`` everywhere
    (CPU too), ``fp32`` never. Losses are computed in float32 either way."""
    checkpoint_dir: str | None = None
    """Where checkpoints go; None: ``runs/<variant>-<time>/checkpoints``."""
    experiment: str = "recrl"
    """MLflow experiment name."""
    tracking: bool = True
    """Log to MLflow (``MLFLOW_TRACKING_URI`` or sqlite:///mlruns.db)."""
    register_model: str | None = None
    """Register the trained model (logged to the run as ``model/``, an ``mlflow.pyfunc``
    model) in MLflow's model registry under this name, a new version per job; None: log it
    only. Needs tracking."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")
        positive = ("lr", "lr_phase2", "batch_size", "total_steps", "eval_interval")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.num_learners < 0:
            raise ValueError(f"num_learners must be >= 0, got {self.num_learners}")
        if self.num_gpus_per_learner < 0:
            raise ValueError(f"num_gpus_per_learner must be >= 0, got {self.num_gpus_per_learner}")
        if self.num_gpus_per_learner > 1 and self.num_gpus_per_learner % 1:
            raise ValueError(
                f"num_gpus_per_learner={self.num_gpus_per_learner}: a learner gets a fraction "
                "of one GPU or a whole number of GPUs"
            )
        if self.num_cpus_per_learner is not None and self.num_cpus_per_learner < 0:
            raise ValueError(f"num_cpus_per_learner must be >= 0, got {self.num_cpus_per_learner}")
        reserved = {"CPU", "GPU"} & set(self.custom_resources_per_learner)
        if reserved:
            raise ValueError(
                f"custom_resources_per_learner may not name {sorted(reserved)}; use "
                "num_cpus_per_learner / num_gpus_per_learner"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.register_model is not None and not self.register_model.strip():
            raise ValueError("register_model must be a model name, or None to not register")
        if self.rank_with == "q" and not self.objective.uses_q:
            raise ValueError(f"rank_with='q' needs a Q head; variant {self.variant} has none")

    @classmethod
    def for_variant(cls, variant: str, data: str, **settings: Any) -> TrainConfig:
        """The variant's preset (`VARIANTS`) with flat settings applied on top by
        `apply_settings`: keys of the encoder or the objective may be given flat
        (``n_neg=20``, ``hidden_size=32``) or dotted (``encoder.dropout=0.2``)."""
        if variant not in VARIANTS:
            raise SettingError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        preset = cls(data=data, variant=variant, objective=objective_for(variant))
        return apply_settings(preset, settings)

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly view (``encoder.hidden_size``...), e.g. for MLflow params."""
        flat: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    if isinstance(sub_value, dict):
                        for leaf, leaf_value in sub_value.items():
                            flat[f"{key}.{sub}.{leaf}"] = leaf_value
                    else:
                        flat[f"{key}.{sub}"] = sub_value
            else:
                flat[key] = value
        return flat
