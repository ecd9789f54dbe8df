"""``recrl prepare``: a session log into RL transitions (design.md §1)."""

from __future__ import annotations

import argparse
import textwrap
import time

from recrl.pipelines.summaries import format_stats

_OUTPUT_HELP = """\
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
"""

_EXAMPLE = """\
example:
  recrl prepare --source yoochoose --input ../shared/data/yoochoose-rc15-sample \\
      --output data/rc15 --state-len 10 --seed 0
"""

REQUIRED = {"source": "source", "input": "input_path", "output": "output_path"}
"""Flag -> `PrepareConfig` field of what to read and where to write: always given as flags."""

FLAGS = (
    "state_len", "min_session_clicks", "min_item_count", "split", "split_fractions", "seed",
    "r_click", "r_buy", "max_invalid_fraction", "timestamp_unit", "time_range",
    "keep_duplicates", "encoding", "retailrocket_purchase", "movielens_positive_threshold",
    "rows_per_shard", "num_partitions", "overwrite",
)  # fmt: skip
"""`PrepareConfig` fields with a flag of their own name (``--state-len``)."""


def register(commands) -> None:
    """Add ``prepare`` to the ``recrl`` subcommands."""
    from recrl.pipelines.commands.flags import (
        SETTINGS_KEYS,
        add_field_flags,
        add_settings_options,
        settings_help,
    )
    from recrl.pipelines.prepare.config import PrepareConfig

    settings = settings_help(PrepareConfig, without=(*REQUIRED.values(), *FLAGS))
    epilog = "\n".join([sources_help(), _OUTPUT_HELP + drop_reasons_help(), settings, _EXAMPLE])
    p = commands.add_parser(
        "prepare",
        help="turn a session log into RL transitions (Ray Data)",
        description="Parse, clean, encode and split a session log, then write one "
        "transition per event (design.md §1, the RC15 recipe of Xin et al.).",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_field_flags(p, PrepareConfig, REQUIRED, required=tuple(REQUIRED))
    _source_choices(p)
    add_settings_options(p, SETTINGS_KEYS.format(config="PrepareConfig"))
    add_field_flags(p, PrepareConfig, FLAGS)
    p.set_defaults(handler=run)


def _source_choices(parser: argparse.ArgumentParser) -> None:
    """Give ``--source`` the registry's names as its choices. `PrepareConfig.source` is a
    plain str (the names live only in the registry), so the generated flag has none; with
    them, a wrong source is argparse's one-line error listing the valid ones, and the
    usage line shows them."""
    from recrl.pipelines.prepare.config import SOURCES

    # argparse has no public lookup of an added action; `_actions` is its stable list.
    for action in parser._actions:
        if action.dest == "setting_source":
            action.choices = SOURCES
            action.metavar = "{" + ",".join(SOURCES) + "}"


def sources_help() -> str:
    """The epilog's list of sources, from the adapters' own descriptions."""
    from recrl.pipelines.prepare.adapters import ADAPTERS

    lines = ["sources (--source) and the files they look for in --input (a file or a folder):"]
    for name, adapter in ADAPTERS.items():
        lines += textwrap.wrap(
            adapter.description, width=88, initial_indent=f"  {name:<13} ",
            subsequent_indent=" " * 16, break_on_hyphens=False,
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def drop_reasons_help() -> str:
    """The epilog's list of drop reasons, from `recrl.pipelines.prepare.schema`."""
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


def prepare_config(args):
    """The `PrepareConfig` of the parsed arguments: the --config file, then --set, then
    the flags; every value is checked against its field (a `SettingError` names the key)."""
    from recrl.pipelines.commands.flags import collect_settings
    from recrl.pipelines.prepare.config import PrepareConfig
    from recrl.pipelines.settings import build

    return build(PrepareConfig, **collect_settings(args))


def run(args) -> int:
    from recrl.pipelines.prepare.pipeline import prepare

    config = prepare_config(args)
    start = time.perf_counter()
    result = prepare(config)
    print(format_stats(result.meta))
    verb = "reused" if result.reused else f"prepared in {time.perf_counter() - start:.1f}s"
    print(f"\n{verb}: {result.output_path}")
    return 0
