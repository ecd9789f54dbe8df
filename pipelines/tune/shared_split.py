"""The train split of a sweep's dataset, read once by the sweep's driver and shared by its
trials through Ray's object store.

Without it, every SASRec trial runs a reader of its own: Ray Data read tasks that parse the
parquet files and a pre-learner actor that turns the Arrow rows into the learner's numpy
columns (`recrl.pipelines.sasrec.algorithm.PassThroughPreLearner`). Thirty trials on one
machine then read the same files thirty times, start thirty pre-learner actors (each
imports RLlib, ~8 s of CPU) and need CPUs kept free for all of them (``data_cpu``), which
is what limits how many trials fit on a node.

Here the driver reads each train file once, applies the same conversion the pre-learner
applies, and puts the result into the object store as Arrow blocks (one per file, in the
order of ``meta.json``), with their Ray Data metadata. A trial (`trial_reads_shared_split`)
builds its training stream from those blocks (`SharedOfflineData`: a materialised dataset,
the blocks repeated once per pass as the file list is, marked as already mapped, so RLlib's
reader runs no pre-learner): no read tasks, no actor, no reserved CPUs, and — unlike
``ray.data.from_arrow_refs`` — no metadata tasks either (those would queue for the one CPU
that 30 trials leave free). Trials on the driver's node read the blocks from shared memory
without a copy; a trial on another node pulls each block into its node's store, where the
other trials of that node find it while it is in use — once per node, as far as Ray's
object store keeps the copies (under memory pressure it may evict and pull again).

The blocks are owned by the sweep's driver: they live as long as it does, and a resumed
sweep shares them again. The row stream is the one a trial's own reader makes (the files in
order, once per pass); only the block boundaries differ, so a trial's batches may differ
from an unshared run of the same seed.
"""

from __future__ import annotations

import logging
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

logger = logging.getLogger(__name__)

INPUT_SCHEME = "shared-train-split://"
"""``input_`` of a trial's RLlib config when it streams a shared split: one entry per pass,
naming the split in `_TRIAL_SPLITS` (the object refs themselves stay out of the config,
which RLlib writes into every checkpoint)."""
_TRIAL_SPLITS: dict[str, SharedTrainSplit] = {}
"""Splits that trials of this process stream, by key (`trial_reads_shared_split`)."""


@dataclass(frozen=True)
class SharedTrainSplit:
    """The train split as pre-learner output in the object store (see the module docstring)."""

    blocks: tuple[Any, ...]
    """Object refs of Arrow tables, one per train file, in ``meta.json``'s file order. Each
    table has the pre-learner's columns (``default_policy/state``...), sequences as Ray
    Data tensor columns: exactly the blocks a trial's own pre-learner would produce."""
    metadata: tuple[Any, ...]
    """Ray Data's metadata and schema of each block (``BlockMetadataWithSchema``)."""
    rows: int
    """Transitions over all blocks."""
    nbytes: int
    """Size of the blocks in the object store."""
    seconds: float
    """Time the driver took to read, convert and store them."""

    def dataset(self, passes: int = 1) -> Any:
        """A materialised Ray Dataset of the blocks, ``passes`` times over, built without a
        Ray task (`ray.data.from_arrow_refs` of Ray 2.60, less its metadata tasks: the
        metadata was taken when the blocks were made)."""
        from ray.data._internal.logical.interfaces import LogicalPlan
        from ray.data._internal.logical.operators import FromArrow
        from ray.data._internal.stats import DatasetStats
        from ray.data.context import DataContext
        from ray.data.dataset import MaterializedDataset

        blocks, metadata = list(self.blocks) * passes, list(self.metadata) * passes
        stats = DatasetStats(metadata={"FromArrow": metadata}, parent=None)
        context = DataContext.get_current().copy()
        plan = LogicalPlan(FromArrow(blocks, metadata), context)
        return MaterializedDataset(plan, context, stats)


def share_train_split(data: str) -> SharedTrainSplit:
    """Read ``{data}/train`` (a prepared dataset: local path or ``s3://``/``gs://``), convert
    it as the trials' pre-learner would, and put it into the object store of this node.
    Needs a connected Ray runtime."""
    import pyarrow.parquet as pq
    import ray
    from ray.data._internal.util import get_table_block_metadata_schema
    from ray.data.block import BlockAccessor
    from recrl.pipelines.prepare.meta import read_meta
    from recrl.pipelines.prepare.reading import resolve_filesystem
    from recrl.pipelines.sasrec.algorithm import TRAIN_COLUMNS, PassThroughPreLearner

    start = time.perf_counter()
    meta = read_meta(data)
    fs, root = resolve_filesystem(data)
    # The pre-learner's conversion needs no config: it only unpacks columns.
    convert = PassThroughPreLearner(config=None)
    blocks, metadata, rows, nbytes = [], [], 0, 0
    for name in meta["splits"]["train"]["files"]:
        table = pq.read_table(posixpath.join(root, name), columns=list(TRAIN_COLUMNS),
                              filesystem=fs)  # fmt: skip
        # What Ray Data makes of a map_batches output (numpy columns -> an Arrow block with
        # tensor columns), so a trial's batches are typed as with its own pre-learner.
        block = BlockAccessor.batch_to_block(convert(table))
        blocks.append(ray.put(block))
        metadata.append(get_table_block_metadata_schema(block))
        rows += block.num_rows
        nbytes += block.nbytes
    expected = meta["splits"]["train"]["transitions"]
    if rows != expected:
        raise ValueError(
            f"{data}: the train files hold {rows} transitions but meta.json says {expected}; "
            "the dataset changed after it was prepared: run `recrl prepare` again"
        )
    seconds = time.perf_counter() - start
    logger.info("train split of %s shared: %d rows, %.1f MB in %d blocks, %.1f s", data, rows,
                nbytes / 1e6, len(blocks), seconds)  # fmt: skip
    return SharedTrainSplit(tuple(blocks), tuple(metadata), rows, nbytes, seconds)


class SharedOfflineData(OfflineData):
    """RLlib's `OfflineData` over a `SharedTrainSplit` of this process (`_TRIAL_SPLITS`),
    named by the config's ``input_`` (``INPUT_SCHEME<key>``, once per pass).

    ``OfflineData.__init__`` would read ``input_`` with a ``ray.data`` read function; this
    one sets the same attributes (RLlib 2.60) around a dataset built from the shared blocks,
    already mapped: `OfflineData.sample` then only makes the learners' iterators.
    """

    def __init__(self, config: Any) -> None:
        paths = list(config.input_)
        keys = {str(path).removeprefix(INPUT_SCHEME) for path in paths}
        if len(keys) != 1 or not str(paths[0]).startswith(INPUT_SCHEME):
            raise ValueError(f"SharedOfflineData needs input_ [{INPUT_SCHEME}<key>, ...]: {paths}")
        key = keys.pop()
        if key not in _TRIAL_SPLITS:
            raise RuntimeError(
                f"no shared train split {key!r} in this process: build the algorithm inside "
                "`trial_reads_shared_split`"
            )
        self.config = config
        self.is_multi_agent = config.is_multi_agent
        self.path = paths
        self.data_read_method = config.input_read_method
        self.data_read_method_kwargs = config.input_read_method_kwargs
        self.data_read_batch_size = config.input_read_batch_size
        self.materialize_data = False
        self.materialize_mapped_data = False
        self.filesystem = None
        self.filesystem_kwargs = {}
        self.filesystem_object = None
        self.data = _TRIAL_SPLITS[key].dataset(passes=len(paths))
        self.data_is_mapped = True  # the blocks are the pre-learner's output
        self.batch_iterators = None
        self.map_batches_kwargs = self.default_map_batches_kwargs | config.map_batches_kwargs
        self.iter_batches_kwargs = self.default_iter_batches_kwargs | config.iter_batches_kwargs
        self.returned_streaming_split = False
        self.prelearner_class = config.prelearner_class or OfflinePreLearner
        self.locality_hints = None
        self.learner_handles = None
        self.module_spec = None


def use_shared_split(algo_config: Any, key: str) -> Any:
    """``algo_config`` (`recrl.pipelines.sasrec.algorithm.algorithm_config`'s, not yet
    built) streaming the split registered under ``key`` instead of reading parquet: as many
    passes as its file list has, the same shuffle and batching."""
    algo_config.input_ = [f"{INPUT_SCHEME}{key}"] * len(algo_config.input_)
    algo_config.input_read_method_kwargs = {}
    algo_config.map_batches_kwargs = {}
    algo_config.offline_data_class = SharedOfflineData
    return algo_config


@contextmanager
def trial_reads_shared_split(split: SharedTrainSplit) -> Iterator[Callable[[Any], Any]]:
    """Within it, ``split`` is registered for this process and the yielded function turns an
    RLlib algorithm config into one that streams it (`use_shared_split`): pass it to
    `recrl.pipelines.sasrec.job.train` as ``configure_algorithm``. The registry, not the config,
    holds the object references, since RLlib writes the config into every checkpoint."""
    key = uuid.uuid4().hex
    _TRIAL_SPLITS[key] = split
    try:
        yield lambda algo_config: use_shared_split(algo_config, key)
    finally:
        del _TRIAL_SPLITS[key]
