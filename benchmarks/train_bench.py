"""Benchmark: RLlib training throughput against a plain PyTorch loop, and quality per variant.

(a) The RLlib path (`SASRecAlgorithm`, offline reader, Learner) against a plain PyTorch loop
    that runs the same network, the same loss function and the same batch size over the same
    training split, in the same process. Target: RLlib ≥ 0.8× the plain loop's updates/s.
(b) Quality after a fixed budget: val purchase HR@20 / NDCG@20 of several variants and seeds.
(c) With ``--gathered-vs-full``, instead of (a) and (b): per variant, the update as training runs it
    (Q read at the few items each term needs) against the full-product reference (every Q a
    [B, I] product), plain loop against plain loop on the same batches, in one process.

    python benchmarks/train_bench.py --data data/rc15 --throughput-steps 200
    python benchmarks/train_bench.py --data data/rc15 --quality-steps 6000 --seeds 0 1
    python benchmarks/train_bench.py --data data/rc15 --gathered-vs-full --throughput-steps 100 \
        --repeats 1 --variants sasrec sasrec_ac snqn sa2c sasrec_co sasrec_ccql

On a GPU, `--num-gpus-per-learner 1` runs both sides on CUDA, with the forward passes in
the precision of `--precision` (`auto`: bf16 autocast on CUDA, as training does).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from recrl.models.objectives import sample_negatives  # noqa: E402
from recrl.models.sasrec.encoder import SASRecConfig  # noqa: E402
from recrl.models.sasrec.loss import sasrec_objective  # noqa: E402
from recrl.models.sasrec.network import SASRecQNetwork, objective_inputs  # noqa: E402
from recrl.models.sasrec.precision import PRECISIONS, autocast_dtype  # noqa: E402
from recrl.pipelines.prepare.meta import read_meta  # noqa: E402
from recrl.pipelines.prepare.stages import list_to_matrix  # noqa: E402
from recrl.pipelines.sasrec.config import TrainConfig  # noqa: E402

logger = logging.getLogger("train_bench")
COLUMNS = ("state", "state_len", "action", "reward", "done", "next_state", "next_state_len")


def load_train_tensors(data: str, device: torch.device) -> dict[str, torch.Tensor]:
    table = pq.read_table(f"{data}/train", columns=list(COLUMNS))
    out = {}
    for name in COLUMNS:
        column = table.column(name)
        if name in ("state", "next_state"):
            out[name] = torch.from_numpy(list_to_matrix(column).astype(np.int64))
        else:
            out[name] = torch.from_numpy(column.to_numpy(zero_copy_only=False).copy())
    return {name: tensor.to(device) for name, tensor in out.items()}


class PlainLoop:
    """The same network, loss, batch size, device and precision as the RLlib path, in a bare
    loop (the training split sits on the device, so batches cost an index, as they would in
    the best hand-written loop). ``full_products=True`` runs the full-product reference of
    `objective_inputs`. Two loops built from the same config draw the same batches, twin
    coins, augmentations and negatives: every draw comes from a generator seeded alike and
    none depends on a model value (dropout draws from torch's global generator, which is
    seeded from the update count before each update)."""

    def __init__(
        self,
        config: TrainConfig,
        meta: dict,
        *,
        full_products: bool = False,
        data: dict[str, torch.Tensor] | None = None,
    ) -> None:
        torch.manual_seed(config.seed)
        self.device = torch.device("cuda" if config.num_gpus_per_learner > 0 else "cpu")
        self.data = load_train_tensors(config.data, self.device) if data is None else data
        self.n_items = meta["n_items"]
        encoder = SASRecConfig(**{**config.encoder.__dict__, "max_len": meta["L"]})
        self.networks = [SASRecQNetwork(self.n_items, encoder).to(self.device) for _ in range(2)]
        self.params = [p for net in self.networks for p in net.parameters()]
        # fused, as `SASRecLearner` builds it
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, fused=True)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.dtype = autocast_dtype(config.precision, self.device.type)
        self.config = config
        self.full_products = full_products
        self.steps = 0

    def update(self) -> float:
        """One gradient update; returns its loss."""
        config, objective, device = self.config, self.config.objective, self.device
        n_rows = len(self.data["action"])
        g = self.generator
        torch.manual_seed(config.seed * 1_000_003 + self.steps)
        index = torch.randint(0, n_rows, (config.batch_size,), generator=g, device=device)
        batch = {k: v[index] for k, v in self.data.items()}
        coin = int(torch.randint(0, 2, (1,), generator=g, device=device))
        trained, other = self.networks[coin], self.networks[1 - coin]
        dtype = self.dtype
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            inputs = objective_inputs(
                trained, other, batch, objective, g, full_products=self.full_products
            )
        negatives = None
        if objective.n_neg:
            exclude = batch["state"] if objective.neg_exclude == "state" else None
            negatives = sample_negatives(
                batch["action"], self.n_items, objective.n_neg, g, exclude=exclude
            )
        loss, _ = sasrec_objective(inputs, batch, negatives, objective, step=self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.optimizer.step()
        self.steps += 1
        return float(loss.detach())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


WARMUP_UPDATES = 5
"""Untimed updates first: they warm up allocators, as RLlib's first train() does."""


def plain_torch_updates_per_s(config: TrainConfig, meta: dict, steps: int) -> float:
    """Updates/s of `PlainLoop` (the gathered update, as training runs it)."""
    loop = PlainLoop(config, meta)
    for _ in range(WARMUP_UPDATES):
        loop.update()
    loop.sync()
    start = time.perf_counter()
    for _ in range(steps):
        loop.update()
    loop.sync()
    return steps / (time.perf_counter() - start)


def gathered_and_full_updates_per_s(
    config: TrainConfig, meta: dict, steps: int
) -> tuple[float, float, float]:
    """Updates/s of the gathered update and of the full-product reference, plain loop
    against plain loop, on the same batches: the two loops alternate update by update, so
    load from other processes on a shared machine hits both alike. Also returns the largest
    relative loss difference seen (both start from the same weights; it grows only by float
    rounding and by argmax ties that rounding breaks differently)."""
    gathered = PlainLoop(config, meta)
    full = PlainLoop(config, meta, full_products=True, data=gathered.data)
    seconds = {id(gathered): 0.0, id(full): 0.0}
    worst = 0.0
    for step in range(WARMUP_UPDATES + steps):
        losses = []
        for loop in (full, gathered) if step % 2 else (gathered, full):
            start = time.perf_counter()
            losses.append(loop.update())
            loop.sync()
            if step >= WARMUP_UPDATES:
                seconds[id(loop)] += time.perf_counter() - start
        worst = max(worst, abs(losses[0] - losses[1]) / max(abs(losses[0]), 1e-12))
    return steps / seconds[id(gathered)], steps / seconds[id(full)], worst


def rllib_updates_per_s(config: TrainConfig, meta: dict, steps: int) -> float:
    from recrl.pipelines.ray_runtime import ensure_ray
    from recrl.pipelines.sasrec.algorithm import build_algorithm, learner_metrics

    ensure_ray()
    algo = build_algorithm(config, meta)
    try:
        done = int(learner_metrics(algo.train())["train/num_updates"])  # includes set-up costs
        start, first = time.perf_counter(), done
        while done - first < steps:
            done = int(learner_metrics(algo.train())["train/num_updates"])
        return (done - first) / (time.perf_counter() - start)
    finally:
        algo.stop()


def gathered_vs_full(
    data: str, variants: list[str], steps: int, repeats: int, **settings
) -> dict[str, dict]:
    """(c): `gathered_and_full_updates_per_s` ``repeats`` times per variant; the ratio is
    the median of the per-run ratios (each run's two sides saw the same load)."""
    meta = read_meta(data)
    results: dict[str, dict] = {}
    for variant in variants:
        config = TrainConfig.for_variant(variant, data, tracking=False, **settings)
        runs = [gathered_and_full_updates_per_s(config, meta, steps) for _ in range(repeats)]
        ratio = statistics.median(g / f for g, f, _ in runs)
        results[variant] = {
            "gathered_updates_per_s": [round(g, 3) for g, _, _ in runs],
            "full_updates_per_s": [round(f, 3) for _, f, _ in runs],
            "gathered_over_full": round(ratio, 3),
            "max_relative_loss_difference": max(d for _, _, d in runs),
        }
        print(
            f"(c) {variant:<12} full products {statistics.median(f for _, f, _ in runs):.3f} "
            f"upd/s, gathered {statistics.median(g for g, _, _ in runs):.3f} upd/s -> "
            f"ratio {ratio:.3f} (losses differ by at most "
            f"{results[variant]['max_relative_loss_difference']:.1e}, relative)",
            flush=True,
        )
    return results


def quality(
    data: str,
    variants: list[str],
    seeds: list[int],
    steps: int,
    rows_file: Path,
    **settings,
) -> list[dict]:
    """Train each variant × seed for `steps` updates; rows are appended to `rows_file` as they
    finish, and a (variant, seed, steps) already there is not trained again, so a long run
    can be split across processes or resumed after an interruption. ``settings`` (GPU,
    precision) go to every run's config."""
    from recrl.pipelines.sasrec.job import train

    done = []
    if rows_file.exists():
        done = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    rows = []
    for variant in variants:
        for seed in seeds:
            key = (variant, seed, steps)
            previous = [r for r in done if (r["variant"], r["seed"], r["steps"]) == key]
            if previous:
                rows.append(previous[-1])
                logger.info("%s seed %d: already in %s", variant, seed, rows_file)
                continue
            config = TrainConfig.for_variant(
                variant, data, seed=seed, total_steps=steps, eval_interval=max(steps // 6, 1),
                warmup_steps=min(15_000, steps // 2), **settings,
            )  # fmt: skip
            # one folder per (variant, seed), so runs started in the same second never share
            result = train(
                config, run_dir=rows_file.parent / "runs" / f"{variant}-seed{seed}-{steps}"
            )
            best = max(result.val_history, key=lambda r: r["ndcg_20_purchase"])
            final = result.val_history[-1]
            rows.append({
                "variant": variant, "seed": seed, "steps": steps, "updates": result.updates,
                "val_hr_20_purchase": final["hr_20_purchase"],
                "val_ndcg_20_purchase": final["ndcg_20_purchase"],
                "best_val_ndcg_20_purchase": best["ndcg_20_purchase"],
                "test_hr_20_purchase": result.test_metrics["hr_20_purchase"],
                "test_ndcg_20_purchase": result.test_metrics["ndcg_20_purchase"],
                "eval_share": round(result.eval_share, 3), "run_id": result.run_id,
            })  # fmt: skip
            with rows_file.open("a") as handle:
                handle.write(json.dumps(rows[-1]) + "\n")
            logger.info("%s", rows[-1])
    return rows


def summarize_quality(rows: list[dict]) -> dict[str, dict]:
    """Mean and (population) std over seeds of each variant's final val metrics."""
    summary: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        summary[variant] = {"seeds": len(mine)}
        for name in ("val_hr_20_purchase", "val_ndcg_20_purchase", "test_ndcg_20_purchase"):
            values = [r[name] for r in mine]
            summary[variant][name] = (statistics.fmean(values), statistics.pstdev(values))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared dataset (recrl prepare output)")
    parser.add_argument("--variant", default="sasrec_ccql", help="variant for (a)")
    parser.add_argument("--throughput-steps", type=int, default=200, help="0 skips (a) and (c)")
    parser.add_argument(
        "--gathered-vs-full",
        action="store_true",
        help="run (c) for each of --variants instead of (a) and (b); writes train_gathered.json",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quality-steps", type=int, default=0, help="0 skips (b)")
    parser.add_argument("--variants", nargs="*", default=["sasrec", "sasrec_ac", "sa2c",
                                                          "sasrec_ccql"])  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--num-gpus-per-learner",
        type=float,
        default=0.0,
        help="GPU share of the learner; > 0 runs both sides of (a) on CUDA",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="forward-pass precision (auto: bf16 autocast on CUDA only)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="(b) runs log to no MLflow")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    meta = read_meta(args.data)
    settings = {"num_gpus_per_learner": args.num_gpus_per_learner, "precision": args.precision}
    config = TrainConfig.for_variant(args.variant, args.data, tracking=False, **settings)
    report: dict = {"variant": args.variant, "n_items": meta["n_items"], **settings,
                    "device": torch.cuda.get_device_name() if args.num_gpus_per_learner else
                    f"cpu ({torch.get_num_threads()} torch threads)"}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gathered_vs_full:
        del report["variant"]
        report["gathered_vs_full"] = gathered_vs_full(
            args.data, args.variants, args.throughput_steps, args.repeats, **settings
        )
        (args.out / "train_gathered.json").write_text(json.dumps(report, indent=2))
        return 0
    plain, rllib = [], []
    # interleaved, so machine noise hits both sides alike
    for _ in range(args.repeats if args.throughput_steps else 0):
        plain.append(plain_torch_updates_per_s(config, meta, args.throughput_steps))
        rllib.append(rllib_updates_per_s(config, meta, args.throughput_steps))
    report["plain_updates_per_s"] = [round(x, 2) for x in plain]
    report["rllib_updates_per_s"] = [round(x, 2) for x in rllib]
    if plain:
        ratio = statistics.median(rllib) / statistics.median(plain)
        report["rllib_over_plain"] = round(ratio, 3)
        print(
            f"(a) {args.variant}: plain torch {statistics.median(plain):.2f} upd/s, RLlib "
            f"{statistics.median(rllib):.2f} upd/s -> ratio {report['rllib_over_plain']}"
        )
    if args.quality_steps:
        rows_file = args.out / "train_quality.jsonl"
        tracking = {"tracking": False} if args.no_mlflow else {}
        report["quality"] = quality(
            args.data,
            args.variants,
            args.seeds,
            args.quality_steps,
            rows_file,
            **settings,
            **tracking,
        )
        for row in report["quality"]:
            print(
                f"(b) {row['variant']:<12} seed {row['seed']}: val HR@20 purchase "
                f"{row['val_hr_20_purchase']:.4f}, NDCG@20 {row['val_ndcg_20_purchase']:.4f}"
            )
        report["quality_summary"] = summarize_quality(report["quality"])
        for variant, stats in report["quality_summary"].items():
            print(
                f"(b) {variant:<12} mean over {stats['seeds']} seeds: val HR@20 purchase "
                f"{stats['val_hr_20_purchase'][0]:.4f} ± {stats['val_hr_20_purchase'][1]:.4f}, "
                f"NDCG@20 {stats['val_ndcg_20_purchase'][0]:.4f} ± "
                f"{stats['val_ndcg_20_purchase'][1]:.4f}"
            )
    (args.out / "train.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
