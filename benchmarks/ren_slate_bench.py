"""Benchmark: REN's exact lazy-greedy slate, bounds in an array against bounds in a heap.

REN (Wang et al., AAAI 2022) picks a slate of 100 from 8,000 items with 50-dim embeddings,
greedily on ``μᵀθ + λ_d·√(μᵀA⁻¹μ) + λ_u·σ`` with ``A`` growing by each pick. Both versions
are the same lazy greedy and return the same slate: ``ren_slate_lazy_heap`` keeps the upper
bounds in a Python heap, ``ren_slate_lazy`` (what ``RENPolicy`` uses) in a float64 array
searched with ``argmax``. They run interleaved in one process on the same inputs, so load
from other processes hits both alike; the ratio of medians is the figure to read.
Target: array ≤ 0.8× heap, same slate.

    python benchmarks/ren_slate_bench.py
    python benchmarks/ren_slate_bench.py --items 8000 --dim 50 --k 100 --users 4 --repeats 21
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from recrl.models.bandits.ren import ren_slate_lazy, ren_slate_lazy_heap  # noqa: E402

RATIO_TARGET = 0.8


def inputs(n_items: int, dim: int, users: int, seed: int = 0) -> tuple:
    """The instance of ``bandit_bench.py --part latency``: unit-scale random embeddings, a
    60-item history per user and random impression counts (float32)."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randn(n_items, dim, generator=generator) / dim**0.5
    theta = torch.randn(users, dim, generator=generator) / dim**0.5
    history = torch.randn(users, 60, dim, generator=generator) / dim**0.5
    inverse = torch.linalg.inv(torch.eye(dim) + history.transpose(1, 2) @ history)
    impressions = torch.randint(0, 100, (n_items,), generator=generator)
    return items, theta, inverse, impressions


def compare(
    n_items: int = 8000, dim: int = 50, k: int = 100, users: int = 1, repeats: int = 15
) -> dict:
    items, theta, inverse, impressions = inputs(n_items, dim, users)
    args = (items, theta, inverse, impressions, k)
    weights = {"lambda_d": 0.1, "lambda_u": 10**0.5 * 0.1}
    versions = {"heap": ren_slate_lazy_heap, "array": ren_slate_lazy}
    times: dict[str, list[float]] = {name: [] for name in versions}
    slates = {name: fn(*args, **weights) for name, fn in versions.items()}  # warm-up
    for _ in range(repeats):
        for name, fn in versions.items():  # interleaved
            start = time.perf_counter()
            slate = fn(*args, **weights)
            times[name].append((time.perf_counter() - start) * 1e3)
            if not torch.equal(slate, slates[name]):
                raise AssertionError(f"{name}: the slate changed between runs")
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "items": n_items, "dim": dim, "k": k, "users": users, "repeats": repeats,
        "threads": torch.get_num_threads(),
        "heap_ms": round(median["heap"], 3), "array_ms": round(median["array"], 3),
        "heap_best_ms": round(min(times["heap"]), 3),
        "array_best_ms": round(min(times["array"]), 3),
        "ratio": round(median["array"] / median["heap"], 3),
        "ratio_best": round(min(times["array"]) / min(times["heap"]), 3),
        "same_slate": bool(torch.equal(slates["array"], slates["heap"])),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--k", type=int, default=100, help="slate size")
    parser.add_argument("--users", type=int, default=1, help="slates per call")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = compare(args.items, args.dim, args.k, args.users, args.repeats)
    print(json.dumps(result))
    ok = result["same_slate"] and result["ratio"] <= RATIO_TARGET
    print(
        f"REN slate of {args.k} from {args.items} (d={args.dim}, {args.users} user(s)): heap "
        f"{result['heap_ms']:.2f} ms, array {result['array_ms']:.2f} ms (medians of "
        f"{args.repeats}) -> ratio {result['ratio']:.3f} (target <= {RATIO_TARGET}); "
        f"same slate: {result['same_slate']} -> {'OK' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
