"""Reading a sequential log with propensities (design.md §9.6): one row per impression, with
the session's history, the logged candidates (optional), the shown item, its logging
propensity and the reward, from a parquet or CSV file.

Every bad value stops the read with one `DataError` naming the file, the row (the line in a
CSV) and the column, as the Open Bandit reader does: a missing column, a propensity that is
missing, 0 or above 1, a reward that is not a number, a history or candidate list that is
missing or holds a missing id, an empty candidate list, an item listed twice in one, a shown
item that is not among its row's candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from recrl.models.ope.candidates import (
    CANDIDATES,
    EXPECTED_REWARD,
    HISTORY,
    ITEM,
    PROPENSITY,
    REWARD,
    SESSION_ID,
    CandidateSets,
    Ragged,
    candidate_sets,
)
from recrl.models.ope.logged_feedback import OPEInputError, checked_outcomes
from recrl.pipelines.prepare.errors import DataError, MissingInputError, SchemaMismatchError

REQUIRED = (HISTORY, ITEM, PROPENSITY, REWARD)
"""Columns every log must have; ``candidates``, ``session_id`` and
``candidate_expected_reward`` are optional."""
FEEDBACK_COLUMNS = {"pscore": PROPENSITY, "reward": REWARD, "action": ITEM}
"""`LoggedFeedback`'s names of the checked columns -> their names in the file."""
_LIST_SEPARATORS = re.compile(r"[\s,\[\]]+")  # a CSV cell "1 2 3", "[1, 2, 3]" or "[1 2 3]"


@dataclass(frozen=True)
class SessionLog:
    """A validated log: ``history`` (raw ids per row), ``item`` (raw ids ``[n]``),
    ``propensity`` and ``reward`` (float64 ``[n]``); ``sets`` are the candidate slots when
    the file lists candidates, with ``expected_reward`` ``[n, C]`` on those slots when it
    gives them (a simulator's truth)."""

    path: Path
    history: Ragged
    item: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    sets: CandidateSets | None
    expected_reward: np.ndarray | None
    session_id: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.item)


def read_session_log(path: str | Path) -> SessionLog:
    """Read and check the log at ``path`` (``.parquet`` or ``.csv``; module docstring).

    In a CSV, a list is one cell of ids separated by spaces or commas (brackets are ignored,
    an empty cell is an empty list), and ids are integers when every id of the file is one,
    else strings; a parquet file holds list columns and integer or string ids."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError("no such log file", file=str(path))
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise DataError("expected a .parquet or .csv log (design.md §9.6)", file=str(path))
    try:
        reader = _ParquetColumns(path) if path.suffix.lower() == ".parquet" else _CsvColumns(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid and pandas' ParserError too
        raise DataError(
            f"unreadable as {path.suffix.lower()[1:]}: {error}", file=str(path)
        ) from None
    for column in REQUIRED:
        if column not in reader.names:
            need = " (the logging policy's probability of the shown item)" * (column == PROPENSITY)
            raise SchemaMismatchError(f"column missing{need}", file=str(path), column=column)
    try:
        history = reader.ids_lists(HISTORY)
        candidates = reader.ids_lists(CANDIDATES) if CANDIDATES in reader.names else None
        item = reader.ids(ITEM)
        if len(item) == 0:
            raise DataError("the log has no rows", file=str(path))
        _one_id_type(path, history, candidates, item)
        n = len(item)
        reward, propensity = checked_outcomes(reader.numbers(REWARD), reader.numbers(PROPENSITY), n)
        sets = None if candidates is None else candidate_sets(item, candidates)
        expected = None
        if EXPECTED_REWARD in reader.names:
            expected = _expected(reader.number_lists(EXPECTED_REWARD), candidates, sets)
        session = reader.ids(SESSION_ID) if SESSION_ID in reader.names else None
    except OPEInputError as error:
        raise reader.located(error) from error
    return SessionLog(path, history, item, propensity, reward, sets, expected, session)


def _one_id_type(path: Path, history: Ragged, candidates: Ragged | None, item: np.ndarray):
    """Integer ids and string ids never match each other: refuse a file that mixes them."""
    arrays = [history.values, item] + ([] if candidates is None else [candidates.values])
    if len({values.dtype.kind for values in arrays if len(values)}) > 1:
        raise DataError(f"ids are integers in some columns and strings in others; use one type "
                        f"in {HISTORY}, {CANDIDATES} and {ITEM}", file=str(path))  # fmt: skip


def _expected(values: Ragged, candidates: Ragged | None, sets: CandidateSets) -> np.ndarray:
    if candidates is None:
        raise OPEInputError(f"needs the column {CANDIDATES!r}, with which it is aligned",
                            column=EXPECTED_REWARD)  # fmt: skip
    wrong = np.flatnonzero(values.lengths != candidates.lengths)
    if wrong.size:
        raise OPEInputError(
            f"has {values.lengths[wrong[0]]} values, the row's candidates "
            f"{candidates.lengths[wrong[0]]}", row=int(wrong[0]), column=EXPECTED_REWARD,
        )  # fmt: skip
    bad = np.flatnonzero(~np.isfinite(values.values.astype(np.float64)))
    if bad.size:
        raise OPEInputError("holds a value that is not a finite number",
                            row=int(values.row_ids[bad[0]]), column=EXPECTED_REWARD)  # fmt: skip
    expected = np.zeros(sets.items.shape)
    expected[candidates.row_ids, candidates.positions] = values.values
    return expected


class _Columns:
    """One file's columns as arrays (``ids``, ``numbers``, ``ids_lists``, ``number_lists`` in
    the subclasses); an `OPEInputError` becomes a `DataError` that names where the row is."""

    path: Path
    names: list[str]

    def located(self, error: OPEInputError) -> DataError:
        column = FEEDBACK_COLUMNS.get(error.column or "", error.column)
        line, prefix = self._where(error.row)
        return DataError(prefix + error.message, file=str(self.path), line=line, column=column)

    def _where(self, row: int | None) -> tuple[int | None, str]:
        """(the line to name, a prefix for the message) of a 0-based data row."""
        return None, ""


class _ParquetColumns(_Columns):
    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.table = pq.read_table(path)
        self.names = self.table.column_names

    def _where(self, row):
        return None, "" if row is None else f"row {row + 1}: "

    def _array(self, name: str):
        array = self.table.column(name).combine_chunks()
        missing = np.flatnonzero(np.asarray(array.is_null()))
        if missing.size:
            raise OPEInputError("is missing" + (" (write an empty list for a session's first "
                                "event)" if name == HISTORY else ""), row=int(missing[0]),
                                column=name)  # fmt: skip
        return array

    def ids(self, name):
        return _id_array(self._array(name).to_numpy(zero_copy_only=False), name)

    def numbers(self, name):
        import pyarrow as pa

        array = self.table.column(name).combine_chunks()
        if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
            raise OPEInputError(f"holds {array.type}, not numbers", column=name)
        return array.to_numpy(zero_copy_only=False).astype(np.float64)  # a null reads as NaN

    def ids_lists(self, name):
        return self._lists(name, numbers=False)

    def number_lists(self, name):
        return self._lists(name, numbers=True)

    def _lists(self, name: str, *, numbers: bool) -> Ragged:
        import pyarrow as pa

        array = self._array(name)
        if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
            raise OPEInputError(f"holds {array.type}, not lists", column=name)
        offsets = np.asarray(array.offsets, dtype=np.int64)
        values = array.flatten()
        ragged = Ragged(np.zeros(len(values)), offsets - offsets[0])
        missing = np.flatnonzero(np.asarray(values.is_null()))
        if missing.size:
            raise OPEInputError("holds a missing id" if not numbers else "holds a missing value",
                                row=int(ragged.row_ids[missing[0]]), column=name)  # fmt: skip
        raw = values.to_numpy(zero_copy_only=False)
        return ragged.with_values(raw.astype(np.float64) if numbers else _id_array(raw, name))


class _CsvColumns(_Columns):
    def __init__(self, path: Path) -> None:
        import pandas as pd

        self.path = path
        # every cell as text, an empty cell as "": types are decided per column below
        self.frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        self.names = list(self.frame.columns)
        id_columns = [c for c in (HISTORY, CANDIDATES, ITEM) if c in self.names]
        tokens = [token for column in id_columns for cell in self.frame[column]
                  for token in _tokens(cell)]  # fmt: skip
        self.integer_ids = all(re.fullmatch(r"-?\d+", token) for token in tokens)

    def _where(self, row):
        return (None if row is None else row + 2), ""  # 1-based, after the header line

    def _convert(self, tokens: list[str]) -> np.ndarray:
        return (
            np.array(tokens, dtype=np.int64) if self.integer_ids else np.array(tokens, dtype=object)
        )

    def ids(self, name):
        cells = self.frame[name].to_numpy()
        empty = np.flatnonzero(cells == "")
        if empty.size:
            raise OPEInputError("is missing", row=int(empty[0]), column=name)
        if name == SESSION_ID:
            return cells.astype(object)
        return self._convert([cell.strip() for cell in cells])

    def numbers(self, name):
        import pandas as pd

        cells = self.frame[name].str.strip()
        values = pd.to_numeric(cells.where(cells != ""), errors="coerce").to_numpy(np.float64)
        unreadable = np.flatnonzero(np.isnan(values) & (cells != "").to_numpy())
        if unreadable.size:
            row = int(unreadable[0])
            raise OPEInputError(f"value {cells.iloc[row]!r} is not a number", row=row, column=name)
        return values

    def ids_lists(self, name):
        rows = [_tokens(cell) for cell in self.frame[name]]
        return self._ragged(rows, self._convert([t for row in rows for t in row]))

    def number_lists(self, name):
        rows = [_tokens(cell) for cell in self.frame[name]]
        flat = [t for row in rows for t in row]
        try:
            values = np.array(flat, dtype=np.float64)
        except ValueError:
            at = next(i for i, row in enumerate(rows) if not _all_numbers(row))
            raise OPEInputError("holds a value that is not a number", row=at,
                                column=name) from None  # fmt: skip
        return self._ragged(rows, values)

    @staticmethod
    def _ragged(rows: list[list[str]], values: np.ndarray) -> Ragged:
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        return Ragged(values, np.concatenate([[0], np.cumsum(lengths)]))


def _tokens(cell: str) -> list[str]:
    return [token for token in _LIST_SEPARATORS.split(cell) if token]


def _all_numbers(tokens: list[str]) -> bool:
    try:
        np.array(tokens, dtype=np.float64)
    except ValueError:
        return False
    return True


def _id_array(values: np.ndarray, name: str) -> np.ndarray:
    """Integer ids as int64, string ids as an object array; anything else is refused."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind in "OUS" and all(isinstance(v, str) for v in values):
        return values.astype(object)
    raise OPEInputError(f"ids must be integers or strings, got {values.dtype}", column=name)
