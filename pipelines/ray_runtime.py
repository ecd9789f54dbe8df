"""Starting or joining a Ray runtime the same way from the CLI, tests and benchmarks."""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


def ensure_ray(*, num_cpus: int | None = None, object_store_memory: int | None = None) -> None:
    """Join the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``) or start a local one.

    Does nothing when Ray is already initialised, so tests can share one runtime.
    """
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs: dict = {"logging_level": logging.WARNING, "include_dashboard": False}
        if address:
            kwargs = {"address": address, "logging_level": logging.WARNING}
        else:
            kwargs["num_cpus"] = num_cpus
            kwargs["object_store_memory"] = object_store_memory
        logger.info("starting Ray (%s)", address or "local")
        ray.init(**kwargs)
    context = DataContext.get_current()
    context.enable_progress_bars = sys.stderr.isatty()
    context.print_on_execution_start = False
