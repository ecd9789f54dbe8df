"""Errors raised for bad input; each names the file and, where it applies, line and column."""

from __future__ import annotations

from recrl.pipelines.errors import UserError


class DataError(UserError, ValueError):
    """Input data that recrl cannot turn into transitions.

    The message always starts with the location (``file:line`` and the column where known),
    so a user can open the file at the offending place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class MissingInputError(DataError):
    """An input file or folder does not exist or holds none of the expected files."""


class SchemaMismatchError(DataError):
    """A file's columns are not the ones its format requires."""


class InvalidValuesError(DataError):
    """Too many rows had a value that could not be parsed."""


class EmptyDatasetError(DataError):
    """Cleaning removed every row; the message names the filter that emptied it."""


class OutputExistsError(DataError):
    """The output folder already holds a different dataset."""


class ForeignFilesError(OutputExistsError):
    """The output folder holds files recrl did not write; they are listed, never deleted."""


class OutputNotWritableError(DataError):
    """The output folder cannot be created where it was asked for."""


class ShardMismatchError(DataError):
    """A prepared dataset's files differ from the shard manifest in its meta.json."""
