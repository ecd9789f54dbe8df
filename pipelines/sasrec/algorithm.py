"""`TrainConfig` -> an RLlib Algorithm that trains a SASRec variant on prepared transitions.

Data flow of one ``algo.train()`` (one RLlib iteration = ``updates_per_iteration`` updates):
``{data}/train`` parquet is read by Ray Data (streaming, never materialised) →
`PassThroughPreLearner` turns each Arrow batch into flat numpy columns (no episodes) →
each Learner pulls ``batch_size`` rows at a time from its shard of the stream (a local
shuffle buffer, seeded by ``TrainConfig.seed``, breaks up the session order of the files) →
``SASRecLearner.update``. The stream keeps the files' order, so the seed fixes the batches.

Two measured costs of Ray Data 2.60 shape the reader (2-CPU machine, 8 small files):
- every pass over a dataset is a new streaming execution, whose actor pool must import RLlib
  again for the pre-learner (~8 s): the input lists the train folder once per epoch the run
  needs, so one execution serves the whole run;
- the default (V2) parquet reader starts footer-reading actors on every execution (~6 s);
  the V1 reader lists and reads the same files in ~0.5 s (`ParquetOfflineData`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import (
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    OFFLINE_SAMPLING_TIMER,
    TIMERS,
)
from recrl.models import batch as B
from recrl.pipelines.checks import dataset_uri
from recrl.pipelines.prepare.stages import list_to_matrix
from recrl.pipelines.sasrec.config import PRE_LEARNER_CPUS, READ_TASK_CPUS, TrainConfig
from recrl.pipelines.sasrec.learner import NUM_UPDATES_METRIC, SASRecLearner
from recrl.pipelines.sasrec.rl_module import (
    SASRecRLModule,
    needs_item_popularity,
    sasrec_model_config,
)

TRAIN_COLUMNS = (B.STATE, B.STATE_LEN, B.ACTION, B.REWARD, B.NEXT_STATE, B.NEXT_STATE_LEN, B.DONE)
"""Columns the objectives read; the reader skips the others."""
MAX_UPDATES_PER_ITERATION = 100
"""Upper bound of the derived `updates_per_iteration`: each ``algo.train()`` has a fixed cost
(RLlib's result bookkeeping), which 100 updates amortise; fewer keep results coming often."""
SHUFFLE_BUFFER_ROWS = 250_000
"""Default local shuffle buffer: ~25 MB at L = 10, the whole train split of RC15."""


class PassThroughPreLearner(OfflinePreLearner):
    """Arrow batch of transition rows -> ``{"default_policy/<column>": ndarray}``.

    RLlib's pre-learner builds one `SingleAgentEpisode` per row and runs the learner
    connector over them (~12k rows/s); our rows already are training samples with fixed-size
    sequences, so this one only unpacks the columns (zero-copy for the int32 sequences).
    Its constructor deliberately skips the parent's, which would build an RLModule and a
    connector pipeline in every Ray Data actor for nothing.
    """

    def __init__(self, *, config: AlgorithmConfig, **kwargs: Any) -> None:
        self.config = config

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        out = {}
        for name in TRAIN_COLUMNS:
            column = batch.column(name)
            if pa.types.is_fixed_size_list(column.type):
                values = list_to_matrix(column)
            else:
                values = column.to_numpy()
            # RLlib's iterators unflatten "module/column" keys into a MultiAgentBatch.
            out[f"{DEFAULT_MODULE_ID}/{name}"] = values
        return out


class ParquetOfflineData(OfflineData):
    """RLlib's `OfflineData`, reading parquet with Ray Data's V1 datasource (see the module
    docstring for why), in file order when ``config.preserve_data_order`` is set.

    Without it, Ray Data hands the blocks on in the order its read tasks finish, so two runs
    with the same seed train on different batches. Both flags are read from the DataContext
    that a dataset copies when it is created (every later stage, the pre-learner included,
    inherits that copy), so they are switched only around that call and the caller's
    DataContext is left as it was.
    """

    def __init__(self, config: AlgorithmConfig) -> None:
        context = ray.data.DataContext.get_current()
        options = context.execution_options
        use_v2, context.use_datasource_v2 = context.use_datasource_v2, False
        ordered = options.preserve_order
        options.preserve_order = ordered or bool(getattr(config, "preserve_data_order", False))
        try:
            super().__init__(config)
        finally:
            context.use_datasource_v2 = use_v2
            options.preserve_order = ordered


class SASRecAlgorithmConfig(AlgorithmConfig):
    """RLlib settings of `SASRecAlgorithm`. Build it with `algorithm_config` from a
    `TrainConfig` (the one place where the settings are defined and documented)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or SASRecAlgorithm)
        self.lr_phase2: float | None = None
        """Learning rate after the warm-up when a phase 2 is on (`TrainConfig.lr_phase2`)."""
        # Pass-through pre-learning is cheap: stream, never materialise (RLlib's default
        # materialises the mapped data, i.e. the whole dataset in the object store).
        self.materialize_data = False
        self.materialize_mapped_data = False
        self.prelearner_class = PassThroughPreLearner
        self.offline_data_class = ParquetOfflineData
        self.preserve_data_order = True
        """Stream the offline data in file order, so that a seed fixes the batches (and a
        resumed job can continue the stream exactly). Measured on 2 CPUs it costs at most ~5 %
        of updates/s, within run-to-run noise, so it is always on."""
        # Offline only: no EnvRunners (RLlib has no public switch; MARWIL sets this too).
        self._is_online = False

    def training(self, *, lr_phase2: float | None = NotProvided, **kwargs: Any):
        super().training(**kwargs)
        if lr_phase2 is not NotProvided:
            self.lr_phase2 = lr_phase2
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=SASRecRLModule)

    def get_default_learner_class(self) -> type[SASRecLearner]:
        return SASRecLearner

    def validate(self) -> None:
        super().validate()
        if self.lr_phase2 is None:
            self._value_error("Set `config.training(lr_phase2=...)` (TrainConfig.lr_phase2).")
        if not self.dataset_num_iters_per_learner:
            self._value_error(
                "Set `config.offline_data(dataset_num_iters_per_learner=N)`: the number of "
                "updates each learner makes per `algo.train()`."
            )


class SASRecAlgorithm(Algorithm):
    """Offline training of a SASRec variant: each iteration, every learner makes
    ``dataset_num_iters_per_learner`` updates on batches streamed from the offline data."""

    _batches_to_skip = 0

    @classmethod
    def get_default_config(cls) -> SASRecAlgorithmConfig:
        return SASRecAlgorithmConfig()

    def skip_batches(self, count: int) -> None:
        """Make each learner drop the first ``count`` batches of its data stream before it
        trains: a job resumed after ``count`` updates continues where the interrupted one
        stopped. Call it before the first ``train()`` (the learners' streams are created
        then). The batches pass through the local shuffle buffer as they did the first time,
        so the stream continues exactly when the data order is deterministic
        (``preserve_data_order``, at most one learner)."""
        self._batches_to_skip = count

    def training_step(self) -> None:
        config = self.config
        with self.metrics.log_time((TIMERS, OFFLINE_SAMPLING_TIMER)):
            # Data iterators (one per learner, a `streaming_split` when there are several),
            # created once; each Learner keeps pulling from its own across iterations.
            iterators = self.offline_data.sample(
                num_samples=config.train_batch_size_per_learner,
                num_shards=config.num_learners,
                return_iterator=True,
            )
            if self._batches_to_skip:
                iterators = [SkipFirstBatches(it, self._batches_to_skip) for it in iterators]
                self._batches_to_skip = 0
        rows = (
            config.train_batch_size_per_learner
            * max(1, config.num_learners)
            * config.dataset_num_iters_per_learner
        )
        self.metrics.log_value(NUM_ENV_STEPS_SAMPLED_LIFETIME, rows, reduce="lifetime_sum")
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                training_data=TrainingData(data_iterators=iterators),
                minibatch_size=config.train_batch_size_per_learner,
                num_iters=config.dataset_num_iters_per_learner,
                **self.offline_data.iter_batches_kwargs,
            )
        self.metrics.aggregate(results, key=LEARNER_RESULTS)

    def cleanup(self) -> None:
        # Drop the learners' data streams while Ray is still up. Otherwise they are closed
        # at interpreter exit, after `ray.shutdown()`, and Ray Data prints a traceback.
        if self.learner_group is not None:
            self.learner_group.foreach_learner(_drop_data_iterator)
        super().cleanup()

    def restore_from_path(self, path, *args, **kwargs) -> None:
        # `Algorithm.restore_from_path` restores the components and then pushes the weights
        # to the EnvRunners, assuming there are some: offline there are none and RLlib 2.60
        # fails with AttributeError. Restoring the components is all there is to do.
        Checkpointable.restore_from_path(self, path, *args, **kwargs)


def _drop_data_iterator(learner) -> None:
    learner.iterator = None


class SkipFirstBatches:
    """A Ray Data iterator whose batches start ``count`` batches in (`skip_batches`).

    RLlib's Learner only calls ``iter_torch_batches`` on the iterator it is given, and once:
    it keeps the batched iterable and iterates it again at each end of the stream, so only
    the first pass drops batches. ``count`` never reaches the end of that first pass: the
    stream holds every batch of the run and one pass more (`algorithm_config`).
    """

    def __init__(self, iterator: Any, count: int) -> None:
        self.iterator = iterator
        self.count = count

    def iter_torch_batches(self, **kwargs: Any) -> _SkipFirstPass:
        return _SkipFirstPass(self.iterator.iter_torch_batches(**kwargs), self.count)


class _SkipFirstPass:
    def __init__(self, batches: Any, count: int) -> None:
        self.batches = batches
        self.count = count

    def __iter__(self):
        batches = iter(self.batches)
        count, self.count = self.count, 0
        for _ in range(count):
            if next(batches, None) is None:
                break
        return batches


def updates_per_iteration(config: TrainConfig) -> int:
    """Updates per ``algo.train()``: the largest divisor of gcd(eval_interval, total_steps)
    not above `MAX_UPDATES_PER_ITERATION`, so evaluations and the end fall on iteration ends."""
    g = math.gcd(config.eval_interval, config.total_steps)
    return max(d for d in range(1, min(g, MAX_UPDATES_PER_ITERATION) + 1) if g % d == 0)


def algorithm_config(
    config: TrainConfig,
    meta: dict[str, Any],
    *,
    iteration_updates: int | None = None,
    shuffle_buffer_rows: int | None = None,
) -> SASRecAlgorithmConfig:
    """The `SASRecAlgorithmConfig` of ``config`` on the prepared dataset described by ``meta``.

    ``iteration_updates`` overrides `updates_per_iteration`; ``shuffle_buffer_rows`` the local
    shuffle buffer (`SHUFFLE_BUFFER_ROWS`). The prepared files hold rows in session order, so
    without a large buffer a batch would be a few consecutive sessions; ``config.seed``
    seeds it.
    """
    if config.encoder.max_len != meta["L"]:
        raise ValueError(
            f"{config.data} was prepared with state length L={meta['L']} but the encoder is "
            f"configured with max_len={config.encoder.max_len}; set max_len={meta['L']} "
            "or prepare the data again with the L you want."
        )
    if meta["pad_id"] != meta["n_items"]:
        raise ValueError(f"meta.json: pad_id {meta['pad_id']} != n_items {meta['n_items']}")
    popularity = meta["item_counts_train"] if needs_item_popularity(config.objective) else None
    model_config = sasrec_model_config(
        meta["n_items"], config.encoder, config.objective, config.seed, popularity,
        precision=config.precision,
    )  # fmt: skip
    spaces = {
        "observation_space": gym.spaces.Box(0, meta["n_items"], (meta["L"],), np.int32),
        "action_space": gym.spaces.Discrete(meta["n_items"]),
    }
    batch = config.batch_size
    # One streaming execution for the whole run: the train folder once per pass needed.
    rows = config.total_steps * batch * max(1, config.num_learners)
    passes = math.ceil(rows / max(1, meta["splits"]["train"]["transitions"])) + 1
    # absolute: the read tasks run in Ray workers, whose working directory is not the caller's
    train = f"{dataset_uri(config.data).rstrip('/')}/train"
    return (
        SASRecAlgorithmConfig()
        .environment(**spaces)
        .framework(
            # Twins train one network per update and CE-only variants never touch the Q
            # head: DDP must tolerate parameters without gradients.
            torch_ddp_kwargs={"find_unused_parameters": True},
            # SASRecLearner checks the gradients once, on their total norm.
            torch_skip_nan_gradients=True,
        )
        .rl_module(model_config=model_config)
        .training(
            lr=config.lr,
            lr_phase2=config.lr_phase2,
            grad_clip=config.grad_clip,
            grad_clip_by="global_norm",
            train_batch_size_per_learner=batch,
        )
        .learners(
            num_learners=config.num_learners,
            num_gpus_per_learner=config.num_gpus_per_learner,
            num_cpus_per_learner=(
                "auto" if config.num_cpus_per_learner is None else config.num_cpus_per_learner
            ),
            custom_resources_per_learner=dict(config.custom_resources_per_learner),
        )
        .offline_data(
            input_=[train] * passes,  # a list: RLlib keeps URIs as they are
            input_read_method_kwargs={
                "columns": list(TRAIN_COLUMNS),
                "ray_remote_args": {"num_cpus": READ_TASK_CPUS},
            },
            map_batches_kwargs={
                "batch_format": "pyarrow",
                # one pre-learner actor per learner, given as `compute`: Ray Data deprecates
                # `concurrency`, which RLlib's defaults would otherwise set
                "concurrency": None,
                "compute": ActorPoolStrategy(size=max(1, config.num_learners)),
                "num_cpus": PRE_LEARNER_CPUS,
            },
            iter_batches_kwargs={
                "prefetch_batches": 2,
                "local_shuffle_buffer_size": shuffle_buffer_rows or SHUFFLE_BUFFER_ROWS,
                "local_shuffle_seed": config.seed,
            },
            dataset_num_iters_per_learner=iteration_updates or updates_per_iteration(config),
        )
        .debugging(seed=config.seed)
    )


def build_algorithm(
    config: TrainConfig,
    meta: dict[str, Any],
    *,
    configure: Callable[[SASRecAlgorithmConfig], SASRecAlgorithmConfig] | None = None,
    **kwargs: Any,
) -> SASRecAlgorithm:
    """`algorithm_config` (same keyword overrides), passed through ``configure`` if given,
    built."""
    algo_config = algorithm_config(config, meta, **kwargs)
    if configure is not None:
        algo_config = configure(algo_config)
    return algo_config.build_algo()


def learner_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Learner metrics of one ``algo.train()`` result, flat: the objective's diagnostics
    (``loss/ce``, ``q/mean``...; means over the iteration's updates), ``train/num_updates``,
    ``train/lr`` and ``train/grad_norm`` (before clipping)."""
    stats = result[LEARNER_RESULTS][DEFAULT_MODULE_ID]
    out = {key: float(value) for key, value in stats.items() if "/" in key}
    renamed = {
        "default_optimizer_learning_rate": "train/lr",
        "gradients_default_optimizer_global_norm": "train/grad_norm",
    }
    out.update({new: float(stats[old]) for old, new in renamed.items() if old in stats})
    out[NUM_UPDATES_METRIC] = int(out[NUM_UPDATES_METRIC])
    return out


def learner_placements(algo: Algorithm) -> list[dict[str, Any]]:
    """Where each learner runs and what it holds, ordered by DDP rank: ``rank``, ``node_id``
    (Ray node), ``device`` and ``weights_sha256``, a digest of the exact bytes of its module
    state (both networks, the update count). Data-parallel replicas must agree on it."""
    results = algo.learner_group.foreach_learner(_placement)
    return sorted((r.get() for r in results), key=lambda placement: placement["rank"])


def module_digest(module: SASRecRLModule) -> str:
    """SHA-256 of the exact bytes of a module's state: every tensor of its state dict (by
    name) and its update count. Equal digests mean bit-identical weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(module.num_updates).encode())
    return digest.hexdigest()


def _placement(learner) -> dict[str, Any]:
    import torch

    dist = torch.distributed
    return {
        "rank": dist.get_rank() if dist.is_available() and dist.is_initialized() else 0,
        "node_id": ray.get_runtime_context().get_node_id(),
        "device": str(learner._device),
        "weights_sha256": module_digest(learner.module[DEFAULT_MODULE_ID].unwrapped()),
    }


def learner_rng_states(algo: Algorithm) -> list[dict[str, Any]]:
    """Each learner's RNG states (torch CPU and CUDA, numpy's global, python's), by rank:
    dropout draws from torch's global generator, so a resumed job restores them."""
    results = algo.learner_group.foreach_learner(_rng_state)
    return sorted((r.get() for r in results), key=lambda state: state["rank"])


def set_learner_rng_states(algo: Algorithm, states: list[dict[str, Any]]) -> None:
    """Restore `learner_rng_states` (matched by rank; a different learner count keeps the
    states of the ranks both have)."""
    by_rank = {state["rank"]: state for state in states}
    algo.learner_group.foreach_learner(lambda learner: _set_rng_state(by_rank))


def _rank() -> int:
    import torch

    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _rng_state(learner) -> dict[str, Any]:
    import random

    import torch

    return {
        "rank": _rank(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(by_rank: dict[int, dict[str, Any]]) -> None:
    import random

    import torch

    state = by_rank.get(_rank())
    if state is None:
        return
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def scoring_network(algo: Algorithm) -> SASRecRLModule:
    """The module that evaluation scores with (``score_all(state, state_len, head)``), in
    eval mode (no dropout).

    With a local learner (``num_learners=0``) this is the live module, on the learner's
    device: evaluation must not modify it, and the next update switches it back to train
    mode. With remote learners, a CPU copy of the first learner's module.
    """
    group = algo.learner_group
    if group.is_local:
        results = group.foreach_learner(lambda learner: learner.module[DEFAULT_MODULE_ID])
        module = next(iter(results)).get().unwrapped()
    else:
        path = f"learner/rl_module/{DEFAULT_MODULE_ID}"
        state = group.get_state(components=path)["learner"]["rl_module"][DEFAULT_MODULE_ID]
        module = algo.config.get_rl_module_spec().build()
        module.set_state(state)
    return module.eval()
