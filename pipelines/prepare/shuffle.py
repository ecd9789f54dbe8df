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
    dataset,
    *,
    key: str,
    num_partitions: int,
    map_fn: Callable[..., pa.Table],
    map_kwargs: dict[str, Any],
):
    """Apply ``map_fn`` to every block, then regroup its rows so that each output block
    holds all rows of a ``key`` value. Returns a Ray Dataset of ``num_partitions`` blocks.

    ``map_fn(table, **map_kwargs)`` must return a table with an int64 ``key`` column.
    """
    import ray
    import ray.data

    kwargs_ref = ray.put(map_kwargs)

    @ray.remote
    def map_and_partition(table: pa.Table, kwargs: dict) -> list[pa.Table] | pa.Table:
        parts = _partition(map_fn(table, **kwargs), key, num_partitions)
        return parts if num_partitions > 1 else parts[0]

    @ray.remote
    def concatenate(*tables: pa.Table) -> pa.Table:
        return pa.concat_tables(tables)

    block_refs = dataset.to_arrow_refs()
    mapped = [
        map_and_partition.options(num_returns=num_partitions).remote(ref, kwargs_ref)
        for ref in block_refs
    ]
    if num_partitions == 1:
        mapped = [[m] for m in mapped]
    reduced = [concatenate.remote(*[m[j] for m in mapped]) for j in range(num_partitions)]
    return ray.data.from_arrow_refs(reduced)
