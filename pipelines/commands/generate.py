"""``recrl generate``: the synthetic default dataset, sessions drawn from a known user model."""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path

FLAGS = {"sessions": "n_sessions", "items": "n_items", "users": "n_users", "seed": "seed",
         "purchase_rate": "purchase_rate"}  # fmt: skip
"""Flag -> the `SessionGeneratorConfig` field it sets."""


def register(commands) -> None:
    """Add ``generate`` to the ``recrl`` subcommands."""
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.commands.flags import (
        SETTINGS_KEYS,
        add_field_flags,
        add_settings_options,
        settings_help,
    )

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
        epilog=settings_help(SessionGeneratorConfig, without=tuple(FLAGS.values())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_settings_options(p, SETTINGS_KEYS.format(config="SessionGeneratorConfig"))
    add_field_flags(p, SessionGeneratorConfig, FLAGS)
    p.set_defaults(handler=run)


def generator_config(args):
    """The `SessionGeneratorConfig` of the parsed arguments: the --config file, then --set,
    then the flags, each value checked against its field."""
    from recrl.envs.session_generator import SessionGeneratorConfig
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.settings import build

    return build(SessionGeneratorConfig, **collect_settings(args))


def run(args) -> int:
    from recrl.envs.generated_dataset import write_generated_dataset
    from recrl.pipelines.checks import check_output_dir

    config = generator_config(args)
    check_output_dir(args.out, "--out")
    start = time.perf_counter()
    dataset = write_generated_dataset(config, args.out)
    print(
        f"generated {dataset.n_sessions} sessions, {dataset.n_rows} rows "
        f"({dataset.n_purchases} purchases) in {time.perf_counter() - start:.1f}s "
        f"-> {dataset.root / 'sessions'}"
    )
    return 0
