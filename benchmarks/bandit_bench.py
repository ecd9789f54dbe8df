"""Benchmark: REN slate latency and the REN paper's Figure 1 on SYN-S/M/L (design.md §6).

(a) Slate latency. REN picks a slate of 100 from 8,000 items with 50-dim embeddings, keeping
    every item's exploration term current after each pick by the Sherman–Morrison downdate
    (``ren_slate``, O(I·d) per pick), lazily from a heap of upper bounds (``ren_slate_lazy``,
    what RENPolicy uses: forms only fall, so stale forms are upper bounds) and, in the same
    run, by recomputing every quadratic form from the updated inverse (``ren_slate_recompute``,
    O(I·d²) per pick). All must return the same slate. Targets for the policy's (lazy) path:
    ≥ 10× faster than recompute and ≤ 17.5 ms per slate (the REN paper reports 175 ms).
(b) Figure 1. Oracle, Random, greedy (relevance only) and REN (optionally REN-1,2, REN-1,3)
    on SYN-S, SYN-M and SYN-L over several seeds; reward per round as a rolling mean over
    100 rounds. Target: REN's last-window reward ≥ 0.9 of the oracle's, greedy clearly below.
    The curves are saved as a PNG and, with the table, logged to MLflow.

examples:
  python benchmarks/bandit_bench.py --part latency
  python benchmarks/bandit_bench.py --part figure --rounds 2000 --seeds 0 1 2
  python benchmarks/bandit_bench.py --part figure --envs syn-s --policies greedy ren ren-1,2 \\
      --lambda-d 0.3 --rounds 1000 --seeds 0
  mlflow ui --backend-store-uri sqlite:///mlruns.db    # experiment "recrl-bandit-bench"
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
import torch  # noqa: E402
from recrl.models.bandits.ren import ren_slate, ren_slate_lazy, ren_slate_recompute  # noqa: E402
from recrl.pipelines.bandit.config import BanditRunConfig  # noqa: E402
from recrl.pipelines.bandit.job import run_bandit  # noqa: E402
from recrl.pipelines.bandit.loop import BanditRunResult  # noqa: E402

logger = logging.getLogger("bandit_bench")
LATENCY_TARGET_MS = 17.5
SPEEDUP_TARGET = 10.0
ORACLE_SHARE_TARGET = 0.9


def slate_latency(
    n_items: int = 8000, dim: int = 50, k: int = 100, repeats: int = 5, threads: int = 1
) -> dict:
    """Median and best ms per slate of each REN slate version on the same inputs (the best
    of ``repeats`` is the figure least disturbed by other processes on a shared machine)."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    items = torch.randn(n_items, dim, generator=generator) / dim**0.5
    theta = torch.randn(1, dim, generator=generator) / dim**0.5
    history = torch.randn(60, dim, generator=generator) / dim**0.5
    inverse = torch.linalg.inv(torch.eye(dim) + history.T @ history).unsqueeze(0)
    impressions = torch.randint(0, 100, (n_items,), generator=generator)
    args = (items, theta, inverse, impressions, k)
    weights = {"lambda_d": 0.1, "lambda_u": 10**0.5 * 0.1}

    def timed(fn) -> tuple[list[float], torch.Tensor]:
        fn(*args, **weights)  # warm-up
        times, slate = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            slate = fn(*args, **weights)
            times.append((time.perf_counter() - start) * 1e3)
        return times, slate

    lazy_times, lazy = timed(ren_slate_lazy)
    fast_times, fast = timed(ren_slate)
    slow_times, slow = timed(ren_slate_recompute)
    lazy_ms, fast_ms = statistics.median(lazy_times), statistics.median(fast_times)
    slow_ms = statistics.median(slow_times)
    best = {"lazy_best_ms": min(lazy_times), "incremental_best_ms": min(fast_times),
            "recompute_best_ms": min(slow_times)}  # fmt: skip
    return {
        "items": n_items, "dim": dim, "k": k, "threads": threads, "repeats": repeats,
        "lazy_ms": lazy_ms, "incremental_ms": fast_ms, "recompute_ms": slow_ms,
        "speedup": slow_ms / lazy_ms, "incremental_speedup": slow_ms / fast_ms,
        "same_slate": bool(torch.equal(fast, slow) and torch.equal(lazy, slow)),
        "float64_same_slate": _same_slate_float64(*args, weights), **best,
    }  # fmt: skip


def _same_slate_float64(items, theta, inverse, impressions, k, weights) -> bool:
    args = (items.double(), theta.double(), inverse.double(), impressions, k)
    reference = ren_slate_recompute(*args, **weights)
    return all(torch.equal(fn(*args, **weights), reference) for fn in (ren_slate, ren_slate_lazy))


def figure_runs(envs, policies, seeds, rounds, lambda_d) -> dict[str, dict[str, list]]:
    """{env: {policy: [BanditRunResult per seed]}}."""
    results: dict[str, dict[str, list[BanditRunResult]]] = {}
    for env in envs:
        for policy in policies:
            settings = {"lambda_d": lambda_d} if policy.startswith("ren") else {}
            for seed in seeds:
                config = BanditRunConfig(
                    policy=policy, env=env, rounds=rounds, seed=seed,
                    policy_settings=settings, tracking=False,
                )  # fmt: skip
                result = run_bandit(config, progress=False)
                results.setdefault(env, {}).setdefault(policy, []).append(result)
                logger.info(
                    "%s %s seed %d: last-window %.3f in %.1fs",
                    env, policy, seed, result.final_window_reward, result.seconds,
                )  # fmt: skip
    return results


def summarise(results) -> list[dict]:
    rows = []
    for env, by_policy in results.items():
        oracle = np.mean([r.final_window_oracle for r in next(iter(by_policy.values()))])
        for policy, runs in by_policy.items():
            finals = [r.final_window_reward for r in runs]
            rows.append(
                {
                    "env": env, "policy": policy, "seeds": len(runs),
                    "last_window": float(np.mean(finals)), "last_window_std": float(np.std(finals)),
                    "share_of_oracle": float(np.mean(finals) / oracle),
                    "cumulative_regret": float(np.mean([r.cumulative_regret[-1] for r in runs])),
                    "seconds_per_run": float(np.mean([r.seconds for r in runs])),
                }
            )  # fmt: skip
    return rows


def plot(results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(results)
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for policy, runs in results[env].items():
            curves = np.stack([r.window_mean() for r in runs])
            mean = curves.mean(0)
            rounds = np.arange(1, len(mean) + 1)
            ax.plot(rounds, mean, label=policy, lw=1.4)
            if len(runs) > 1:
                ax.fill_between(rounds, curves.min(0), curves.max(0), alpha=0.15)
        n_items = {"syn-s": 28, "syn-m": 280, "syn-l": 1400}.get(env, "?")
        ax.set_title(f"{env.upper()} ({n_items} items)")
        ax.set_xlabel("round")
        ax.set_ylabel("reward (rolling mean, 100 rounds)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_latency(latency: dict) -> None:
    ok = latency["speedup"] >= SPEEDUP_TARGET and latency["lazy_ms"] <= LATENCY_TARGET_MS
    print(
        f"\n(a) REN slate of {latency['k']} from {latency['items']} items, d={latency['dim']}, "
        f"{latency['threads']} thread(s), median of {latency['repeats']}:\n"
        f"    ms/slate (median, best)   lazy {latency['lazy_ms']:.2f}, "
        f"{latency['lazy_best_ms']:.2f}   eager {latency['incremental_ms']:.2f}, "
        f"{latency['incremental_best_ms']:.2f}   recompute {latency['recompute_ms']:.2f}, "
        f"{latency['recompute_best_ms']:.2f}\n"
        f"    speed-up over recompute (medians): lazy {latency['speedup']:.1f}x, "
        f"eager {latency['incremental_speedup']:.1f}x\n"
        f"    same slate: {latency['same_slate']} (float64: {latency['float64_same_slate']})\n"
        f"    targets >= {SPEEDUP_TARGET:.0f}x and <= {LATENCY_TARGET_MS} ms: "
        f"{'met' if ok else 'NOT met'}"
    )


def print_table(rows: list[dict]) -> None:
    header = f"{'last window':>15} {'/oracle':>8} {'regret':>9} {'s/run':>7}"
    print(f"\n(b) {'env':6} {'policy':9} {header}")
    for row in rows:
        print(
            f"    {row['env']:6} {row['policy']:9} {row['last_window']:8.3f} ± "
            f"{row['last_window_std']:.3f} {row['share_of_oracle']:8.3f} "
            f"{row['cumulative_regret']:9.1f} {row['seconds_per_run']:7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--part", choices=("latency", "figure", "all"), default="all")
    parser.add_argument("--envs", nargs="+", default=["syn-s", "syn-m", "syn-l"])
    parser.add_argument(
        "--policies", nargs="+", default=["oracle", "random", "greedy", "ren"],
        help="policies of (b); add ren-1,2 ren-1,3 for the ablation (REN paper Fig. 2)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds per run (2000)")
    parser.add_argument("--lambda-d", type=float, default=0.3, help="REN λ_d; λ_u = √10·λ_d")
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for (a) (1)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    if args.part in ("latency", "all"):
        report["latency"] = slate_latency(repeats=args.latency_repeats, threads=args.threads)
        print_latency(report["latency"])
    figure = None
    if args.part in ("figure", "all"):
        results = figure_runs(args.envs, args.policies, args.seeds, args.rounds, args.lambda_d)
        report["figure"] = summarise(results)
        report["figure_settings"] = {
            "rounds": args.rounds, "seeds": args.seeds, "lambda_d": args.lambda_d,
        }  # fmt: skip
        print_table(report["figure"])
        figure = plot(results, args.out / "bandit_figure1.png")
        print(f"\nplot: {figure}")
    summary = args.out / "bandit_bench.json"
    summary.write_text(json.dumps(report, indent=2))
    print(f"summary: {summary}")
    if not args.no_mlflow:
        _log_to_mlflow(report, figure, summary)
    return 0


def _log_to_mlflow(report: dict, figure: Path | None, summary: Path) -> None:
    from recrl.pipelines.tracking import Tracker, dashboard_command

    with Tracker(experiment="recrl-bandit-bench") as tracker:
        tracker.start("bandit_bench", params=report.get("figure_settings", {}))
        metrics = {}
        if "latency" in report:
            lat = report["latency"]
            metrics.update(
                {
                    "latency/lazy_ms": lat["lazy_ms"],
                    "latency/incremental_ms": lat["incremental_ms"],
                    "latency/incremental_speedup": lat["incremental_speedup"],
                    "latency/recompute_ms": lat["recompute_ms"],
                    "latency/speedup": lat["speedup"],
                }
            )
        for row in report.get("figure", []):
            prefix = f"figure1/{row['env']}/{row['policy'].replace(',', '_')}"
            metrics[f"{prefix}/last_window"] = row["last_window"]
            metrics[f"{prefix}/share_of_oracle"] = row["share_of_oracle"]
        tracker.log_metrics(metrics, step=0)
        tracker.log_artifact(summary)
        if figure is not None:
            tracker.log_artifact(figure)
    print(f"MLflow: {dashboard_command()}")


if __name__ == "__main__":
    sys.exit(main())
