"""Benchmark: `recrl prepare` (Ray Data) against two single-process builds, same process.

For each input, three builds make the same transitions (checked row by row): `recrl
prepare`, the pandas per-session loop (`pandas_baseline.py`) and a pyarrow + numpy build
without a per-session loop (`arrow_baseline.py`, the fastest simple build in one process).
Ray's one-off start-up (runtime + worker processes) is reported separately as the "cold" run;
the ratios use the median of the warm runs that follow, which is what a long-lived cluster or
a second job sees. The peak memory of this process and everything below it (Ray's GCS,
raylet and workers) is sampled during the recrl runs (`process_memory.py`: the sum of RSS and
the sum of PSS).

``--scale N`` adds the YooChoose sample repeated N times (sessions renumbered per copy, the
same items): ×10 is 3.4M rows, ×100 34M, the size of the full YooChoose click log. The
inputs are written once under ``--workdir`` and reused. The pandas loop runs only up to
``--pandas-max-rows`` input rows (it takes minutes per million).

    python benchmarks/prepare_bench.py                         # YooChoose sample + generated
    python benchmarks/prepare_bench.py --generated-sessions 20000 120000
    python benchmarks/prepare_bench.py --skip-yoochoose --generated-sessions --scale 10 100
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
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

from benchmarks import arrow_baseline  # noqa: E402
from benchmarks.pandas_baseline import (  # noqa: E402
    assert_same_transitions,
    build_transitions,
    generated_events,
    yoochoose_events,
)
from benchmarks.process_memory import peak_memory  # noqa: E402

logger = logging.getLogger("prepare_bench")
YOOCHOOSE = REPO.parent / "shared" / "data" / "yoochoose-rc15-sample"


def time_recrl(config_for, repeats: int) -> tuple[float, list[float], Path, dict]:
    """Cold run, then ``repeats`` warm runs into fresh folders; returns their times, the
    last output and the peak memory over all of them (GiB), with the last run's seconds per
    stage (meta.json's ``timing_s``)."""
    times = []
    out = None
    with peak_memory() as peak:
        for run in range(repeats + 1):
            if out is not None:
                shutil.rmtree(out)  # the disk holds one output at a time
            out = Path(tempfile.mkdtemp(prefix=f"recrl-bench-{run}-"))
            start = time.perf_counter()
            stages = prepare(config_for(out)).meta["timing_s"]
            times.append(time.perf_counter() - start)
    memory = {
        "rss_sum_gib": round(peak.rss_bytes / 2**30, 2),
        "pss_sum_gib": round(peak.pss_bytes / 2**30, 2),
        "processes": peak.processes,
        "largest_processes_gib": [(cmd, round(size / 2**30, 2)) for cmd, size in peak.largest],
        "last_run_stages_s": stages,
    }
    return times[0], times[1:], out, memory


def bench_case(name: str, config_for, pandas_build, arrow_build, repeats: int) -> dict:
    """Time the builds of one input; ``pandas_build`` (or None to skip it) returns the
    pandas loop's frames, ``arrow_build(folder)`` writes the arrow build into ``folder``."""
    result: dict = {"case": name}
    # recrl first: the memory sampled during its runs is then not inflated by what the
    # baselines' allocations leave in this process
    logger.info("[%s] recrl prepare, 1 cold + %d warm runs ...", name, repeats)
    cold_s, warm, out, memory = time_recrl(config_for, repeats)
    expected = None
    if pandas_build is not None:
        logger.info("[%s] pandas per-session loop ...", name)
        start = time.perf_counter()
        expected = pandas_build()
        result["pandas_loop_s"] = round(time.perf_counter() - start, 2)
    logger.info("[%s] pyarrow + numpy build ...", name)
    arrow_out = Path(tempfile.mkdtemp(prefix="arrow-bench-"))
    start = time.perf_counter()
    arrow_build(arrow_out)
    arrow_s = time.perf_counter() - start
    rows = arrow_baseline.assert_same_as_recrl(out, arrow_out)
    if expected is not None:
        assert_same_transitions(out, expected)
    shutil.rmtree(out)
    shutil.rmtree(arrow_out)
    warm_s = statistics.median(warm)
    result.update({
        "transitions": rows,
        "arrow_numpy_s": round(arrow_s, 2),
        "recrl_cold_s": round(cold_s, 2),
        "recrl_warm_s": round(warm_s, 2),
        "recrl_warm_runs_s": [round(t, 2) for t in warm],
        "recrl_over_arrow": round(warm_s / arrow_s, 2),
        "peak_memory": memory,
        "outputs_equal": True,
    })  # fmt: skip
    if expected is not None:
        result["speedup_over_pandas"] = round(result["pandas_loop_s"] / warm_s, 1)
    return result


def write_scaled_yoochoose(factor: int, folder: Path) -> int:
    """The YooChoose sample repeated ``factor`` times into ``folder`` (session ids of copy
    k offset by k·10⁹, items unchanged); reused when complete. Returns the input rows."""
    done = folder / "rows.txt"
    if done.is_file():
        return int(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    rows = 0
    for name in ("sample_clicks.csv", "sample_buys.csv"):
        header, *body = (YOOCHOOSE / name).read_text().splitlines(keepends=True)
        split = [line.split(",", 1) for line in body]
        with (folder / name).open("w") as out:
            out.write(header)
            for k in range(factor):
                offset = k * 10**9
                out.writelines(f"{int(session) + offset},{rest}" for session, rest in split)
        rows += factor * len(body)
    done.write_text(str(rows))  # last: a folder without it is rewritten
    return rows


def scaled_case(factor: int, repeats: int, workdir: Path, pandas_max_rows: int) -> dict:
    folder = workdir / f"yoochoose-x{factor}"
    logger.info("[x%d] writing the input into %s (once) ...", factor, folder)
    rows = write_scaled_yoochoose(factor, folder)

    def config_for(out: Path) -> PrepareConfig:
        return PrepareConfig(source="yoochoose", input_path=str(folder), output_path=str(out))

    def pandas_build():
        clicks, buys = folder / "sample_clicks.csv", folder / "sample_buys.csv"
        events = yoochoose_events(str(clicks), str(buys))
        return build_transitions(events)

    result = bench_case(
        f"yoochoose-sample-x{factor}", config_for,
        pandas_build if rows <= pandas_max_rows else None,
        lambda out: arrow_baseline.build_yoochoose(folder, out), repeats,
    )  # fmt: skip
    result["input_rows"] = rows
    return result


def yoochoose_case(repeats: int) -> dict:
    def config_for(out: Path) -> PrepareConfig:
        return PrepareConfig(source="yoochoose", input_path=str(YOOCHOOSE), output_path=str(out))

    def pandas_build():
        events = yoochoose_events(
            str(YOOCHOOSE / "sample_clicks.csv"), str(YOOCHOOSE / "sample_buys.csv")
        )
        return build_transitions(events)

    def arrow_build(out: Path):
        arrow_baseline.build_yoochoose(YOOCHOOSE, out)

    return bench_case("yoochoose-rc15-sample", config_for, pandas_build, arrow_build, repeats)


def generated_case(n_sessions: int, repeats: int, workdir: Path) -> dict:
    folder = workdir / f"generated-{n_sessions}"
    dataset = write_generated_dataset(SessionGeneratorConfig(n_sessions=n_sessions), folder)

    def config_for(out: Path) -> PrepareConfig:
        return PrepareConfig(
            source="generic", input_path=str(folder / "sessions"), output_path=str(out)
        )

    def frame():
        import pandas as pd

        return generated_events(pd.concat([pd.read_parquet(p) for p in dataset.session_files]))

    def arrow_build(out: Path):
        events = frame()  # the generic source's ids are strings: encode them as recrl does
        columns = {
            "session_id": events["session_id"].to_numpy(),
            "timestamp": events["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64"),
            "item_id": events["item_id"].to_numpy(),
            "is_buy": events["is_buy"].to_numpy(),
        }
        arrow_baseline.write_tables(arrow_baseline.build_transitions(columns), out)

    result = bench_case(
        f"generated-{dataset.n_rows}-rows", config_for,
        lambda: build_transitions(frame()), arrow_build, repeats,
    )  # fmt: skip
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
    parser.add_argument("--scale", type=int, nargs="*", default=[],
                        help="the YooChoose sample repeated N times (10: 3.4M rows)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "prepare_bench",
                        help="folder of the --scale inputs, written once")  # fmt: skip
    parser.add_argument("--pandas-max-rows", type=int, default=5_000_000,
                        help="skip the pandas loop on larger inputs")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for prepare.json"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("recrl").setLevel(logging.WARNING)

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
    for factor in args.scale:
        results.append(scaled_case(factor, args.repeats, args.workdir, args.pandas_max_rows))
        write_report(args.out, ray_start_s, results)  # a long run keeps what it measured

    print(f"\nray.init: {ray_start_s:.1f}s (not included below)")
    print(table(results))
    write_report(args.out, ray_start_s, results)
    return 0


def table(results: list[dict]) -> str:
    """A markdown table: seconds of each build, recrl's warm time over the arrow build's,
    the pandas loop's over recrl's, and the peak memory of the recrl runs."""
    lines = [
        "| input | transitions | pandas loop s | pyarrow + numpy s | recrl cold s | recrl warm s "
        "| recrl / arrow | pandas / recrl | peak RSS sum GiB | peak PSS sum GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        memory = r["peak_memory"]
        lines.append(
            f"| {r['case']} | {r['transitions']:,} | {r.get('pandas_loop_s', '—')} "
            f"| {r['arrow_numpy_s']} | {r['recrl_cold_s']} | {r['recrl_warm_s']} "
            f"| {r['recrl_over_arrow']}× | {r.get('speedup_over_pandas', '—')}× "
            f"| {memory['rss_sum_gib']} | {memory['pss_sum_gib']} |"
        )
    return "\n".join(lines)


def write_report(out: Path, ray_start_s: float, results: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = {"ray_init_s": round(ray_start_s, 2), "results": results}
    (out / "prepare.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
