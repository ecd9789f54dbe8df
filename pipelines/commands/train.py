"""``recrl train``: one SASRec variant trained offline on RLlib, evaluated, tracked."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.commands.overrides import parse_overrides
from pipelines.summaries import format_train_result

_EPILOG = """\
variants (SPEC §4; one code path, a preset of loss weights each):
  sasrec       cross-entropy only           sasrec_ac    + double-Q TD, SAC phase 2
  snqn         + sampled negative actions   sa2c         + advantage-weighted CE
  sasrec_co    AC + contrastive views       sasrec_ccql  CE+TD+negatives+CQL+contrastive

settings: --set KEY=VALUE (repeatable) or --config FILE.yaml (a mapping of the same keys);
--set wins. Keys are TrainConfig fields (lr, batch_size, total_steps, eval_interval, ...),
encoder fields (hidden_size, num_blocks, num_heads, dropout) and objective fields (gamma,
td_weight, n_neg, cql_alpha, cql_temperature, cql_actions, co_weight, co_temperature,
warmup_steps, double_q, tau, ...).

examples:
  recrl train --variant sasrec_ccql --data data/rc15 --set n_neg=20 --set cql_alpha=0.05
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
    p.add_argument("--variant", default="sasrec_ccql", help="named preset (sasrec_ccql)")
    p.add_argument("--data", required=True, help="prepared dataset folder (recrl prepare)")
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
    p.set_defaults(handler=run)


def train_config(args):
    """The `TrainConfig` of the parsed arguments: --config file, then --set, then flags."""
    import yaml

    from pipelines.train.config import TrainConfig

    settings: dict = {}
    if args.config:
        settings.update(yaml.safe_load(args.config.read_text()) or {})
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
    variant = settings.pop("variant", args.variant)
    return TrainConfig.for_variant(variant, args.data, **settings)


def _resources(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise SystemExit(f"--learner-resource expects NAME=AMOUNT, got {pair!r}")
    return out


def run(args) -> int:
    from pipelines.train.trainer import train

    config = train_config(args)
    result = train(config, run_dir=args.run_dir)
    print(format_train_result(config, result))
    return 0
