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

sources for build (--source):
  movielens    u.data (+ u.item for genres/year); shown = click + 39 rated nearest in time
  yoochoose    *clicks*.csv; shown = click + 9 items other sessions clicked nearest in time
  generic      session parquet/CSV (e.g. `recrl generate` output), as yoochoose
  impressions  CSV with user_id,timestamp,shown,clicked[,history] (space-separated ids)
  mind         MIND behaviors.tsv (+ news.tsv for topics)

examples:
  recrl usermodel build --source movielens --input ../shared/data/movielens-100k \\
      --output data/ml100k-sets
  recrl usermodel fit --data data/ml100k-sets --state pw --epochs 15 --out runs/um-pw
  recrl usermodel fit --data data/ml100k-sets --regularizer l2 --out runs/um-l2
  recrl usermodel fit --data data/ml100k-sets --fit-on test --out runs/um-test-env
  recrl usermodel evaluate --model runs/um-pw/user_model.pt --data data/ml100k-sets
  mlflow ui --backend-store-uri sqlite:///mlruns.db     # curves: usermodel/val_prec1 ...
"""


def register(commands) -> None:
    """Add ``usermodel`` and its three steps to the ``recrl`` subcommands."""
    p = commands.add_parser(
        "usermodel",
        help="build display sets, fit and evaluate the GAN user model (Chen et al. 2019)",
        description=textwrap.dedent(
            """\
            The user model of the slate chain: a user shown a set of items clicks one of
            them, or none, with probability softmax(utility), utility = MLP(state, item);
            the state is a position-weighted or LSTM summary of the user's past clicks."""
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = p.add_subparsers(dest="step", metavar="STEP", required=True)

    b = steps.add_parser("build", help="write display-set records from a log")
    b.add_argument(
        "--source",
        required=True,
        choices=("movielens", "yoochoose", "generic", "impressions", "mind"),
    )
    b.add_argument("--input", required=True, help="input file or folder")
    b.add_argument("--output", required=True, help="output folder")
    b.add_argument("--set-size", type=int, help="K of built sets (40 MovieLens, else 10)")
    b.add_argument("--history-len", type=int, default=10, help="m, clicks kept (10)")
    b.add_argument("--seed", type=int, default=0, help="user split and display order (0)")
    b.add_argument("--max-invalid-fraction", type=float, default=0.01,
                   help="fail above this fraction of bad rows (0.01)")  # fmt: skip
    b.set_defaults(handler=run)

    f = steps.add_parser("fit", help="fit the user model, log to MLflow, save it")
    f.add_argument("--data", required=True, help="display-set folder (usermodel build)")
    f.add_argument("--out", required=True, help="folder for user_model.pt")
    f.add_argument("--state", choices=("pw", "lstm"), default="pw", help="history encoder (pw)")
    f.add_argument(
        "--regularizer",
        choices=("shannon", "l2"),
        default="shannon",
        help="shannon: maximum likelihood; l2: then adversarial eq. 6 (shannon)",
    )
    f.add_argument("--epochs", type=int, default=15, help="maximum-likelihood epochs (15)")
    f.add_argument("--adversarial-epochs", type=int, default=5, help="l2 epochs (5)")
    f.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (0.005)")
    f.add_argument("--embedding-dim", type=int, default=16, help="learned item embedding (16)")
    f.add_argument("--seed", type=int, default=0, help="initialisation and batches (0)")
    f.add_argument(
        "--fit-on",
        choices=("train", "test"),
        default="train",
        help="split to fit: train, or test for the held-out test environment",
    )
    f.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    f.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
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


def _build(args) -> int:
    from recrl.pipelines.checks import check_input, check_output_dir
    from recrl.pipelines.display_sets.build import build_display_sets
    from recrl.pipelines.display_sets.config import DisplaySetConfig
    from recrl.pipelines.settings import refused

    with refused():
        config = DisplaySetConfig(
            source=args.source, input_path=args.input, output_path=args.output,
            set_size=args.set_size, history_len=args.history_len, seed=args.seed,
            max_invalid_fraction=args.max_invalid_fraction,
        )  # fmt: skip
    check_input(args.input, "--input")
    check_output_dir(args.output, "--output")
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
    print(f"-> {args.output}")
    return 0


def _fit(args) -> int:
    from recrl.models.user_model.config import UserModelConfig
    from recrl.pipelines.checks import check_output_dir
    from recrl.pipelines.settings import refused
    from recrl.pipelines.usermodel.job import MODEL_FILE, UserModelJob, run_user_model_job

    with refused():
        config = UserModelConfig(
            state=args.state, regularizer=args.regularizer, epochs=args.epochs,
            adversarial_epochs=args.adversarial_epochs, lr=args.lr,
            item_embedding_dim=args.embedding_dim, seed=args.seed,
        )  # fmt: skip
    _check_display_sets(args.data)
    out = check_output_dir(args.out, "--out")
    if (out / MODEL_FILE).exists() and not args.overwrite:
        # a fit has no intermediate checkpoints to resume from: it is redone or kept
        raise UserError(
            f"--out {out} already holds {MODEL_FILE} from an earlier fit; choose another "
            "--out or replace it with --overwrite"
        )
    job = UserModelJob(data=args.data, out_dir=args.out, model=config, train_split=args.fit_on,
                       baselines=not args.no_baselines, tracking=not args.no_mlflow)  # fmt: skip
    summary = run_user_model_job(job)
    _print_table({"user model": summary["test"], **summary.get("baselines", {})})
    print(f"best epoch {summary['best_epoch']}; saved {summary['model_path']}"
          + (f"; MLflow run {summary['run_id']}" if summary.get("run_id") else ""))  # fmt: skip
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
