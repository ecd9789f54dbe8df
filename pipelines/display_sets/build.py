"""`build_display_sets`: a log → display-set records (parquet) + items + meta.json.

Click logs are read by `recrl prepare`'s own parse stage (`prepare.local.parse_local`: one
timestamp format for the whole input, the plausible-year range, duplicate events, file/line
bookkeeping, drop reasons) and impression logs by the same rules (`impressions`); the
``max_invalid_fraction`` rule is prepare's, so a bad row is reported the same way by both
commands.

The records are built with vectorised numpy on the driver, not with Ray Data: the
near-in-time construction compares each click with its neighbours in the *global* time
order, which a per-block map cannot see without an all-to-all sort, and the inputs it
serves (MovieLens-100k/1M, MIND-small, the RC15 sample, the generated dataset: at most a few
million events) fit in memory many times over. Nothing loops per user or per row.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from recrl.pipelines.atomic_output import list_files, refuse_foreign, staged_output
from recrl.pipelines.display_sets.config import NEAR_TIME_SOURCES, DisplaySetConfig
from recrl.pipelines.display_sets.features import read_mind_news, read_movielens_items
from recrl.pipelines.display_sets.impressions import (
    IMPRESSION_DROP_REASONS,
    REASON_COLUMN,
    impression_records,
    read_impressions,
)
from recrl.pipelines.display_sets.near_time import near_time_sets
from recrl.pipelines.display_sets.records import (
    ITEMS_FILE,
    META_FILE,
    Records,
    previous_clicks,
    split_users,
    write_meta,
    write_records,
)
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import EmptyDatasetError, InvalidValuesError
from recrl.pipelines.prepare.local import parse_local
from recrl.pipelines.prepare.meta import RowAccounting, describe_sources
from recrl.pipelines.prepare.reading import SourceFile
from recrl.pipelines.prepare.split import SPLITS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
NOT_A_CLICK = "not_a_click"
"""Drop reason of purchase rows of a click log: a purchase is not a page view."""
SHORT_DISPLAY_SET = "short_display_set"
"""Drop reason of a click with too few distinct items clicked by others near in time."""


@dataclass(frozen=True)
class DisplaySetResult:
    output_path: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class _Built:
    records: Records
    raw_item_ids: np.ndarray
    accounting: RowAccounting
    examples: dict[str, dict[str, Any]]
    sources: list[SourceFile]
    checks: dict[str, Any]


def build_display_sets(config: DisplaySetConfig) -> DisplaySetResult:
    """Read, build, split by user and write; see the module docstring and `records`.

    The folder is built in a staging sibling and swapped in whole when complete
    (`recrl.pipelines.atomic_output`): a failure leaves the previous display sets as they were.
    A folder holding files recrl did not write is refused, and they are never deleted.
    """
    ours = {f"{name}.parquet" for name in SPLITS} | {ITEMS_FILE, META_FILE}
    refuse_foreign(config.output_path, list_files(config.output_path), ours.__contains__)
    with staged_output(config.output_path, ours=ours.__contains__) as staging:
        meta = _build_into(config, staging)
    logger.info("wrote %d display-set records to %s", meta["records"], config.output_path)
    return DisplaySetResult(config.output_path, meta)


def _build_into(config: DisplaySetConfig, output_path: str) -> dict[str, Any]:
    """`build_display_sets` writing into ``output_path``; returns meta.json's contents."""
    start = time.perf_counter()
    build = _near_time if config.source in NEAR_TIME_SOURCES else _impressions
    built = build(config)
    records = built.records
    features, names = _item_features(config, built.raw_item_ids)
    n_users = int(records.user.max(initial=-1)) + 1
    user_split = split_users(n_users, config.split_fractions, config.seed)
    splits = write_records(output_path, records, user_split, built.raw_item_ids, features, names)
    if config.source == "movielens" and "year" in names:
        year = np.append(features[:, names.index("year")], np.nan)
        built.checks["release_year"] = trivial_feature_precision(records.shown, records.click, year)
    meta = {
        "format_version": FORMAT_VERSION,
        "source": config.source,
        "construction": "near_time" if config.source in NEAR_TIME_SOURCES else "impressions",
        "n_items": len(built.raw_item_ids),
        "pad_id": len(built.raw_item_ids),
        "n_users": n_users,
        "history_len": config.history_len,
        "set_size": int(records.shown.shape[1]),
        "feature_names": names,
        "splits": splits,
        "records": len(records.click),
        "rows": built.accounting.as_dict(),
        "drop_examples": built.examples,
        "checks": built.checks,
        "sources": describe_sources(built.sources),
        "settings": {k: list(v) if isinstance(v, tuple) else v
                     for k, v in dataclasses.asdict(config).items()},
        "timing_s": round(time.perf_counter() - start, 3),
    }  # fmt: skip
    write_meta(output_path, meta)  # last: meta.json marks the folder complete
    return meta


def trivial_feature_precision(
    shown: np.ndarray, click: np.ndarray, value: np.ndarray
) -> dict[str, float]:
    """Prec@1 of guessing the clicked item as the shown one with the highest (lowest)
    ``value`` (float [n_items + 1], NaN for padding), ties split evenly — next to chance
    (1/K). A construction whose click stands out by such a feature teaches nothing."""
    rows = np.flatnonzero(click >= 0)
    v = value[shown[rows]]
    clicked = v[np.arange(len(rows)), click[rows]]
    out = {"chance": float(np.mean(1.0 / np.sum(~np.isnan(v), axis=1))) if len(rows) else 0.0}
    for name, best in (("highest", np.nanmax(v, axis=1)), ("lowest", np.nanmin(v, axis=1))):
        ties = np.sum(v == best[:, None], axis=1)
        out[name] = float(np.mean(np.where(clicked == best, 1.0 / ties, 0.0))) if len(rows) else 0.0
    return out


def _check_invalid(
    counts: dict[str, int],
    examples: dict[str, tuple[str, int, Any]],
    total: int,
    reason_column: dict[str, str | None],
    limit: float,
) -> None:
    """Warn about bad values; fail as `recrl prepare` does above ``max_invalid_fraction``."""
    for reason, (file, line, raw) in examples.items():
        count = counts.get(reason, 0)
        if reason not in reason_column or count == 0:
            continue
        fraction = count / max(total, 1)
        message = f"{count} of {total} rows ({fraction:.2%}) dropped as {reason}; e.g. {raw!r}"
        if fraction > limit:
            raise InvalidValuesError(
                f"{message}. That is more than max_invalid_fraction={limit}; fix the input or "
                "raise the limit (--max-invalid-fraction)",
                file=file,
                line=line,
                column=reason_column[reason],
            )
        logger.warning("%s:%s column %s: %s", file, line, reason_column[reason], message)


# --- click logs: near-in-time shown sets ----------------------------------------------


def _read_events(config: DisplaySetConfig) -> tuple[list[SourceFile], pa.Table]:
    """Every row of a click log, parsed by `recrl prepare`'s own parse stage
    (`parse_local`): one timestamp format for the whole input, the same range rule and
    drop reasons, duplicates across files marked."""
    prepare_config = PrepareConfig(
        source=config.source, input_path=config.input_path, output_path=config.output_path,
        timestamp_unit=config.timestamp_unit, time_range=tuple(config.time_range),
        keep_duplicates=config.keep_duplicates, encoding=config.encoding,
    )  # fmt: skip
    parsed = parse_local(prepare_config)
    if parsed.events.num_rows == 0:
        raise EmptyDatasetError("the input files hold no data rows", file=config.input_path)
    return parsed.sources, parsed.events


def _near_time(config: DisplaySetConfig) -> _Built:
    sources, parsed = _read_events(config)
    drop = parsed.column(schema.DROP).to_numpy()
    files = parsed.column(schema.FILE).to_numpy()
    lines = parsed.column(schema.LINE).to_numpy()
    bad = parsed.column(schema.BAD).to_numpy(zero_copy_only=False)
    counts: dict[str, int] = {}
    examples: dict[str, tuple[str, int, Any]] = {}
    for code, reason in schema.DROP_REASONS.items():
        hit = np.flatnonzero(drop == code)
        if hit.size:
            counts[reason] = int(hit.size)
            examples[reason] = (sources[files[hit[0]]].path, int(lines[hit[0]]), bad[hit[0]])
    total = len(drop)
    _check_invalid(counts, examples, total, schema.REASON_COLUMN, config.max_invalid_fraction)
    valid = drop == schema.KEPT
    is_buy = parsed.column(schema.IS_BUY).to_numpy(zero_copy_only=False)
    counts[NOT_A_CLICK] = int(np.count_nonzero(valid & is_buy))
    clicks = np.flatnonzero(valid & ~is_buy)
    if clicks.size == 0:
        raise EmptyDatasetError(f"no valid click row among {total} rows", file=config.input_path)
    session = parsed.column(schema.SESSION_ID).to_numpy(zero_copy_only=False)[clicks]
    item_raw = parsed.column(schema.ITEM_ID).to_numpy(zero_copy_only=False)[clicks]
    stamp = parsed.column(schema.TIMESTAMP).to_numpy()[clicks]
    _, user = np.unique(session, return_inverse=True)
    raw_items, item = np.unique(item_raw, return_inverse=True)
    user, item = user.astype(np.int64), item.astype(np.int64)
    pad_id = len(raw_items)

    sets = near_time_sets(
        user, stamp, item, set_size=config.shown_size, seed=config.seed,
        max_window=config.max_window, per_user=config.per_user,
    )  # fmt: skip
    counts[SHORT_DISPLAY_SET] = len(clicks) - len(sets.rows)
    # Each user's clicks in time order form the stream their histories are read from.
    stream = np.lexsort((item, stamp, user))
    position = np.empty(len(stream), dtype=np.int64)
    position[stream] = np.arange(len(stream))
    first = np.r_[True, user[stream][1:] != user[stream][:-1]]
    start_of = np.maximum.accumulate(np.where(first, np.arange(len(stream)), 0))
    pos = position[sets.rows]
    history = previous_clicks(item[stream], start_of[pos], pos, config.history_len, pad_id)
    records = Records(user[sets.rows], stamp[sets.rows], history, sets.shown, sets.click)
    accounting = RowAccounting(total, len(sets.rows), counts)
    accounting.check()
    checks = {
        "neighbour_window": {
            "median": float(np.median(sets.window)) if len(sets.window) else 0.0,
            "max": int(sets.window.max(initial=0)),
        },
    }
    return _Built(records, raw_items, accounting, _examples(examples), sources, checks)


# --- logs with impressions ----------------------------------------------------------


def _impressions(config: DisplaySetConfig) -> _Built:
    sources, parsed = read_impressions(
        config.source, config.input_path, timestamp_unit=config.timestamp_unit,
        years=tuple(config.time_range), encoding=config.encoding,
    )  # fmt: skip
    counts: dict[str, int] = {}
    examples: dict[str, tuple[str, int, Any]] = {}
    total = 0
    for index, table in enumerate(parsed):
        total += len(table.drop)
        reasons = pd.Series(table.drop).dropna()
        for reason, count in reasons.value_counts().items():
            counts[reason] = counts.get(reason, 0) + int(count)
            if reason not in examples:
                first = int(reasons.index[reasons == reason][0])
                examples[reason] = (sources[index].path, int(table.line[first]), table.bad[first])
    reason_column = REASON_COLUMN[config.source]
    _check_invalid(counts, examples, total, reason_column, config.max_invalid_fraction)
    built = impression_records(parsed, config.history_len)
    if built.kept_rows == 0:
        raise EmptyDatasetError(f"no valid impression among {total} rows", file=config.input_path)
    for reason in IMPRESSION_DROP_REASONS:
        counts.setdefault(reason, 0)
    accounting = RowAccounting(total, built.kept_rows, counts)
    accounting.check()
    checks = {"no_click_fraction": float(np.mean(built.records.click < 0))}
    return _Built(
        built.records, built.raw_item_ids, accounting, _examples(examples), sources, checks
    )


def _examples(examples: dict[str, tuple[str, int, Any]]) -> dict[str, dict[str, Any]]:
    return {
        reason: {"file": file, "line": line, "value": None if raw is None else str(raw)[:200]}
        for reason, (file, line, raw) in sorted(examples.items())
    }


def _item_features(config: DisplaySetConfig, raw_item_ids: np.ndarray):
    """(float32 [n_items, F], names): MovieLens u.item, MIND news.tsv, else none."""
    folder = Path(config.input_path)
    folder = folder if folder.is_dir() else folder.parent
    side = {"movielens": ("u.item", read_movielens_items), "mind": ("news.tsv", read_mind_news)}
    if config.source not in side:
        return np.zeros((len(raw_item_ids), 0), dtype=np.float32), []
    name, reader = side[config.source]
    path = folder / name
    if not path.exists():
        logger.warning("%s not found next to the input: items get a learned embedding only", path)
        return np.zeros((len(raw_item_ids), 0), dtype=np.float32), []
    features = reader(path)
    logger.info(
        "item features from %s: %d columns", posixpath.basename(str(path)), len(features.names)
    )
    return features.for_items(raw_item_ids), features.names
