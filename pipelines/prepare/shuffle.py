"""Grouping rows by session across a cluster: a map/reduce hash shuffle of Arrow blocks.

Ray Data 2.60's ``repartition(keys=...)`` starts a pool of aggregator actors for every
execution; on a 2-core machine that alone cost 13-20 s per run of `recrl prepare` on the
YooChoose sample (the whole computation is ~1 s), and the actors kept their CPUs while the
following writes waited. This shuffle runs as plain Ray tasks on the materialised blocks,
so it reuses warm workers, spreads over every node like any task, and spills through the
object store like Ray Data does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa


def _partition(table: pa.Table, key: str, n: int) -> list[pa.Table]:
    """Split a table into ``n`` tables by ``key % n`` (keys are non-negative ints)."""
    part = table.column(key).to_numpy() % n
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n + 1))
    sorted_table = table.take(pa.array(order))
    return [sorted_table.slice(bounds[j], bounds[j + 1] - bounds[j]) for j in range(n)]


def hash_shuffle(
    block_refs: list,
    *,
    key: str,
    num_partitions: int,
    map_fn: Callable[..., pa.Table],
    map_kwargs: dict[str, Any],
    reduce_fn: Callable[..., tuple[pa.Table, Any]],
    reduce_kwargs: dict[str, Any],
):
    """Apply ``map_fn`` to every block of ``block_refs`` (object refs of Arrow tables),
    regroup the rows so that each output block holds all rows of a ``key`` value, and apply
    ``reduce_fn`` to each output block in the task that builds it. Returns a materialised
    Ray Dataset of ``num_partitions`` blocks and the refs of what ``reduce_fn`` returned
    beside each: ``reduce_fn(block, **reduce_kwargs)`` returns ``(block, extra)``.

    ``map_fn(table, **map_kwargs)`` must return a table with an int64 ``key`` column. The
    list ``block_refs`` is emptied: each input block is freed once its map task has read it,
    and each map output once its reduce task has, so the data is held about twice at the
    peak (inputs being mapped, outputs being built), not three times.
    """
    import ray
    import ray.data

    kwargs_ref = ray.put(map_kwargs)
    reduce_ref = ray.put(reduce_kwargs)

    @ray.remote
    def map_and_partition(table: pa.Table, kwargs: dict) -> list[pa.Table] | pa.Table:
        parts = _partition(map_fn(table, **kwargs), key, num_partitions)
        return parts if num_partitions > 1 else parts[0]

    @ray.remote(num_returns=2)
    def concatenate_and_reduce(kwargs: dict, *tables: pa.Table) -> tuple[pa.Table, Any]:
        return reduce_fn(pa.concat_tables(tables), **kwargs)

    mapped = []
    while block_refs:  # the caller's list: no reference to a mapped input stays behind
        ref = block_refs.pop(0)
        mapped.append(map_and_partition.options(num_returns=num_partitions).remote(ref, kwargs_ref))
        del ref
    if num_partitions == 1:
        mapped = [[m] for m in mapped]
    reduced = [
        concatenate_and_reduce.remote(reduce_ref, *[m[j] for m in mapped])
        for j in range(num_partitions)
    ]
    del mapped
    return ray.data.from_arrow_refs([r[0] for r in reduced]), [r[1] for r in reduced]
