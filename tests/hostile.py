"""Helpers of the hostile-input tests: run ``recrl`` in-process as a user would and check
that a mistake gets one ``recrl: error:`` line, the right exit code, and that the outputs
already on disk are byte-for-byte what they were."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from recrl.pipelines.cli import main


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("recrl: error:")]


def run_recrl(capsys, *argv: str) -> Outcome:
    """``recrl ARGV`` in this process; argparse's own exits are returned, not raised."""
    capsys.readouterr()  # drop what earlier steps printed
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code if isinstance(exit_.code, int) else 2
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_user_error(outcome: Outcome, *names: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one error line that names each of ``names``."""
    assert "Traceback" not in outcome.err, outcome.err
    assert outcome.code == code, (outcome.code, outcome.err)
    lines = outcome.error_lines or [
        line for line in outcome.err.splitlines() if line.startswith("recrl") and "error" in line
    ]
    assert len(lines) == 1, outcome.err
    for name in names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256); {} when ``root`` is absent."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
