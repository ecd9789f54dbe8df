"""Benchmark: updates/s of one SASRec variant with 1, 2, ... data-parallel RLlib learners.

``--learners 0`` is the single local learner that ``recrl train`` uses by default (it trains
in the driver); N >= 1 are N remote learner actors (N >= 2: DDP). Each count builds the
algorithm, runs one warm-up iteration (actor start, DDP setup, the data stream's first
blocks) and then times ``--iterations`` iterations of ``--per-iteration`` updates. With N
learners an update consumes N x batch_size rows, so the rows/s column is the data-parallel
throughput; the updates/s column is what a user waits for. On a 2-core machine the
learners share the cores (a correctness-level figure); the scaling figure needs a
multi-core or GPU machine.

    python benchmarks/learner_scaling.py --data data/rc15 --learners 0 2
    RAY_ADDRESS=head:6379 python benchmarks/learner_scaling.py --data /shared/rc15 \\
        --learners 0 2 --learner-resource learner_slot=1     # one learner per node

Without ``RAY_ADDRESS`` a local Ray runtime with ``--num-cpus`` logical CPUs is started.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recrl.pipelines.prepare.meta import read_meta  # noqa: E402
from recrl.pipelines.sasrec.config import TrainConfig  # noqa: E402

logger = logging.getLogger("learner_scaling")


@dataclass
class ScalingRow:
    num_learners: int
    updates: int
    seconds: float
    updates_per_s: float
    rows_per_s: float
    nodes: int
    replicas_identical: bool


def measure(config: TrainConfig, iterations: int, per_iteration: int) -> ScalingRow:
    """Time ``iterations`` iterations after a warm-up one; check the replicas agree."""
    from recrl.pipelines.sasrec.algorithm import build_algorithm, learner_placements

    algo = build_algorithm(config, read_meta(config.data), iteration_updates=per_iteration)
    try:
        algo.train()  # warm-up: learner actors, DDP process group, first data blocks
        start = time.perf_counter()
        for _ in range(iterations):
            algo.train()
        seconds = time.perf_counter() - start
        placements = learner_placements(algo)
    finally:
        algo.stop()
    updates = iterations * per_iteration
    rate = updates / seconds
    return ScalingRow(
        num_learners=config.num_learners,
        updates=updates,
        seconds=round(seconds, 3),
        updates_per_s=round(rate, 2),
        rows_per_s=round(rate * config.batch_size * max(1, config.num_learners), 1),
        nodes=len({p["node_id"] for p in placements}),
        replicas_identical=len({p["weights_sha256"] for p in placements}) == 1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="prepared dataset (recrl prepare)")
    parser.add_argument("--variant", default="sasrec_ccql")
    parser.add_argument("--learners", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--per-iteration", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=6, help="local Ray's logical CPUs")
    parser.add_argument("--num-cpus-per-learner", type=float, default=None)
    parser.add_argument("--learner-resource", action="append", default=[],
                        metavar="NAME=AMOUNT", help="custom resource per learner")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from recrl.pipelines.ray_runtime import ensure_ray

    ensure_ray(num_cpus=args.num_cpus)
    resources = {}
    for pair in args.learner_resource:
        name, _, amount = pair.partition("=")
        resources[name] = float(amount)
    meta = read_meta(args.data)
    rows = []
    for count in args.learners:
        config = TrainConfig.for_variant(
            args.variant, args.data, num_learners=count, batch_size=args.batch_size,
            hidden_size=args.hidden_size, max_len=meta["L"], tracking=False,
            total_steps=(args.iterations + 1) * args.per_iteration,
            eval_interval=args.per_iteration, num_cpus_per_learner=args.num_cpus_per_learner,
            custom_resources_per_learner=resources,
        )  # fmt: skip
        row = measure(config, args.iterations, args.per_iteration)
        logger.info("%s", row)
        rows.append(row)
    base = rows[0].updates_per_s
    print(f"\n{'learners':>8} {'nodes':>5} {'updates/s':>10} {'rows/s':>10} {'vs first':>9} "
          f"{'replicas equal':>14}")  # fmt: skip
    for row in rows:
        print(f"{row.num_learners:>8} {row.nodes:>5} {row.updates_per_s:>10.2f} "
              f"{row.rows_per_s:>10.1f} {row.updates_per_s / base:>8.2f}x "
              f"{row.replicas_identical!s:>14}")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
