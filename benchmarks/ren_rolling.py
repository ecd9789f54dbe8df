"""Benchmark: REN against greedy and random in the rolling temporal protocol, scored by replay.

The protocol is ``recrl.pipelines.bandit.rolling`` (REN paper, "Joint Learning and Exploration
Procedure in Temporal Data"): the prepared YooChoose sample cut by session start into equal
windows in time; a SASRec next-click model trained on window 0, fine-tuned after every served
window; each policy serves the sampled sessions of windows 1.. step by step with a slate out of
the whole catalogue, rewarded 1 when the logged next click is in it. Each seed writes
``<out>/seed<S>.json``; the figure (reward and distinct items per window, mean ± std over
seeds) goes to ``docs/img/ren_rolling.png`` and the table to stdout.

    python benchmarks/ren_rolling.py --seeds 0 1 2
    python benchmarks/ren_rolling.py --seeds 0 --sessions-per-window 300   # a quick look
    python benchmarks/ren_rolling.py --seeds 0 1 2 --report-only           # table + figure
    python benchmarks/ren_rolling.py --seeds 0 --finetune-on collected --out runs/ren_collected
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from recrl.pipelines.bandit.rolling import (  # noqa: E402
    PolicyEntry,
    RollingConfig,
    as_record,
    run_rolling,
)

logger = logging.getLogger("ren_rolling")
FIGURE = REPO / "docs" / "img" / "ren_rolling.png"


def policies(lambdas: list[float]) -> tuple[PolicyEntry, ...]:
    """REN at each λ_d (λ_u = √10·λ_d), then greedy and random."""
    ren = tuple(PolicyEntry(f"ren λd={lam:g}", "ren", {"lambda_d": lam}) for lam in lambdas)
    return (*ren, PolicyEntry("greedy", "greedy"), PolicyEntry("random", "random"))


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    config = RollingConfig(
        data_path=args.data, n_windows=args.windows, slate_size=args.k,
        sessions_per_window=args.sessions_per_window, initial_steps=args.initial_steps,
        finetune_steps=args.finetune_steps, finetune_on=args.finetune_on, seed=seed,
        policies=policies(args.lambdas),
    )  # fmt: skip
    record = as_record(run_rolling(config))
    path = Path(args.out) / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    logger.info("seed %d: %.0f s, written to %s", seed, record["wall_s"], path)
    return record


def summarise(records: list[dict]) -> tuple[list[int], dict, dict]:
    """Windows, and label -> (mean, std) arrays over seeds of reward and distinct items."""
    windows = [w["window"] for w in records[0]["windows"]]
    labels = list(records[0]["windows"][0]["rewards"])

    def stats(key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for label in labels:
            values = np.array([[w[key][label] for w in r["windows"]] for r in records])
            out[label] = (values.mean(0), values.std(0))
        return out

    return windows, stats("rewards"), stats("distinct_items")


def table(records: list[dict]) -> str:
    windows, reward, distinct = summarise(records)
    dates = [
        np.datetime64(w["start_ns"], "ns").astype("datetime64[D]") for w in records[0]["windows"]
    ]
    head = "| policy | " + " | ".join(f"w{w} ({d})" for w, d in zip(windows, dates, strict=True))
    lines = [head + " | mean |", "|---" * (len(windows) + 2) + "|"]
    for label, (mean, std) in reward.items():
        cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(mean, std, strict=True))
        lines.append(f"| {label} | {cells} | {mean.mean():.4f} |")
    lines.append("")
    lines.append("distinct items recommended per window (mean over seeds):")
    lines.append(head + " |")
    lines.append("|---" * (len(windows) + 1) + "|")
    for label, (mean, _) in distinct.items():
        lines.append(f"| {label} | " + " | ".join(f"{m:,.0f}" for m in mean) + " |")
    steps = [w["steps"] for w in records[0]["windows"]]
    sessions = [w["sessions"] for w in records[0]["windows"]]
    lines.append("")
    seed = records[0]["config"]["seed"]
    lines.append(f"served sessions per window {sessions}, steps {steps} (seed {seed})")
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> None:
    """Reward per window; each policy's reward minus greedy's on the same seed (the steps and
    the representation are shared, so the paired difference is the sharp comparison); distinct
    items recommended per window. Mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows, reward, distinct = summarise(records)
    greedy = np.array([[w["rewards"]["greedy"] for w in r["windows"]] for r in records])
    k = records[0]["config"]["slate_size"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    for label in reward:
        left.errorbar(windows, *reward[label], marker="o", capsize=3, label=label)
        right.errorbar(windows, *distinct[label], marker="o", capsize=3, label=label)
        if label in ("greedy", "random"):
            continue
        own = np.array([[w["rewards"][label] for w in r["windows"]] for r in records])
        gap = own - greedy
        middle.errorbar(windows, gap.mean(0), yerr=gap.std(0), marker="o", capsize=3, label=label)
    middle.axhline(0.0, color="grey", lw=1)
    left.set_ylabel(f"replay reward per step (hit rate @ {k})")
    middle.set_ylabel("reward − greedy's (same seed)")
    right.set_ylabel("distinct items recommended")
    for axis in (left, middle, right):
        axis.set_xlabel("served window (equal length in time)")
        axis.set_xticks(windows)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(
        f"Rolling protocol on the YooChoose sample, replay; mean ± std over {len(records)} seed(s)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    defaults = RollingConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=defaults.data_path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--windows", type=int, default=defaults.n_windows)
    parser.add_argument("--k", type=int, default=defaults.slate_size)
    parser.add_argument("--sessions-per-window", type=int, default=defaults.sessions_per_window)
    parser.add_argument("--initial-steps", type=int, default=defaults.initial_steps)
    parser.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps)
    parser.add_argument(
        "--finetune-on", choices=("logged", "collected"), default=defaults.finetune_on
    )
    parser.add_argument(
        "--lambdas", type=float, nargs="+", default=[e.settings["lambda_d"] for e in
        defaults.policies if e.policy == "ren"], help="REN λ_d values, one policy each",
    )  # fmt: skip
    parser.add_argument("--out", default="runs/ren_rolling")
    parser.add_argument("--figure", default=str(FIGURE))
    parser.add_argument(
        "--report-only", action="store_true", help="read <out>/seed<S>.json, run nothing"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # the tensors are small and the machine is shared: intra-op threads only add contention
    torch.set_num_threads(1)
    began = time.perf_counter()
    records = []
    for seed in args.seeds:
        path = Path(args.out) / f"seed{seed}.json"
        records.append(json.loads(path.read_text()) if args.report_only else run_seed(args, seed))
    figure(records, Path(args.figure))
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print(
        f"wall time: {time.perf_counter() - began:.0f} s here; per seed "
        + ", ".join(f"{r['config']['seed']}: {r['wall_s']:.0f} s" for r in records)
    )
    print(table(records))
    print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
