"""``recrl train``: one SASRec variant trained offline on RLlib, evaluated, tracked."""

from __future__ import annotations

import argparse
from pathlib import Path

from recrl.pipelines.errors import SettingError
from recrl.pipelines.summaries import format_train_result

_EPILOG = """\
variants (design.md §4; one code path, a preset of loss weights each):
{variants}

settings: --set KEY=VALUE (repeatable) or --config FILE.yaml (a mapping of the same keys);
flags win over --set, --set over the file. Keys are TrainConfig fields (lr, batch_size,
total_steps, eval_interval, ...), encoder fields (hidden_size, num_blocks, num_heads,
dropout) and objective fields (gamma, td_weight, n_neg, cql_alpha, cql_temperature,
cql_actions, co_weight, co_temperature, warmup_steps, double_q, tau, ...), flat or dotted
(encoder.dropout=0.2); each is documented on its field.

run folder (--run-dir, default runs/<variant>-<time>): checkpoint/, config.json (all
settings and the MLflow run id), stability.png. A new run into a folder that holds a
checkpoint is refused: --resume RUN_DIR continues it (weights, optimiser, target network,
update count, RNG states, the position in the data stream, the same MLflow run; with one
learner the result is bit for bit the uninterrupted run's), --overwrite replaces it.

examples:
  recrl train --variant sasrec_ccql --data data/rc15 --set n_neg=20 --set cql_alpha=0.05
  recrl train --resume runs/sasrec_ccql-20250101-120000       # after a crash or ctrl-C
  recrl train --resume runs/sasrec_ccql-20250101-120000 --steps 8000   # train longer
  recrl train --variant sa2c --data data/rc15 --num-learners 2 --num-gpus-per-learner 0.5
  # on a cluster whose nodes offer one learner_slot each: one learner per node
  RAY_ADDRESS=head:6379 recrl train --data data/rc15 --num-learners 2 \\
      --learner-resource learner_slot=1
  mlflow ui --backend-store-uri sqlite:///mlruns.db     # then open http://127.0.0.1:5000
"""


def register(commands) -> None:
    from recrl.models.sasrec.objective_config import variants_help
    from recrl.pipelines.commands.flags import add_field_flags, add_settings_options
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.settings import field_default

    p = commands.add_parser(
        "train",
        help="train a SASRec variant offline on RLlib, evaluate it, track it in MLflow",
        description="Train one SASRec variant on prepared transitions with RLlib, evaluate "
        "it on val every --eval-interval updates and on test at the end (HR/NDCG@5,10,20 "
        "for clicks and purchases), and log everything to MLflow.",
        epilog=_EPILOG.format(variants=variants_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--variant", metavar="VARIANT",
        help=f"named preset, listed below (default: {field_default(TrainConfig, 'variant')})",
    )  # fmt: skip
    add_field_flags(p, TrainConfig, {"data": "data"})
    add_settings_options(p, "TrainConfig, encoder and objective fields")
    add_field_flags(
        p,
        TrainConfig,
        {
            "steps": "total_steps",
            "eval_interval": "eval_interval",
            "num_learners": "num_learners",
            "num_gpus_per_learner": "num_gpus_per_learner",
            "num_cpus_per_learner": "num_cpus_per_learner",
            "precision": "precision",
            "register": "register_model",
        },
    )
    # the flag's earlier name, still accepted
    p.add_argument("--gpus-per-learner", dest="setting_num_gpus_per_learner", type=float,
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument(
        "--learner-resource",
        dest="learner_resources",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="custom Ray resource each remote learner needs (repeatable; "
        "custom_resources_per_learner)",
    )
    p.add_argument("--run-dir", type=Path, help="folder for checkpoint and figure")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with its saved settings "
        "and MLflow run (only --steps and --no-mlflow may change)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a --run-dir that holds an earlier job's checkpoint",
    )
    p.set_defaults(handler=run)


def train_config(args):
    """The `TrainConfig` of the parsed arguments: the variant's preset, then the --config
    file, --set and flags (`_settings`)."""
    from recrl.pipelines.sasrec.config import TrainConfig

    settings = _settings(args)
    variant = args.variant or settings.pop("variant", None) or TrainConfig.variant
    settings.pop("variant", None)
    data = settings.pop("data", None)
    if not data:
        raise SettingError("--data is required (a prepared dataset folder), unless --resume")
    return TrainConfig.for_variant(variant, data, **settings)


def resumed_config(args):
    """The saved `TrainConfig` of ``--resume RUN_DIR`` and its MLflow run id. Settings given
    with it must agree with the saved ones, except `RESUME_MAY_CHANGE`."""
    import dataclasses

    from recrl.pipelines.checks import check_input
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.sasrec.job import read_run_config
    from recrl.pipelines.settings import (
        convert,
        field_types,
        refused,
        setting_paths,
        unknown_setting,
    )

    if args.run_dir is not None and args.run_dir != args.resume:
        raise SettingError(f"--resume {args.resume} writes into that folder; drop --run-dir")
    if args.overwrite:
        raise SettingError("--resume and --overwrite contradict each other; choose one")
    check_input(args.resume, "--resume", kind="folder")
    saved, run_id = read_run_config(args.resume)
    settings = _settings(args)
    if args.variant is not None:
        settings.setdefault("variant", args.variant)
    paths = setting_paths(TrainConfig)
    changes: dict = {}
    for key, value in settings.items():
        path = paths.get(key)
        if path is None or len(path) > 2 or key in ("encoder", "objective"):
            raise unknown_setting(key, [k for k in paths if "." not in k])
        owner = saved if len(path) == 1 else getattr(saved, path[0])
        current = getattr(owner, path[-1])
        value = convert(key, value, field_types(type(owner))[path[-1]])
        if value == current:
            continue
        if key not in RESUME_MAY_CHANGE:
            raise SettingError(
                f"--resume {args.resume}: setting {key}={value!r} differs from the run's saved "
                f"{current!r}; a resumed run keeps its settings (only "
                f"{', '.join(RESUME_MAY_CHANGE)} may change): drop it, or start a new run"
            )
        changes[key] = value
    with refused():
        return dataclasses.replace(saved, **changes), run_id


RESUME_MAY_CHANGE = ("total_steps", "tracking", "register_model")
"""Settings a resumed run may change: train longer, stop logging to MLflow, or register
the model it ends with."""


def _settings(args) -> dict:
    """Flat settings of the parsed arguments: --config file, then --set, then flags."""
    from recrl.pipelines.commands.flags import collect_settings

    settings = collect_settings(args)
    if args.learner_resources:
        settings["custom_resources_per_learner"] = {
            **settings.get("custom_resources_per_learner", {}),
            **_resources(args.learner_resources),
        }
    if args.no_mlflow:
        settings["tracking"] = False
    return settings


def _resources(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SettingError(f"--learner-resource expects NAME=AMOUNT, got {pair!r}")
    return out


def run(args) -> int:
    from recrl.pipelines.sasrec.job import latest_checkpoint, train

    if args.resume is not None:
        config, run_id = resumed_config(args)
        checkpoint = latest_checkpoint(args.resume)
        result = train(config, run_dir=args.resume, resume_from=checkpoint, run_id=run_id)
    else:
        config = train_config(args)
        result = train(config, run_dir=args.run_dir, overwrite=args.overwrite)
    print(format_train_result(config, result))
    return 0
