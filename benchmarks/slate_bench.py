"""Benchmark: GAN user model against click-prediction baselines (Chen et al. 2019, Table 1).

For each seed: build MovieLens-100k display sets (the rated movie + 39 movies other users
rated nearest in time; users split 50/12.5/37.5 % by the seed), fit GAN-PW and GAN-LSTM by
maximum likelihood (Shannon entropy, Lemma 2) and, optionally, the L2-regularised
adversarial variant started from GAN-PW; fit popularity, item co-occurrence kNN and the
logistic-regression click model; report prec@1 / prec@2 on the test users' page views
(mean ± std over seeds) and the held-out log-likelihood.

    python benchmarks/slate_bench.py --data ../shared/data/movielens-100k --seeds 0 1 2

Writes benchmarks/results/slate_table1.{json,csv}. Seeds can run as separate processes
(``--seeds 1 --name seed1``) and be combined afterwards (``--merge a.json b.json``).

``--part table3`` runs paper Table 3 instead (`benchmarks/slate_table3.py`): CDQN, greedy,
random, GDQN, RWD1 and DQN-Off on the test users' simulator, k = 3 and 5, mean ± std over
seeds; writes benchmarks/results/slate_table3.{json,csv}.

    python benchmarks/slate_bench.py --part table3 --seeds 0 1 2 --steps 3000

``--part argmax`` times the cascading greedy slate (Algorithm 1) instead: batch 256, k = 5,
pools of 1,000 to 10,000 items; the cost should grow linearly with the pool.

    python benchmarks/slate_bench.py --part argmax
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from recrl.models.slate.cascading import CascadingQNetwork  # noqa: E402
from recrl.models.user_model.baselines import (  # noqa: E402
    CooccurrenceKNN,
    LogisticClickModel,
    PopularityBaseline,
    softmax_log_likelihood,
)
from recrl.models.user_model.config import UserModelConfig  # noqa: E402
from recrl.models.user_model.metrics import precision_metrics  # noqa: E402
from recrl.models.user_model.trainer import evaluate, fit_user_model  # noqa: E402
from recrl.pipelines.display_sets.build import build_display_sets  # noqa: E402
from recrl.pipelines.display_sets.config import DisplaySetConfig  # noqa: E402
from recrl.pipelines.display_sets.records import load_display_sets  # noqa: E402

logger = logging.getLogger("slate_bench")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "movielens-100k"
RESULTS = REPO / "benchmarks" / "results"


def run_seed(data_path: str, seed: int, epochs: int, l2_epochs: int, work: Path) -> dict:
    out = work / f"ml100k-seed{seed}"
    build_display_sets(
        DisplaySetConfig(source="movielens", input_path=data_path, output_path=str(out), seed=seed)
    )
    data = load_display_sets(out)
    train, val, test = data.splits["train"], data.splits["val"], data.splits["test"]
    t = test.tensors()
    rows: dict[str, dict[str, float]] = {}

    def record(name: str, scores: torch.Tensor, log_lik: float, seconds: float) -> None:
        rows[name] = {
            **precision_metrics(scores, t["shown_mask"], t["click"]),
            "log_lik": log_lik,
            "fit_s": seconds,
        }
        logger.info("seed %d %-12s %s", seed, name, rows[name])

    for name, model in (
        ("Popularity", PopularityBaseline(data.n_items)),
        ("IKNN", CooccurrenceKNN(data.n_items)),
        ("LR", LogisticClickModel(data.item_features, seed=seed)),
    ):
        start = time.perf_counter()
        scores = model.fit(train).scores(test)
        record(name, scores, softmax_log_likelihood(scores, test), time.perf_counter() - start)

    for name, state, regularizer in (("GAN-PW", "pw", "l2"), ("GAN-LSTM", "lstm", "shannon")):
        config = UserModelConfig(
            state=state, seed=seed, epochs=epochs, regularizer=regularizer,
            adversarial_epochs=l2_epochs,
        )  # fmt: skip
        if regularizer == "l2" and l2_epochs == 0:
            config = UserModelConfig(state=state, seed=seed, epochs=epochs)
        start = time.perf_counter()
        fit = fit_user_model(
            config, train, val, data.item_features, progress=False,
            on_epoch=lambda epoch, m, name=name: logger.info(
                "seed %d %s epoch %d: %s", seed, name, epoch,
                {k: round(v, 4) for k, v in m.items()},
            ),
        )  # fmt: skip
        seconds = time.perf_counter() - start
        models = {name: fit.mle_model}
        if fit.model is not fit.mle_model:
            models[f"{name}-L2"] = fit.model
        for label, model in models.items():
            with torch.no_grad():
                logits = model.choice_logits(t["history"], t["shown"], t["shown_mask"])
            record(label, logits[:, :-1], -evaluate(model, test)["loss"], seconds)
    return rows


def summarise(per_seed: list[dict]) -> list[dict]:
    table = []
    for name in per_seed[0]:
        row = {"model": name}
        for metric in ("prec1", "prec2", "log_lik", "fit_s"):
            values = [seed[name][metric] for seed in per_seed]
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(row)
    return table


def argmax_latency(pools: list[int], batch: int, k: int, repeats: int) -> list[dict]:
    """Median wall time of one greedy cascade (no gradient) per pool size."""
    torch.manual_seed(0)
    state_dim, item_dim = 64, 16  # a GAN-PW state (d·n) and a 16-dim item embedding
    net = CascadingQNetwork(state_dim, item_dim, slate_size=k, hidden=64).eval()
    rows = []
    for pool in pools:
        state = torch.randn(batch, state_dim)
        items = torch.randn(1, pool, item_dim)  # one pool shared by the batch
        mask = torch.ones(batch, pool, dtype=torch.bool)
        times = []
        with torch.no_grad():
            net.greedy_slate(state, items, mask)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                net.greedy_slate(state, items, mask)
                times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times)
        rows.append(
            {"pool": pool, "batch": batch, "k": k, "ms": ms, "ms_per_1000_items": ms / pool * 1000}
        )
        logger.info("pool %5d: %.1f ms per batch of %d (k=%d)", pool, ms, batch, k)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="movielens-100k folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="maximum-likelihood epochs")
    parser.add_argument("--l2-epochs", type=int, default=2, help="adversarial epochs (0: off)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--name", default="slate_table1", help="output file stem")
    parser.add_argument("--merge", nargs="+", type=Path, help="combine per-seed JSON files")
    parser.add_argument("--part", choices=("table1", "table3", "argmax"), default="table1")
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 5], help="table3 slate sizes")
    parser.add_argument("--steps", type=int, default=3000, help="table3 training env steps")
    parser.add_argument("--um-epochs", type=int, default=5, help="table3 user-model epochs")
    parser.add_argument("--episode-length", type=int, default=10, help="table3 steps per user")
    parser.add_argument("--max-pool", type=int, default=512, help="table3 candidates per user")
    parser.add_argument("--pools", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per pool (5)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.part == "argmax":
        rows = argmax_latency(args.pools, batch=256, k=5, repeats=args.repeats)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = {"threads": args.threads, "rows": rows}
        (RESULTS / "slate_argmax.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"cascading argmax, batch 256, k = 5, {args.threads} torch thread(s)")
        for row in rows:
            print(f"  pool {row['pool']:>6}: {row['ms']:8.1f} ms  "
                  f"({row['ms_per_1000_items']:.1f} ms per 1,000 items)")  # fmt: skip
        return
    if args.part == "table3":
        _table3(args)
        return
    if args.merge:
        loaded = [json.loads(p.read_text()) for p in args.merge]
        per_seed = [row for payload in loaded for row in payload["per_seed"]]
        args.seeds = [s for payload in loaded for s in payload["settings"]["seeds"]]
    else:
        with tempfile.TemporaryDirectory() as work:
            per_seed = [
                run_seed(args.data, s, args.epochs, args.l2_epochs, Path(work)) for s in args.seeds
            ]
    table = summarise(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {k: [str(p) for p in v] if k == "merge" and v else v for k, v in vars(args).items()}
    payload = {"settings": settings, "per_seed": per_seed, "table": table}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    with open(RESULTS / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    print(f"\nMovieLens-100k test users, seeds {args.seeds} (prec in %, mean ± std)")
    print(f"{'model':<12} {'prec@1':>14} {'prec@2':>14} {'log-lik':>16}")
    for row in table:
        print(
            f"{row['model']:<12} {100 * row['prec1_mean']:6.1f} ± {100 * row['prec1_std']:4.1f}"
            f"  {100 * row['prec2_mean']:6.1f} ± {100 * row['prec2_std']:4.1f}"
            f"  {row['log_lik_mean']:8.3f} ± {row['log_lik_std']:.3f}"
        )


def _start_ray(attempts: int = 5) -> None:
    """A small local Ray for the RLlib trainings; on a loaded machine the raylet can miss
    Ray's fixed 30 s start-up window, so try again."""
    import ray
    from recrl.pipelines.ray_runtime import ensure_ray

    for attempt in range(1, attempts + 1):
        try:
            ensure_ray(num_cpus=1, object_store_memory=256 * 1024 * 1024)
            return
        except Exception as error:  # Ray raises a bare Exception on a start-up timeout
            logger.warning("Ray start %d/%d failed: %s", attempt, attempts, error)
            ray.shutdown()
    raise RuntimeError(f"Ray did not start in {attempts} attempts")


def _table3(args) -> None:
    from benchmarks.slate_table3 import run_seed as table3_seed
    from benchmarks.slate_table3 import summarise as table3_summary

    stem = args.name if args.name != "slate_table1" else "slate_table3"
    if args.merge:
        per_seed = [s for p in args.merge for s in json.loads(p.read_text())["per_seed"]]
    else:
        with tempfile.TemporaryDirectory() as work:
            per_seed = [
                table3_seed(args.data, s, Path(work), args.ks, args.steps, args.um_epochs,
                            args.episode_length, args.max_pool, start_ray=_start_ray)
                for s in args.seeds
            ]  # fmt: skip
    table = table3_summary(per_seed)
    settings = {k: [str(p) for p in v] if k == "merge" and v else v for k, v in vars(args).items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"settings": settings, "per_seed": per_seed, "table": table}
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    with open(RESULTS / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    users = sorted({seed["test_users"] for seed in per_seed})
    print(f"\nMovieLens-100k, test-user simulator ({users} users, one episode each), "
          f"seeds {[seed['seed'] for seed in per_seed]}: mean ± std")  # fmt: skip
    print(f"{'k':>2} {'policy':<8} {'reward':>16} {'ctr':>14} {'train s':>8} "
          f"{'reward - greedy (same seed)':>30}")  # fmt: skip
    for row in table:
        reward = f"{row['reward_mean']:8.3f} ± {row['reward_std']:5.3f}"
        ctr = f"{row['ctr_mean']:6.3f} ± {row['ctr_std']:5.3f}"
        paired = (
            f"{row['vs_greedy_mean']:+7.3f} ± {row['vs_greedy_std']:5.3f}"
            f" (above on {row['above_greedy']}/{row['paired_seeds']})"
        )
        train_s = f"{row['train_s_mean']:8.0f}"
        print(f"{row['k']:>2} {row['policy']:<8} {reward} {ctr} {train_s} {paired}")
    for seed in per_seed:
        print(f"seed {seed['seed']}: test model P(no-click) {seed['no_click']}")


if __name__ == "__main__":
    main()
