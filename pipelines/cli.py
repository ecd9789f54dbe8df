"""The ``recrl`` command line: the parser (each subcommand registers itself from
`recrl.pipelines.commands`, except the small ``stats`` and ``demo``) and the one place a
mistake becomes a ``recrl: error:`` line. Argument parsing stops here and in those
modules; everything else takes typed configs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from recrl.pipelines.commands import bandit as bandit_command
from recrl.pipelines.commands import generate as generate_command
from recrl.pipelines.commands import mlflow_sync as mlflow_sync_command
from recrl.pipelines.commands import ope as ope_command
from recrl.pipelines.commands import prepare as prepare_command
from recrl.pipelines.commands import slate as slate_command
from recrl.pipelines.commands import submit as submit_command
from recrl.pipelines.commands import train as train_command
from recrl.pipelines.commands import tune as tune_command
from recrl.pipelines.commands import usermodel as usermodel_command
from recrl.pipelines.errors import EXIT_INTERRUPTED, SettingError, UserError
from recrl.pipelines.prepare.config import PrepareConfig
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
    generate_command.register(commands)
    prepare_command.register(commands)
    _add_stats(commands)
    train_command.register(commands)
    _add_demo(commands)
    tune_command.register(commands)
    usermodel_command.register(commands)
    slate_command.register(commands)
    bandit_command.register(commands)
    ope_command.register(commands)
    submit_command.register(commands)
    mlflow_sync_command.register(commands)
    return parser


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
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.commands.flags import add_field_flags, add_settings_options

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
        help="folder for the generated and prepared data (default: %(default)s)",
    )
    add_field_flags(p, SessionGeneratorConfig, {"sessions": "n_sessions"})
    add_settings_options(p, "the generated dataset's: `recrl generate --help` lists them")
    # the demo's own: one seed for all three jobs, and a budget far below TrainConfig's
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of generator, split and model (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=400,
        help="training updates; 0 stops after preparing (default: %(default)s)",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.set_defaults(handler=_run_demo)


# --- handlers -----------------------------------------------------------------------


def _run_stats(args) -> int:
    from recrl.pipelines.checks import check_prepared_dataset

    meta = check_prepared_dataset(args.dataset, "recrl stats", checksums=args.verify)
    print(json.dumps(meta, indent=2) if args.json else format_stats(meta))
    return 0


def _run_demo(args) -> int:
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.checks import check_output_dir
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.prepare.pipeline import prepare
    from recrl.pipelines.settings import build

    generated = args.workdir / "generated"
    prepared = args.workdir / "prepared"
    config = build(SessionGeneratorConfig, **{"seed": args.seed, **collect_settings(args)})
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
