"""The errors a user can cause, and how the command line reports them.

Every mistake a user can make (a bad setting, a missing or foreign file, an input that
cannot become a dataset) raises a `UserError`. ``recrl`` prints it as one line,
``recrl: error: <message>``, and exits with its ``exit_code``; a traceback appears only
with ``-v``. Messages name what is wrong (the setting, the file, row and column) and are a
single line, so they read the same in a terminal, a Ray job log and a CI log.
"""

from __future__ import annotations

EXIT_USAGE = 2
"""A mistake in the command, its settings or its inputs: nothing was done."""
EXIT_FAILED = 1
"""A job that started and then failed (diverged training, a lost worker)."""
EXIT_INTERRUPTED = 130
"""Stopped by ctrl-C (128 + SIGINT), as shells report it."""


class UserError(Exception):
    """A mistake the user can fix; reported in one line without a traceback."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:
        # One line whatever the message holds: a log line must not be split.
        return " ".join(super().__str__().split())


class SettingError(UserError, ValueError):
    """A setting that does not exist or has a value it cannot take; names the setting."""


class JobFailedError(UserError):
    """A job that ran and failed for a reason the user should read (not a bug)."""

    exit_code = EXIT_FAILED
