"""Result files are replaced atomically: an exception in the middle of writing a new result
leaves the previous one byte-for-byte as it was, and no temporary file behind."""

from __future__ import annotations

import contextlib
import csv

import pytest
from recrl.pipelines import atomic_output
from recrl.pipelines.cli import main
from recrl.pipelines.slate.job import SlateJob, _write_outputs

from tests.hostile import tree_digest


class Injected(RuntimeError):
    """The failure a test injects mid-write."""


def _failing_after(real, rows: int):
    """``csv.writer`` whose writer raises `Injected` after ``rows`` rows went to the file."""

    def writer(handle, *args, **kwargs):
        inner = real(handle, *args, **kwargs)

        class Writer:
            written = 0

            def writerow(self, row):
                if self.written == rows:
                    handle.flush()  # the partial file is really on disk
                    writer.raised = True
                    raise Injected
                self.written += 1
                return inner.writerow(row)

        return Writer()

    writer.raised = False
    return writer


def test_atomic_writes_keep_old_files_when_any_write_fails(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    atomic_output.atomic_writes(
        {first: lambda p: p.write_text("a1"), second: lambda p: p.write_text("b1")}
    )

    def broken(path):
        path.write_text("b2, half")
        raise Injected

    before = tree_digest(tmp_path)
    with pytest.raises(Injected):
        atomic_output.atomic_writes({first: lambda p: p.write_text("a2"), second: broken})
    assert tree_digest(tmp_path) == before  # a.txt not renamed in either; no .tmp file left


def test_bandit_series_survives_a_failure_mid_write(tmp_path, monkeypatch):
    argv = ["bandit", "--policy", "random", "--env", "syn-s", "--rounds", "12",
            "--run-dir", str(tmp_path / "run"), "--no-mlflow", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    before = tree_digest(tmp_path)
    assert list(before) == ["run/rounds.csv"]
    failing = _failing_after(csv.writer, rows=5)
    monkeypatch.setattr(csv, "writer", failing)
    with contextlib.suppress(Injected):  # main may report it as a bug or re-raise it
        main([*argv[:6], "20", *argv[7:]])  # a longer run replacing the series
    assert failing.raised
    assert tree_digest(tmp_path) == before


def test_slate_results_survive_a_failure_mid_write(tmp_path, monkeypatch):
    job = SlateJob(data="unused", user_model="unused", policy="random", k=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "slate_greedy_k3.csv").write_text("another policy's result\n")
    rows = [{"policy": "random", "k": 3, "seed": s, "reward": 0.5, "ctr": 0.25} for s in (0, 1)]
    written = _write_outputs(out, rows, job)
    assert [p.name for p in written] == ["slate_random_k3.csv", "slate_random_k3.png"]
    before = tree_digest(tmp_path)

    import matplotlib.figure

    def half_png(self, path, **kwargs):
        path.write_bytes(b"\x89PNG half")
        raise Injected

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_png)
    with pytest.raises(Injected):
        _write_outputs(out, [{**r, "reward": 0.9} for r in rows], job)
    assert tree_digest(tmp_path) == before  # the new CSV was written aside, never renamed in
