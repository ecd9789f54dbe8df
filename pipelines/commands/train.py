"""``recrl train``: one SASRec variant trained offline on RLlib, evaluated, tracked."""

from __future__ import annotations

import argparse
from pathlib import Path

from recrl.pipelines.commands.overrides import parse_overrides, read_settings_file
from recrl.pipelines.errors import SettingError
from recrl.pipelines.summaries import format_train_result

DEFAULT_VARIANT = "sasrec_ccql"

_EPILOG = """\
variants (design.md §4; one code path, a preset of loss weights each):
  sasrec       cross-entropy only           sasrec_ac    + double-Q TD, SAC phase 2
  snqn         + sampled negative actions   sa2c         + advantage-weighted CE
  sasrec_co    AC + contrastive views       sasrec_ccql  CE+TD+negatives+CQL+contrastive

settings: --set KEY=VALUE (repeatable) or --config FILE.yaml (a mapping of the same keys);
--set wins. Keys are TrainConfig fields (lr, batch_size, total_steps, eval_interval, ...),
encoder fields (hidden_size, num_blocks, num_heads, dropout) and objective fields (gamma,
td_weight, n_neg, cql_alpha, cql_temperature, cql_actions, co_weight, co_temperature,
warmup_steps, double_q, tau, ...).

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
    p = commands.add_parser(
        "train",
        help="train a SASRec variant offline on RLlib, evaluate it, track it in MLflow",
        description="Train one SASRec variant on prepared transitions with RLlib, evaluate "
        "it on val every --eval-interval updates and on test at the end (HR/NDCG@5,10,20 "
        "for clicks and purchases), and log everything to MLflow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--variant", help=f"named preset ({DEFAULT_VARIANT})")
    p.add_argument("--data", help="prepared dataset folder (recrl prepare; not with --resume)")
    p.add_argument("--config", type=Path, help="YAML file of settings")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting (repeatable)",
    )
    p.add_argument("--steps", type=int, help="total gradient updates (TrainConfig default 4000)")
    p.add_argument("--eval-interval", type=int, help="updates between val evaluations")
    p.add_argument("--num-learners", type=int, help="RLlib learner actors (0: in-process)")
    p.add_argument(
        "--num-gpus-per-learner",
        "--gpus-per-learner",
        dest="num_gpus_per_learner",
        type=float,
        help="GPUs per learner, fractions allowed (0: CPU)",
    )
    p.add_argument("--num-cpus-per-learner", type=float, help="CPUs per remote learner (default 1)")
    p.add_argument(
        "--learner-resource",
        dest="learner_resources",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="custom Ray resource each remote learner needs (repeatable)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="bf16 autocast of the forward passes: auto = on CUDA only (default)",
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
    """The `TrainConfig` of the parsed arguments: --config file, then --set, then flags."""
    from recrl.pipelines.sasrec.config import TrainConfig

    settings = _settings(args)
    variant = settings.pop("variant", None) or args.variant or DEFAULT_VARIANT
    if not args.data:
        raise SettingError("--data is required (a prepared dataset folder), unless --resume")
    return TrainConfig.for_variant(variant, args.data, **settings)


def resumed_config(args):
    """The saved `TrainConfig` of ``--resume RUN_DIR`` and its MLflow run id. Settings given
    with it must agree with the saved ones, except `RESUME_MAY_CHANGE`."""
    import dataclasses

    from recrl.pipelines.checks import check_input
    from recrl.pipelines.sasrec.config import TrainConfig
    from recrl.pipelines.sasrec.job import read_run_config
    from recrl.pipelines.settings import convert, field_types, refused

    if args.run_dir is not None and args.run_dir != args.resume:
        raise SettingError(f"--resume {args.resume} writes into that folder; drop --run-dir")
    if args.overwrite:
        raise SettingError("--resume and --overwrite contradict each other; choose one")
    check_input(args.resume, "--resume", kind="folder")
    saved, run_id = read_run_config(args.resume)
    settings = _settings(args)
    for key, value in (("variant", args.variant), ("data", args.data)):
        if value is not None:
            settings.setdefault(key, value)
    sections = {"": (saved, TrainConfig), "encoder": (saved.encoder, type(saved.encoder)),
                "objective": (saved.objective, type(saved.objective))}  # fmt: skip
    changes: dict = {}
    for key, value in settings.items():
        owner = next((s for s, (_, cls) in sections.items() if key in field_types(cls)), None)
        if owner is None or key in ("encoder", "objective"):
            from recrl.pipelines.settings import unknown_setting

            raise unknown_setting(key, [k for _, c in sections.values() for k in field_types(c)])
        current, cls = sections[owner]
        value = convert(key, value, field_types(cls)[key])
        if value == getattr(current, key):
            continue
        if key not in RESUME_MAY_CHANGE:
            raise SettingError(
                f"--resume {args.resume}: setting {key}={value!r} differs from the run's saved "
                f"{getattr(current, key)!r}; a resumed run keeps its settings (only "
                f"{', '.join(RESUME_MAY_CHANGE)} may change): drop it, or start a new run"
            )
        changes[key] = value
    with refused():
        return dataclasses.replace(saved, **changes), run_id


RESUME_MAY_CHANGE = ("total_steps", "tracking")
"""Settings a resumed run may change: train longer, or stop logging to MLflow."""


def _settings(args) -> dict:
    """Flat settings of the parsed arguments: --config file, then --set, then flags."""
    settings: dict = {}
    if args.config:
        settings.update(read_settings_file(args.config))
    settings.update(parse_overrides(args.overrides))
    flags = {
        "total_steps": args.steps,
        "eval_interval": args.eval_interval,
        "num_learners": args.num_learners,
        "num_gpus_per_learner": args.num_gpus_per_learner,
        "num_cpus_per_learner": args.num_cpus_per_learner,
        "precision": args.precision,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
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
