"""Benchmark: `recrl prepare` (Ray Data) against a pandas per-session loop, same process.

For each input, both build the same transitions (checked row by row) and the ratio of their
wall times is reported. Ray's one-off start-up (runtime + worker processes) is reported
separately as the "cold" run; the ratio uses the median of the warm runs that follow, which
is what a long-lived cluster or a second job sees.

    python benchmarks/prepare_bench.py                         # YooChoose sample + generated
    python benchmarks/prepare_bench.py --generated-sessions 20000 120000
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recrl.envs.generated_dataset import write_generated_dataset  # noqa: E402
from recrl.envs.session_generator import SessionGeneratorConfig  # noqa: E402
from recrl.pipelines.prepare.config import PrepareConfig  # noqa: E402
from recrl.pipelines.prepare.pipeline import prepare  # noqa: E402
from recrl.pipelines.ray_runtime import ensure_ray  # noqa: E402

from benchmarks.pandas_baseline import (  # noqa: E402
    assert_same_transitions,
    build_transitions,
    generated_events,
    yoochoose_events,
)

logger = logging.getLogger("prepare_bench")
YOOCHOOSE = REPO.parent / "shared" / "data" / "yoochoose-rc15-sample"


def time_recrl(config_for, repeats: int) -> tuple[float, list[float], Path]:
    """Cold run, then ``repeats`` warm runs into fresh folders; returns their times."""
    times = []
    out = None
    for run in range(repeats + 1):
        out = Path(tempfile.mkdtemp(prefix=f"recrl-bench-{run}-"))
        start = time.perf_counter()
        prepare(config_for(out))
        times.append(time.perf_counter() - start)
    return times[0], times[1:], out


def bench_case(name: str, config_for, baseline, repeats: int) -> dict:
    logger.info("[%s] pandas per-session loop ...", name)
    start = time.perf_counter()
    expected = baseline()
    pandas_s = time.perf_counter() - start
    logger.info("[%s] recrl prepare, 1 cold + %d warm runs ...", name, repeats)
    cold_s, warm, out = time_recrl(config_for, repeats)
    rows = assert_same_transitions(out, expected)
    warm_s = statistics.median(warm)
    return {
        "case": name,
        "transitions": rows,
        "pandas_loop_s": round(pandas_s, 2),
        "recrl_cold_s": round(cold_s, 2),
        "recrl_warm_s": round(warm_s, 2),
        "recrl_warm_runs_s": [round(t, 2) for t in warm],
        "speedup_warm": round(pandas_s / warm_s, 1),
        "speedup_cold": round(pandas_s / cold_s, 1),
        "outputs_equal": True,
    }


def yoochoose_case(repeats: int) -> dict:
    def config_for(out: Path) -> PrepareConfig:
        return PrepareConfig(source="yoochoose", input_path=str(YOOCHOOSE), output_path=str(out))

    def baseline():
        events = yoochoose_events(
            str(YOOCHOOSE / "sample_clicks.csv"), str(YOOCHOOSE / "sample_buys.csv")
        )
        return build_transitions(events)

    return bench_case("yoochoose-rc15-sample", config_for, baseline, repeats)


def generated_case(n_sessions: int, repeats: int, workdir: Path) -> dict:
    folder = workdir / f"generated-{n_sessions}"
    dataset = write_generated_dataset(SessionGeneratorConfig(n_sessions=n_sessions), folder)

    def config_for(out: Path) -> PrepareConfig:
        return PrepareConfig(
            source="generic", input_path=str(folder / "sessions"), output_path=str(out)
        )

    def baseline():
        import pandas as pd

        frame = pd.concat([pd.read_parquet(p) for p in dataset.session_files])
        return build_transitions(generated_events(frame))

    result = bench_case(f"generated-{dataset.n_rows}-rows", config_for, baseline, repeats)
    result["input_rows"] = dataset.n_rows
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per case (3)")
    parser.add_argument(
        "--generated-sessions",
        type=int,
        nargs="*",
        default=[5000, 40000],
        help="sizes of generated inputs in sessions (~8 rows each)",
    )
    parser.add_argument("--skip-yoochoose", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for prepare.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pipelines").setLevel(logging.WARNING)

    start = time.perf_counter()
    ensure_ray()
    ray_start_s = time.perf_counter() - start
    results = []
    if not args.skip_yoochoose:
        if YOOCHOOSE.exists():
            results.append(yoochoose_case(args.repeats))
        else:
            logger.warning("skipping the YooChoose case: %s is absent", YOOCHOOSE)
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.generated_sessions:
            results.append(generated_case(n, args.repeats, Path(workdir)))

    print(f"\nray.init: {ray_start_s:.1f}s (not included below)")
    header = f"{'case':<34} {'rows':>9} {'pandas s':>9} {'cold s':>7} {'warm s':>7} {'ratio':>6}"
    print(header)
    for r in results:
        print(
            f"{r['case']:<34} {r['transitions']:>9} {r['pandas_loop_s']:>9} "
            f"{r['recrl_cold_s']:>7} {r['recrl_warm_s']:>7} {r['speedup_warm']:>5}x"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"ray_init_s": round(ray_start_s, 2), "results": results}
    (args.out / "prepare.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
