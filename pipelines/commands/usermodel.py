"""``recrl usermodel build|fit|evaluate``: display sets and the GAN user model (design.md §5)."""

from __future__ import annotations

import argparse
import json
import logging
import textwrap

from recrl.pipelines.errors import UserError

logger = logging.getLogger("recrl")

_EPILOG = """\
steps:
  build     page views of a log: click history, shown set, click or none (parquet)
  fit       GAN user model by maximum likelihood (Lemma 2), optionally + L2 adversarial
  evaluate  prec@1, prec@2, log-likelihood of a saved model and of the baselines

{sources}
settings of build and fit: --set KEY=VALUE (repeatable) or --config FILE.yaml (a mapping
of the same keys); flags win over --set, --set over the file. The keys of each step and
their defaults are listed in `recrl usermodel build --help` and `... fit --help`.

examples:
  recrl usermodel build --source movielens --input ../shared/data/movielens-100k \\
      --output data/ml100k-sets
  recrl usermodel fit --data data/ml100k-sets --state pw --epochs 15 --out runs/um-pw
  recrl usermodel fit --data data/ml100k-sets --regularizer l2 --out runs/um-l2
  recrl usermodel fit --data data/ml100k-sets --fit-on test --out runs/um-test-env
  recrl usermodel fit --data data/ml100k-sets --set batch_size=128 --set lr=0.01 --out runs/um
  recrl usermodel evaluate --model runs/um-pw/user_model.pt --data data/ml100k-sets
  mlflow ui --backend-store-uri sqlite:///mlruns.db     # curves: usermodel/val_prec1 ...
"""


BUILD_REQUIRED = {"source": "source", "input": "input_path", "output": "output_path"}
"""Flag -> `DisplaySetConfig` field of what to read and where to write: always flags."""
BUILD_FLAGS = ("set_size", "history_len", "seed", "max_invalid_fraction")
"""`DisplaySetConfig` fields with a flag of their own name; the rest are settings only."""

FIT_REQUIRED = {"data": "data", "out": "out_dir"}
"""Flag -> `UserModelJob` field of what to fit on and where to save: always flags."""
FIT_FLAGS = {
    "state": "state", "regularizer": "regularizer", "epochs": "epochs",
    "adversarial_epochs": "adversarial_epochs", "lr": "lr",
    "embedding_dim": "item_embedding_dim", "seed": "seed",
    "fit_on": "train_split", "baselines": "baselines", "mlflow": "tracking",
}  # fmt: skip
"""Flag -> the `UserModelConfig` or `UserModelJob` field it sets (``--no-mlflow`` is
``tracking = false``); the other fields are settings only."""
_MODEL = ("state", "regularizer", "epochs", "adversarial_epochs", "lr", "embedding_dim", "seed")
"""The `FIT_FLAGS` of the model's own settings (`UserModelConfig`)."""


def register(commands) -> None:
    """Add ``usermodel`` and its three steps to the ``recrl`` subcommands."""
    from recrl.models.user_model.config import UserModelConfig
    from recrl.pipelines.commands.flags import (
        SETTINGS_KEYS,
        add_field_flags,
        add_settings_options,
        settings_help,
    )
    from recrl.pipelines.display_sets.config import DisplaySetConfig
    from recrl.pipelines.usermodel.job import UserModelJob

    p = commands.add_parser(
        "usermodel",
        help="build display sets, fit and evaluate the GAN user model (Chen et al. 2019)",
        description=textwrap.dedent(
            """\
            The user model of the slate chain: a user shown a set of items clicks one of
            them, or none, with probability softmax(utility), utility = MLP(state, item);
            the state is a position-weighted or LSTM summary of the user's past clicks."""
        ),
        epilog=_EPILOG.format(sources=display_sources_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = p.add_subparsers(dest="step", metavar="STEP", required=True)

    b = steps.add_parser(
        "build",
        help="write display-set records from a log",
        epilog=settings_help(DisplaySetConfig, without=(*BUILD_REQUIRED.values(), *BUILD_FLAGS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(b, DisplaySetConfig, BUILD_REQUIRED, required=tuple(BUILD_REQUIRED))
    add_settings_options(b, SETTINGS_KEYS.format(config="DisplaySetConfig"))
    add_field_flags(b, DisplaySetConfig, BUILD_FLAGS)
    b.set_defaults(handler=run)

    f = steps.add_parser(
        "fit",
        help="fit the user model, log to MLflow, save it",
        epilog=settings_help(UserModelJob, without=(*FIT_REQUIRED.values(), *FIT_FLAGS.values())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(f, UserModelJob, FIT_REQUIRED, required=tuple(FIT_REQUIRED))
    add_settings_options(f, SETTINGS_KEYS.format(config="UserModelConfig and UserModelJob"))
    add_field_flags(f, UserModelConfig, {k: v for k, v in FIT_FLAGS.items() if k in _MODEL})
    add_field_flags(f, UserModelJob, {k: v for k, v in FIT_FLAGS.items() if k not in _MODEL})
    f.add_argument("--overwrite", action="store_true",
                   help="replace the user_model.pt an earlier fit left in --out")  # fmt: skip
    f.set_defaults(handler=run)

    e = steps.add_parser("evaluate", help="score a saved user model and the baselines")
    e.add_argument("--model", required=True, help="user_model.pt written by `fit`")
    e.add_argument("--data", required=True, help="display-set folder")
    e.add_argument("--split", choices=("train", "val", "test"), default="test")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(handler=run)


def run(args) -> int:
    """Dispatch ``recrl usermodel STEP``."""
    return {"build": _build, "fit": _fit, "evaluate": _evaluate}[args.step](args)


def display_sources_help() -> str:
    """The epilog's list of display-set sources, from their registry."""
    from recrl.pipelines.display_sets.config import DISPLAY_SOURCE_SUMMARIES

    lines = ["sources for build (--source):"]
    for name, summary in DISPLAY_SOURCE_SUMMARIES.items():
        lines += textwrap.wrap(summary, width=88, initial_indent=f"  {name:<12} ",
                               subsequent_indent=" " * 15, break_on_hyphens=False)  # fmt: skip
    return "\n".join(lines) + "\n"


def display_set_config(args):
    """The `DisplaySetConfig` of ``usermodel build``'s arguments: the --config file, then
    --set, then the flags, each value checked against its field."""
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.display_sets.config import DisplaySetConfig
    from recrl.pipelines.settings import build

    return build(DisplaySetConfig, **collect_settings(args))


def user_model_job(args):
    """The `UserModelJob` of ``usermodel fit``'s arguments: the --config file, then --set,
    then the flags; keys of the model's settings (``lr``) reach its `UserModelConfig`."""
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.settings import apply_settings, build
    from recrl.pipelines.usermodel.job import UserModelJob

    settings = collect_settings(args)
    where = {name: settings.pop(name) for name in FIT_REQUIRED.values()}
    return apply_settings(build(UserModelJob, **where), settings)


def _build(args) -> int:
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.display_sets.build import build_display_sets

    config = display_set_config(args)
    check_input(config.input_path, "--input")
    check_output_dir(config.output_path, "--output")
    meta = build_display_sets(config).meta
    rows = meta["rows"]
    dropped = ", ".join(f"{k} {v}" for k, v in rows["dropped"].items() if v) or "none"
    print(f"{meta['records']} page views of {meta['n_users']} users, {meta['n_items']} items, "
          f"sets of {meta['set_size']}")  # fmt: skip
    print(f"rows: {rows['input']} in, {rows['kept']} kept, dropped: {dropped}")
    for name, split in meta["splits"].items():
        print(f"  {name:<5} {split['users']:>7} users {split['records']:>9} page views")
    if "release_year" in meta["checks"]:
        year = meta["checks"]["release_year"]
        print(f"release-year guess prec@1: newest {year['highest']:.3f}, oldest "
              f"{year['lowest']:.3f}, chance {year['chance']:.3f}")  # fmt: skip
    print(f"-> {config.output_path}")
    return 0


def _fit(args) -> int:
    from recrl.pipelines.checks import check_output_dir
    from recrl.pipelines.usermodel.job import MODEL_FILE, run_user_model_job

    job = user_model_job(args)
    _check_display_sets(job.data)
    out = check_output_dir(job.out_dir, "--out")
    if (out / MODEL_FILE).exists() and not args.overwrite:
        # a fit has no intermediate checkpoints to resume from: it is redone or kept
        raise UserError(
            f"--out {out} already holds {MODEL_FILE} from an earlier fit; choose another "
            "--out or replace it with --overwrite"
        )
    summary = run_user_model_job(job)
    _print_table({"user model": summary.test, **summary.baselines})
    print(f"best epoch {summary.best_epoch}; saved {summary.model_path}"
          + (f"; MLflow run {summary.run_id}" if summary.run_id else ""))  # fmt: skip
    return 0


def _evaluate(args) -> int:
    from recrl.models.user_model.checkpoint import load_user_model
    from recrl.pipelines.checks import check_input
    from recrl.pipelines.display_sets.records import load_display_sets
    from recrl.pipelines.usermodel.job import baseline_metrics, evaluate_split

    check_input(args.model, "--model", kind="file")
    _check_display_sets(args.data)
    try:
        loaded = load_user_model(args.model)
    except UserError:
        raise
    except Exception as error:  # torch.load of a foreign file: pickle, zip or key errors
        raise UserError(
            f"--model {args.model}: not a user model written by `recrl usermodel fit` "
            f"({type(error).__name__})"
        ) from None
    dataset = load_display_sets(args.data)
    if loaded.item_features.shape != dataset.item_features.shape:
        raise UserError(
            f"{args.model} was fitted on {loaded.item_features.shape[0] - 1} items with "
            f"{loaded.item_features.shape[1]} features; {args.data} has "
            f"{dataset.n_items} items with {dataset.item_features.shape[1]}: not the same data"
        )
    scores = evaluate_split(loaded.model, dataset.splits[args.split])
    table = {"user model": {**scores, "log_lik": -scores["loss"]},
             **baseline_metrics(dataset, args.split)}  # fmt: skip
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        _print_table(table)
    return 0


def _check_display_sets(path: str, flag: str = "--data") -> None:
    """``path`` is a folder written by ``recrl usermodel build``."""
    from recrl.pipelines.checks import check_input

    folder = check_input(path, flag, kind="folder")
    if not (folder / "meta.json").is_file():
        raise UserError(
            f"{flag} {folder}: not a display-set folder (no meta.json); build one with "
            "`recrl usermodel build`"
        )


def _print_table(rows: dict[str, dict]) -> None:
    print(f"{'model':<12} {'prec@1':>8} {'prec@2':>8} {'log-lik':>9}")
    for name, m in rows.items():
        log_lik = m.get("log_lik", -m.get("loss", float("nan")))
        print(f"{name:<12} {m['prec1']:8.3f} {m['prec2']:8.3f} {log_lik:9.3f}")
