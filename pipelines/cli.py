"""The ``recrl`` command line. Argument parsing lives here alone; everything else takes
typed configs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import time
from pathlib import Path

from recrl.pipelines.commands import bandit as bandit_command
from recrl.pipelines.commands import mlflow_sync as mlflow_sync_command
from recrl.pipelines.commands import slate as slate_command
from recrl.pipelines.commands import submit as submit_command
from recrl.pipelines.commands import train as train_command
from recrl.pipelines.commands import tune as tune_command
from recrl.pipelines.commands import usermodel as usermodel_command
from recrl.pipelines.errors import EXIT_INTERRUPTED, SettingError, UserError
from recrl.pipelines.prepare.config import SOURCES, TIMESTAMP_CHOICES, PrepareConfig
from recrl.pipelines.summaries import format_stats, format_train_result

logger = logging.getLogger("recrl")

DEFAULT_WORKDIR = Path("runs/demo")

_MAIN_EPILOG = """\
typical workflow:
  recrl generate --out data/generated            # synthetic sessions with a known user model
  recrl prepare --source generic --input data/generated/sessions --output data/prepared
  recrl stats data/prepared                      # what was kept, dropped and split
  recrl demo                                     # all of the above on the default dataset

real logs:
  recrl prepare --source yoochoose --input path/to/yoochoose --output data/rc15
  recrl prepare --source retailrocket --input path/to/events.csv --output data/rr

Inside a Ray cluster (ray job submit ... -- recrl prepare ...) the command joins the
cluster in RAY_ADDRESS; otherwise it starts a local Ray runtime.
"""

_PREPARE_EPILOG = """\
sources and the files they look for in --input (a file or a folder):
  yoochoose     *clicks*.csv|dat and *buys*.csv|dat (header row optional)
  retailrocket  events.csv: view -> click, addtocart -> purchase, transaction dropped
  movielens     u.data (100K), ratings.dat (1M/10M) or ratings.csv; every rating a click
  open_bandit   all.csv|men.csv|women.csv: clicked impressions, session = user features
  generic       *.parquet or *.csv with session_id,timestamp,item_id,event(click|purchase)

output (--output):
  train/ val/ test/   parquet shards; one row per event: state int32[L], state_len,
                      action, reward, is_buy, next_state, next_state_len, done
  meta.json           n_items, pad_id, L, rewards, split sizes, item popularity,
                      input/kept/dropped rows per reason (they add up), source hashes,
                      and the manifest: every shard's rows, bytes and SHA-256
  items.parquet       encoded item id -> raw item id; sessions.parquet likewise

Running it again with the same settings and inputs reuses the output once its shards
match the manifest; different settings need --overwrite. The new dataset is built in a
hidden sibling folder and swapped in when complete, so a failed or interrupted run
leaves the old one whole. A folder holding files recrl did not write is refused.

example:
  recrl prepare --source yoochoose --input ../shared/data/yoochoose-rc15-sample \\
      --output data/rc15 --state-len 10 --seed 0
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recrl",
        description="Distributed offline RL for sequential recommendation, on Ray.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_generate(commands)
    _add_prepare(commands)
    _add_stats(commands)
    train_command.register(commands)
    _add_demo(commands)
    tune_command.register(commands)
    usermodel_command.register(commands)
    slate_command.register(commands)
    bandit_command.register(commands)
    submit_command.register(commands)
    mlflow_sync_command.register(commands)
    return parser


def _add_generate(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="write the synthetic default dataset (sessions with a known user model)",
        description=textwrap.dedent(
            """\
            Write logged sessions drawn from a known user model: users with latent tastes
            that drift within a session, Zipf-like item popularity, clicks and a few percent
            purchases. Output: OUT/sessions/*.parquet in the generic input schema,
            OUT/ground_truth.npz (the model's parameters) and OUT/generator.json."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--sessions", type=int, default=5000, help="number of sessions (5000)")
    p.add_argument("--items", type=int, default=1000, help="catalogue size (1000)")
    p.add_argument("--users", type=int, default=1500, help="number of users (1500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument(
        "--purchase-rate",
        type=float,
        default=0.03,
        help="fraction of rows that are purchases (0.03)",
    )
    p.set_defaults(handler=_run_generate)


def _add_prepare(commands) -> None:
    p = commands.add_parser(
        "prepare",
        help="turn a session log into RL transitions (Ray Data)",
        description="Parse, clean, encode and split a session log, then write one "
        "transition per event (design.md §1, the RC15 recipe of Xin et al.).",
        epilog=_PREPARE_EPILOG + _drop_reasons_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", required=True, choices=SOURCES, help="input format")
    p.add_argument("--input", required=True, help="input file or folder (local, s3://, gs://)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--state-len", type=int, default=10, help="L, items per state (10)")
    p.add_argument(
        "--min-session-clicks",
        type=int,
        default=2,
        help="keep sessions with MORE than this many clicks (2)",
    )
    p.add_argument(
        "--min-item-count",
        type=int,
        default=0,
        help="drop items with at most this many events; 0 keeps all (0)",
    )
    p.add_argument(
        "--split",
        choices=("session", "time"),
        default="session",
        help="random split of sessions, or by session start time (session)",
    )
    p.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.8, 0.1, 0.1),
        metavar=("TRAIN", "VAL", "TEST"),
        help="session fractions (0.8 0.1 0.1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the session split (0)")
    p.add_argument("--r-click", type=float, default=0.2, help="reward of a click (0.2)")
    p.add_argument("--r-buy", type=float, default=1.0, help="reward of a purchase (1.0)")
    p.add_argument(
        "--max-invalid-fraction",
        type=float,
        default=0.01,
        help="fail when more than this fraction of all rows have a bad value of any kind "
        "(malformed row, invalid session id, timestamp, item id or event) (0.01)",
    )
    p.add_argument(
        "--timestamp-unit",
        choices=TIMESTAMP_CHOICES,
        default=None,
        help="timestamp format of the whole input: iso (ISO-8601, with or without zone), "
        "epoch s/ms/us/ns, or auto (detected from the first rows of every file); "
        "default: the source's own (auto for generic). Values that do not fit are "
        "invalid_timestamp, never re-read in another unit",
    )
    p.add_argument(
        "--time-range",
        type=int,
        nargs=2,
        default=(1990, 2100),
        metavar=("FIRST", "LAST"),
        help="plausible years of an event; timestamps outside are invalid (1990 2100)",
    )
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep exact duplicate events (same session, item, timestamp, event); by "
        "default all but the first are dropped as duplicate_event",
    )
    p.add_argument(
        "--encoding",
        default="utf-8",
        help="text encoding of CSV inputs, any Python codec name, e.g. latin-1 (utf-8)",
    )
    p.add_argument(
        "--retailrocket-purchase",
        choices=("addtocart", "transaction"),
        default="addtocart",
        help="RetailRocket event counted as purchase",
    )
    p.add_argument(
        "--movielens-positive-threshold",
        type=float,
        default=None,
        help="MovieLens ratings >= this become purchases (off)",
    )
    p.add_argument(
        "--rows-per-shard",
        type=int,
        default=1_000_000,
        help="max transitions per parquet file (1000000)",
    )
    p.add_argument(
        "--num-partitions",
        type=int,
        default=None,
        help="session partitions for the window stage (auto)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output folder that holds a different dataset",
    )
    p.set_defaults(handler=_run_prepare)


def _drop_reasons_help() -> str:
    from recrl.pipelines.prepare.schema import DROP_REASON_HELP

    lines = ["", "drop reasons (counted in meta.json; the first five are bad values):"]
    for reason, phrase in DROP_REASON_HELP.items():
        lines += textwrap.wrap(
            phrase, width=88, initial_indent=f"  {reason:<19} ", subsequent_indent=" " * 22
        )
    lines += [
        "",
        "ids: missing, empty, nan, null, None and <NA> (any case) are invalid; negative",
        "integer ids are valid ids as written, in every source.",
    ]
    return "\n".join(lines) + "\n"


def _add_stats(commands) -> None:
    p = commands.add_parser(
        "stats",
        help="print the statistics of a prepared dataset",
        description="Print the meta.json summary of a folder written by `recrl prepare`.",
    )
    p.add_argument("dataset", help="prepared dataset folder")
    p.add_argument("--json", action="store_true", help="print meta.json as is")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also check every shard's SHA-256 against the manifest in meta.json (reads "
        "all data); sizes and row counts are always checked",
    )
    p.set_defaults(handler=_run_stats)


def _add_demo(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="generate the default dataset, prepare it, train sasrec_ccql briefly",
        description="The README's main job: generate the embedded default dataset, run "
        "`recrl prepare` on it with Ray Data, print its statistics, then train sasrec_ccql "
        "for a short budget with RLlib and print its test metrics next to a popularity "
        "baseline. Runs are logged to MLflow (sqlite:///mlruns.db unless "
        "MLFLOW_TRACKING_URI is set).",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"folder for the generated and prepared data ({DEFAULT_WORKDIR})",
    )
    p.add_argument("--sessions", type=int, default=5000, help="generated sessions (5000)")
    p.add_argument("--seed", type=int, default=0, help="seed of generator, split, model (0)")
    p.add_argument(
        "--steps", type=int, default=400, help="training updates; 0 stops after preparing (400)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=_run_demo)


# --- handlers -----------------------------------------------------------------------


def _run_generate(args) -> int:
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.checks import check_output_dir
    from recrl.pipelines.settings import refused

    with refused():
        config = SessionGeneratorConfig(
            seed=args.seed,
            n_sessions=args.sessions,
            n_items=args.items,
            n_users=args.users,
            purchase_rate=args.purchase_rate,
        )
    check_output_dir(args.out, "--out")
    start = time.perf_counter()
    dataset = write_generated_dataset(config, args.out)
    print(
        f"generated {dataset.n_sessions} sessions, {dataset.n_rows} rows "
        f"({dataset.n_purchases} purchases) in {time.perf_counter() - start:.1f}s "
        f"-> {dataset.root / 'sessions'}"
    )
    return 0


def _prepare_config(args) -> PrepareConfig:
    return PrepareConfig(
        source=args.source,
        input_path=args.input,
        output_path=args.output,
        state_len=args.state_len,
        r_click=args.r_click,
        r_buy=args.r_buy,
        min_session_clicks=args.min_session_clicks,
        min_item_count=args.min_item_count,
        split=args.split,
        split_fractions=tuple(args.split_fractions),
        seed=args.seed,
        max_invalid_fraction=args.max_invalid_fraction,
        retailrocket_purchase=args.retailrocket_purchase,
        movielens_positive_threshold=args.movielens_positive_threshold,
        rows_per_shard=args.rows_per_shard,
        num_partitions=args.num_partitions,
        overwrite=args.overwrite,
        timestamp_unit=args.timestamp_unit,
        time_range=tuple(args.time_range),
        keep_duplicates=args.keep_duplicates,
        encoding=args.encoding,
    )


def _run_prepare(args) -> int:
    from recrl.pipelines.prepare.pipeline import prepare

    start = time.perf_counter()
    result = prepare(_prepare_config(args))
    print(format_stats(result.meta))
    verb = "reused" if result.reused else f"prepared in {time.perf_counter() - start:.1f}s"
    print(f"\n{verb}: {result.output_path}")
    return 0


def _run_stats(args) -> int:
    from recrl.pipelines.checks import check_prepared_dataset

    meta = check_prepared_dataset(args.dataset, "recrl stats", checksums=args.verify)
    print(json.dumps(meta, indent=2) if args.json else format_stats(meta))
    return 0


def _run_demo(args) -> int:
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.checks import check_output_dir
    from recrl.pipelines.prepare.pipeline import prepare
    from recrl.pipelines.settings import refused

    generated = args.workdir / "generated"
    prepared = args.workdir / "prepared"
    with refused():
        config = SessionGeneratorConfig(seed=args.seed, n_sessions=args.sessions)
    if args.steps < 0:
        raise SettingError(f"--steps must be >= 0 (0 stops after preparing), got {args.steps}")
    check_output_dir(args.workdir, "--workdir")
    start = time.perf_counter()
    if not (generated / "generator.json").exists() or _generator_changed(generated, config):
        dataset = write_generated_dataset(config, generated)
        logger.info("generated %d rows in %.1fs", dataset.n_rows, time.perf_counter() - start)
    result = prepare(
        PrepareConfig(
            source="generic",
            input_path=str(generated / "sessions"),
            output_path=str(prepared),
            seed=args.seed,
            overwrite=True,
        )
    )
    print(format_stats(result.meta))
    if args.steps > 0:
        from recrl.pipelines.sasrec.config import TrainConfig
        from recrl.pipelines.sasrec.job import train

        train_config = TrainConfig.for_variant(
            "sasrec_ccql", str(prepared), seed=args.seed, total_steps=args.steps,
            eval_interval=max(args.steps // 4, 1), tracking=not args.no_mlflow,
        )  # fmt: skip
        print()
        outcome = train(train_config, run_dir=args.workdir / "sasrec_ccql", overwrite=True)
        print(format_train_result(train_config, outcome))
    print(f"\ndemo finished in {time.perf_counter() - start:.1f}s; dataset: {prepared}")
    return 0


def _generator_changed(folder: Path, config) -> bool:
    import dataclasses

    saved = json.loads((folder / "generator.json").read_text()).get("config", {})
    return saved != json.loads(json.dumps(dataclasses.asdict(config)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return args.handler(args)
    except BaseException as error:
        cause = _user_cause(error)
        if isinstance(cause, UserError):
            return _report(error, cause.exit_code, verbose=args.verbose, message=str(cause))
        if isinstance(cause, KeyboardInterrupt):
            return _report(error, EXIT_INTERRUPTED, verbose=args.verbose, message="interrupted")
        raise


def _user_cause(error: BaseException) -> BaseException | None:
    """The `UserError` or KeyboardInterrupt behind ``error``: itself, or what a Ray task or
    actor raised (Ray wraps it in a RayTaskError, whose text is the remote traceback), or
    the error it was raised from. None for anything else (a bug: the traceback is shown)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        wrapped = type(error).__name__.startswith(("RayTaskError", "RayActorError"))
        if not wrapped and isinstance(error, UserError | KeyboardInterrupt):
            return error
        error = getattr(error, "cause", None) if wrapped else error.__cause__
    return None


def _report(error: BaseException, code: int, *, verbose: bool, message: str | None = None) -> int:
    """One ``recrl: error: ...`` line on stderr; the traceback too with ``-v``."""
    if verbose:
        import traceback

        traceback.print_exception(error)
    print(f"recrl: error: {message or error}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
