"""A sweep study: one YAML file in ``tune_configs/`` read into a typed `StudyConfig`.

A study names what is trained (``trainable``: SASRec variants on a prepared dataset, bandit
runs against a simulator, or slate policies against a user model — `recrl.pipelines.tune.kinds`),
the settings every trial shares,
the search space, the seeds, the metric that ranks trials, the scheduler and the resources
of one trial. Variants and seeds are grid dimensions of their own, so a study of 3
variants × 5 negative counts × 3 seeds is 45 trials. Every listed value is built into the
trial's config (`TrainConfig`, `BanditRunConfig`, `SlateJob`) when the file is read, so a typo fails
before any trial runs.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from recrl.pipelines.errors import SettingError
from recrl.pipelines.sasrec.config import READER_CPUS
from recrl.pipelines.tune.kinds import KINDS, TrialKind

SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
"""``grid`` and ``choice`` take a list; the others ``[low, high]``."""


class StudyError(SettingError):
    """A study file or override is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class SearchDimension:
    """One searched setting: ``{grid: [1, 5, 10]}``, ``{loguniform: [1e-3, 1]}``..."""

    kind: Literal["grid", "choice", "uniform", "loguniform", "randint"]
    values: tuple[Any, ...]

    def tune_domain(self) -> Any:
        """The Ray Tune search-space object of this dimension."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        low, high = self.values
        return {"uniform": tune.uniform, "loguniform": tune.loguniform,
                "randint": tune.randint}[self.kind](low, high)  # fmt: skip

    def examples(self) -> list[Any]:
        """Values that validation builds a TrainConfig with (ends of a range)."""
        return list(self.values)


@dataclass(frozen=True)
class SchedulerConfig:
    """Trial scheduler: ``none`` (every trial runs its budget) or ASHA early stopping."""

    type: Literal["none", "asha"] = "none"
    grace_period: int = 1
    """ASHA: evaluations a trial gets before it can be stopped."""
    reduction_factor: float = 2.0
    """ASHA: keep the top 1/reduction_factor at each rung."""


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks the cluster for. GPU fractions let several trials share a GPU;
    on a cluster without GPUs the request is dropped (with a notice) and trials train on
    CPU."""

    cpu: float = 1.0
    gpu: float = 0.0
    data_cpu: float = READER_CPUS
    """CPUs kept free in the cluster for the trial's Ray Data reader (its pre-learner actor
    and read tasks run outside the trial's placement group); at least `READER_CPUS`."""
    custom: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources of the trial's first bundle, e.g. ``{trial_slot: 1}`` where each
    node offers one slot, to spread trials over nodes or pin them to a node type."""


@dataclass(frozen=True)
class ReportConfig:
    """How `recrl report` judges stability (design.md §7)."""

    divergence_drop: float = 0.2
    """A run has diverged when its final metric is this fraction below its own best."""
    q_blowup: float = 10.0
    """... or when |Q| exceeds this multiple of the largest possible return r_max/(1-γ)."""
    panel: str = "variant"
    """Setting whose values get a panel each in the figure (the others get a line each):
    ``variant`` for SASRec studies; for bandit studies e.g. ``env`` or ``policy``, for slate
    studies ``k`` or ``policy``."""


@dataclass(frozen=True)
class StudyConfig:
    """A Tune study (design.md §7); see the module docstring."""

    name: str
    """Sweep name: folder ``runs/sweeps/<name>`` and the parent MLflow run's name."""
    trainable: str = "sasrec"
    """What a trial runs: ``sasrec`` (`recrl train`), ``bandit`` (`recrl bandit`) or
    ``slate`` (`recrl slate`)."""
    data: str = ""
    """SASRec: the prepared dataset (``recrl prepare`` output: local path, ``s3://`` or
    ``gs://``). Bandit: the logs of a fitted simulator (ml-100k), else empty."""
    variants: tuple[str, ...] = ()
    """SASRec variants (design.md §4); a grid dimension. Bandit studies name their policies as
    a fixed or searched ``policy`` setting instead."""
    description: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Settings every trial shares (any `recrl train --set` or `recrl bandit --set` key; for
    slate studies `SlateJob` and `CDQNConfig` fields)."""
    search: dict[str, SearchDimension] = field(default_factory=dict)
    """Searched settings."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; a grid dimension (the stability curves are mean ± std over them)."""
    num_samples: int = 1
    """Draws of the random dimensions per grid point."""
    metric: str = "eval/ndcg_20_purchase"
    """Validation metric that ranks trials and that the report plots."""
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: TrialResources = field(default_factory=TrialResources)
    shared_data: bool = False
    """SASRec: the sweep's driver reads the train split once into Ray's object store and
    every trial streams it from there (`recrl.pipelines.tune.shared_split`) instead of running a
    reader of its own, so ``resources.data_cpu`` is not kept free per trial."""
    max_concurrent_trials: int | None = None
    """None: as many as the cluster's CPUs allow
    (`recrl.pipelines.tune.sweep.max_concurrent_trials`)."""
    max_failures: int = 2
    """Retries of a trial that crashed (not of one that diverged: that is a result)."""
    experiment: str = "recrl-sweeps"
    """MLflow experiment of the parent and child runs."""
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = ""
    """File the study was read from (for messages)."""

    @property
    def kind(self) -> TrialKind:
        return KINDS[self.trainable]

    def trial_settings(self, variant: str | None, seed: int, sampled: dict[str, Any]) -> Any:
        """The config of one trial (`TrainConfig` or `BanditRunConfig`)."""
        settings = {**self.fixed, **sampled, "seed": seed}
        return self.kind.build(self.data, variant, settings)

    def n_grid_points(self) -> int:
        grid = [len(d.values) for d in self.search.values() if d.kind == "grid"]
        size = max(1, len(self.variants)) * len(self.seeds)
        for n in grid:
            size *= n
        return size

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (MLflow params of the parent run, sweep.json)."""
        out = dataclasses.asdict(self)
        del out["source"]  # where it was read from, not part of the study
        out["search"] = {k: {d.kind: list(d.values)} for k, d in self.search.items()}
        return out


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read and check a study file. ``overrides`` (from ``--set``) replace top-level keys
    (``data``, ``seeds``, ``name``...) or, for any other key, a fixed training setting."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file (see tune_configs/)") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a mapping of keys (name, data, variants, ...)")
    top = {f.name for f in dataclasses.fields(StudyConfig)}
    for key, value in (overrides or {}).items():
        if key in top:
            raw[key] = value
        else:
            raw.setdefault("fixed", {})[key] = value
    return study_from_dict(raw, source=str(path))


def study_from_dict(raw: dict[str, Any], source: str = "<study>") -> StudyConfig:
    """`StudyConfig` from a parsed mapping; every error names ``source`` and the key."""
    raw = dict(raw)
    trainable = str(raw.get("trainable", "sasrec"))
    if trainable not in KINDS:
        raise StudyError(f"{source}: trainable {trainable!r} is not one of {sorted(KINDS)}")
    top = {f.name for f in dataclasses.fields(StudyConfig)} - {"source"}
    unknown = set(raw) - top
    if unknown:
        raise StudyError(f"{source}: unknown key(s) {sorted(unknown)}; known: {sorted(top)}")
    for key in KINDS[trainable].required:
        if key not in raw:
            raise StudyError(f"{source}: '{key}' is required (trainable: {trainable})")
    if trainable != "sasrec" and raw.get("variants"):
        raise StudyError(
            f"{source}: 'variants' are SASRec variants; a {trainable} study names its policy "
            "as a fixed or searched 'policy' setting"
        )
    try:
        study = StudyConfig(
            name=str(raw["name"]),
            trainable=trainable,
            data=str(raw.get("data") or ""),
            variants=tuple(_as_list(raw.get("variants") or [])),
            description=str(raw.get("description", "")),
            fixed=dict(raw.get("fixed") or {}),
            search={k: _dimension(k, v, source) for k, v in (raw.get("search") or {}).items()},
            seeds=tuple(int(s) for s in _as_list(raw.get("seeds", [0]))),
            num_samples=int(raw.get("num_samples", 1)),
            metric=str(raw.get("metric", StudyConfig.metric)),
            mode=raw.get("mode", "max"),
            scheduler=SchedulerConfig(**(raw.get("scheduler") or {})),
            resources=TrialResources(**(raw.get("resources") or {})),
            shared_data=_as_bool(raw.get("shared_data", False), "shared_data", source),
            max_concurrent_trials=raw.get("max_concurrent_trials"),
            max_failures=int(raw.get("max_failures", 2)),
            experiment=str(raw.get("experiment", StudyConfig.experiment)),
            report=ReportConfig(**(raw.get("report") or {})),
            source=source,
        )
    except TypeError as exc:  # an unknown field in a nested section
        raise StudyError(f"{source}: {exc}") from exc
    _check(study)
    return study


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, list | tuple) else [value]


def _as_bool(value: Any, key: str, source: str) -> bool:
    # bool("false") is True: a quoted value must not switch a setting on
    if not isinstance(value, bool):
        raise StudyError(f"{source}: {key} must be true or false, got {value!r}")
    return value


def _dimension(key: str, spec: Any, source: str) -> SearchDimension:
    if isinstance(spec, list):
        spec = {"grid": spec}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise StudyError(
            f"{source}: search.{key} must be one of {{kind: values}} with kind in "
            f"{SEARCH_KINDS}, e.g. {{grid: [1, 5, 10]}} or {{loguniform: [0.001, 1.0]}}"
        )
    kind, values = next(iter(spec.items()))
    if kind not in SEARCH_KINDS:
        raise StudyError(f"{source}: search.{key}: unknown kind {kind!r}; use {SEARCH_KINDS}")
    values = _as_list(values)
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not values[0] < values[1]:
            raise StudyError(f"{source}: search.{key}: {kind} needs [low, high] with low < high")
        if kind == "loguniform" and values[0] <= 0:
            raise StudyError(f"{source}: search.{key}: loguniform needs low > 0")
    elif not values:
        raise StudyError(f"{source}: search.{key}: {kind} needs at least one value")
    return SearchDimension(kind, tuple(values))


def _check(study: StudyConfig) -> None:
    source, kind = study.source, study.kind
    if study.mode not in ("max", "min"):
        raise StudyError(f"{source}: mode must be 'max' or 'min', got {study.mode!r}")
    if study.scheduler.type not in ("none", "asha"):
        raise StudyError(f"{source}: scheduler.type must be 'none' or 'asha'")
    if not study.metric.startswith(kind.metric_prefix):
        raise StudyError(
            f"{source}: metric {study.metric!r} is not reported by {kind.name} trials; use "
            f"one of their {kind.metric_prefix}… metrics, e.g. {kind.example}"
        )
    if study.shared_data and not kind.reads_dataset:
        raise StudyError(f"{source}: shared_data is for studies whose trials read a dataset "
                         "(trainable: sasrec); remove it")  # fmt: skip
    if study.resources.cpu <= 0 or study.resources.gpu < 0:
        raise StudyError(f"{source}: resources need cpu > 0 and gpu >= 0")
    if {"CPU", "GPU"} & set(study.resources.custom):
        raise StudyError(f"{source}: resources.custom may not name CPU or GPU (use cpu, gpu)")
    reserved = kind.reserved & (set(study.fixed) | set(study.search))
    if reserved:
        raise StudyError(
            f"{source}: {sorted(reserved)} are set by the study itself (seeds, data, "
            "variants, experiment keys)"
        )
    overlap = set(study.fixed) & set(study.search)
    if overlap:
        raise StudyError(f"{source}: {sorted(overlap)} are both fixed and searched")
    panel = study.report.panel
    if panel != "variant" and panel not in study.fixed and panel not in study.search:
        raise StudyError(
            f"{source}: report.panel {panel!r} is neither a fixed nor a searched setting"
        )
    # Build the config of every listed value (ends of ranges): catches unknown or invalid
    # settings and variants before a cluster is asked for anything.
    names = list(study.search)
    values = itertools.product(*(d.examples() for d in study.search.values()))
    points = [dict(zip(names, v, strict=True)) for v in values]
    for variant in study.variants or (None,):
        for point in points:
            try:
                study.trial_settings(variant, study.seeds[0], point)
            except (ValueError, TypeError) as exc:
                raise StudyError(f"{source}: {exc}") from exc
