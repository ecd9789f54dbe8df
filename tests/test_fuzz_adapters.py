"""Property-based fuzzing of every adapter's parse stage (no Ray): raw files mixing valid
rows with hostile values never raise an uncaught exception, and every data line of the
input comes out as exactly one row, kept or dropped for one counted reason.

A `DataError` for an input recrl refuses as a whole (an empty required file, a header that
is not the format's) is an allowed outcome, and counted: the test fails only on any other
exception or a row lost or invented.

Each example writes several input files (the ones its adapter reads from one folder), so
the normal suite parses at least 2,000 generated files per adapter; ``-m slow`` runs ten
times as many. Hypothesis runs without its pytest plugin (``-p no:hypothesispytest``),
so every test sets its own `settings` and is derandomized.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import DataError
from recrl.pipelines.prepare.local import parse_local

FILES_PER_ADAPTER = int(os.environ.get("RECRL_FUZZ_FILES", "2000"))
"""Generated input files per adapter in the normal suite (ten times as many when slow);
`make test-fast` sets ``RECRL_FUZZ_FILES=200`` to stay within its minute."""

_ALPHABET = [
    c
    for c in map(chr, range(0x300))
    if unicodedata.category(c) not in ("Cs", "Cc") and c not in '"\r\n'
]
"""Characters of random values: any printable one up to U+02FF (delimiters included)."""
RANDOM_VALUES = 200
"""Random strings in each value pool, drawn once (seeded) from `_ALPHABET`."""


def _pool(fixed: list[str], max_size: int, seed: int) -> tuple[str, ...]:
    """Values of a column: ``fixed`` (half the draws) and `RANDOM_VALUES` random strings of
    at most ``max_size`` characters. Drawn from a pool, a row costs hypothesis one draw
    (`_row`), where text strategies drew every character (half the test's time went there)."""
    rng = random.Random(seed)
    noise = [
        "".join(rng.choices(_ALPHABET, k=rng.randint(0, max_size))) for _ in range(RANDOM_VALUES)
    ]
    repeats = -(-RANDOM_VALUES // len(fixed))  # as likely as the random ones together
    return (*fixed * repeats, *noise)


IDS = _pool(
    [
        *("1", "42", "-7", "+5", "007", "0", "1.5", "1e3", "99999999999999999999"),
        *("nan", "NaN", "null", "None", "<NA>", "", " ", "abc", "é"),
    ],
    max_size=5,
    seed=1,
)
TIMES = _pool(
    [
        "2014-04-07T10:51:09.277Z",
        "2014-04-07T10:51:09",
        "2019-11-24 00:00:34.762830+00:00",
        "1396867869",
        "1396867869277",
        "1396867869277000",
        "1396867869277000000",
        "0001-01-01T00:00:00Z",
        "2262-04-12T00:00:00Z",
        "2014/04/06 01:31:00",
        "2014-13-45",
        "1e30",
        "-1",
        "",
        "nan",
    ],
    max_size=8,
    seed=2,
)


def events(values: list[str]):
    return _pool(values, max_size=6, seed=3)


@dataclass(frozen=True)
class FileKind:
    name: str
    header: str | None
    """The header line, or None for a headerless format."""
    fields: tuple[tuple[str, ...], ...]
    """A value pool (`_pool`) per column, in file order."""
    delimiter: str = ","
    gzip: bool = False


def _yoochoose(name: str, buys: bool) -> FileKind:
    extra = (IDS, IDS) if buys else (IDS,)
    return FileKind(name, None, (IDS, TIMES, IDS, *extra))


_RR = (TIMES, IDS, events(["view", "addtocart", "transaction", "VIEW"]), IDS, IDS)
_OB_HEADER = ",timestamp,item_id,position,click,propensity_score," + ",".join(
    f"user_feature_{i}" for i in range(4)
)
_OB = (IDS, TIMES, IDS, IDS, events(["0", "1"]), IDS, IDS, IDS, IDS, IDS)

ADAPTER_FILES: dict[str, tuple[FileKind, ...]] = {
    "generic": tuple(
        FileKind(
            f"part{i}.csv",
            "session_id,timestamp,item_id,event",
            (IDS, TIMES, IDS, events(["click", "purchase", " Purchase ", "view"])),
        )
        for i in range(4)
    ),
    "yoochoose": (
        _yoochoose("a_clicks.dat", False),
        _yoochoose("b_clicks.dat", False),
        _yoochoose("a_buys.dat", True),
        _yoochoose("b_buys.dat", True),
    ),
    "retailrocket": (
        FileKind("events.csv", "timestamp,visitorid,event,itemid,transactionid", _RR),
        FileKind("events.csv.gz", "timestamp,visitorid,event,itemid,transactionid", _RR, gzip=True),
    ),
    "movielens": (
        FileKind("u.data", None, (IDS, IDS, IDS, TIMES), delimiter="\t"),
        FileKind("ratings.dat", None, (IDS, IDS, IDS, TIMES), delimiter="::"),
        FileKind("ratings.csv", "userId,movieId,rating,timestamp", (IDS, IDS, IDS, TIMES)),
    ),
    "open_bandit": tuple(FileKind(n, _OB_HEADER, _OB) for n in ("all.csv", "men.csv", "women.csv")),
}


SHAPES = 5
"""A row has its fields (3 in 5), one too few (1 in 5) or one too many (1 in 5)."""
MIXER = 2**61 - 1
"""A prime larger than every pool size, so coprime to any product of them."""


def _row(kind: FileKind):
    """One line, from ONE integer draw read as mixed-radix digits: the shape, then a value
    index per field. Shrinking the integer towards 0 shrinks towards a well-formed row of
    each pool's first value."""
    sizes = [len(pool) for pool in kind.fields]
    rows = SHAPES * math.prod(sizes)

    def decode(number: int) -> str:
        # Hypothesis favours small integers, whose high digits are 0: a multiplication by a
        # prime (a bijection of [0, rows), 0 stays 0) spreads them over every digit.
        number, shape = divmod(number * MIXER % rows, SHAPES)
        values = []
        for pool, size in zip(kind.fields, sizes, strict=True):
            number, index = divmod(number, size)
            values.append(pool[index])
        if shape == 3:
            values = values[:-1]
        elif shape == 4:
            values.append("x")
        return kind.delimiter.join(values)

    return st.integers(0, rows - 1).map(decode)


def _file(kind: FileKind):
    return st.lists(_row(kind), min_size=0, max_size=6)


def _input(adapter: str):
    return st.tuples(*[_file(kind) for kind in ADAPTER_FILES[adapter]])


OUTCOMES: Counter = Counter()
"""(adapter, outcome) -> examples: ``parsed`` or the refused input's error class."""


def _write(folder: Path, kind: FileKind, rows: list[str]) -> int:
    """Write one file; returns its number of data lines."""
    lines = ([kind.header] if kind.header is not None else []) + rows
    data = "".join(line + "\n" for line in lines).encode()
    (folder / kind.name).write_bytes(gzip.compress(data, mtime=0) if kind.gzip else data)
    return len(rows)


def check_adapter(adapter: str, files: tuple[list[str], ...], folder: Path) -> None:
    """Write one example's files into ``folder`` (reused: every file is rewritten) and
    check the parse stage on them."""
    expected = {
        kind.name: _write(folder, kind, rows)
        for kind, rows in zip(ADAPTER_FILES[adapter], files, strict=True)
    }
    config = PrepareConfig(source=adapter, input_path=str(folder), output_path="unused")
    try:
        result = parse_local(config)
    except DataError as error:
        OUTCOMES[adapter, type(error).__name__] += 1
        return
    OUTCOMES[adapter, "parsed"] += 1
    events = result.events
    # Every data line of every file read is exactly one row, with its own line number.
    read = {Path(s.path).name: i for i, s in enumerate(result.sources)}
    file_index = events.column(schema.FILE).to_pylist() if events.num_rows else []
    rows_per_file = Counter(file_index)
    located = list(zip(file_index, events.column(schema.LINE).to_pylist(), strict=True))
    assert len(set(located)) == len(located)
    for name, index in read.items():
        assert rows_per_file[index] == expected[name], (name, expected[name])
    skipped = set(expected) - set(read)
    assert all(expected[name] == 0 for name in skipped), skipped
    drops = result.drops()
    kept = events.num_rows - sum(drops.values())
    assert kept >= 0 and set(drops) <= set(schema.DROP_REASONS.values())
    assert sum(expected[n] for n in read) == kept + sum(drops.values())


def _examples(adapter: str, factor: int = 1) -> int:
    return factor * -(-FILES_PER_ADAPTER // len(ADAPTER_FILES[adapter]))


def _fuzz(adapter: str, factor: int, folder: Path):
    @settings(max_examples=_examples(adapter, factor), deadline=None, derandomize=True)
    @given(files=_input(adapter))
    def run(files):
        check_adapter(adapter, files, folder)

    run()
    assert OUTCOMES[adapter, "parsed"] > 0


@pytest.mark.parametrize("adapter", sorted(ADAPTER_FILES))
def test_fuzzed_inputs_parse_or_are_refused_and_rows_add_up(adapter, tmp_path):
    _fuzz(adapter, factor=1, folder=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", sorted(ADAPTER_FILES))
def test_fuzzed_inputs_many_more(adapter, tmp_path):
    _fuzz(adapter, factor=10, folder=tmp_path)
