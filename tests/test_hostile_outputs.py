"""Hostile trials of the folders recrl writes: a failed, interrupted or killed job leaves
the complete old output or the complete new one; files recrl did not write are refused and
never deleted; a missing, extra, truncated or altered shard is refused, named, by reuse,
`recrl stats` and `recrl train`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from recrl.pipelines import atomic_output
from recrl.pipelines.cli import main
from recrl.pipelines.prepare.errors import ForeignFilesError
from recrl.pipelines.prepare.manifest import verify_dataset

from tests.hostile import assert_user_error, run_recrl, tree_digest

DEAD_PID = 999_999_999  # above any pid_max: no such process
TRAIN_SHARD = "train/part-00000-000.parquet"


def _write_csv(path: Path, *, bad_timestamps: int = 0) -> Path:
    """40 sessions of 5 clicks each (a purchase last in every 4th), items i0..i11."""
    lines = ["session_id,timestamp,item_id,event"]
    for s in range(40):
        for k in range(5):
            event = "purchase" if k == 4 and s % 4 == 0 else "click"
            lines.append(f"s{s},2024-01-01T00:{s:02d}:{k:02d}Z,i{(s + k) % 12},{event}")
    for b in range(bad_timestamps):
        lines[1 + 5 * b] = lines[1 + 5 * b].replace("2024-01-01T", "2024-13-01T")
    path.write_text("\n".join(lines) + "\n")
    return path


def _prepare(capsys, source: Path, out: Path, *extra: str):
    return run_recrl(
        capsys, "-q", "prepare", "--source", "generic", "--input", source, "--output", out,
        "--state-len", "3", *extra,
    )  # fmt: skip


def _siblings(out: Path) -> list[str]:
    """Staging / old siblings left next to ``out``."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _write_csv(tmp_path_factory.mktemp("input") / "log.csv")


@pytest.fixture(scope="module")
def original(ray_session, tmp_path_factory, source) -> Path:
    """One prepared dataset per module; tests copy it (`dataset`)."""
    out = tmp_path_factory.mktemp("built") / "prepared"
    args = ["-q", "prepare", "--source", "generic", "--input", str(source), "--output"]
    assert main([*args, str(out), "--state-len", "3"]) == 0
    return out


@pytest.fixture
def dataset(original, tmp_path) -> Path:
    out = tmp_path / "data" / "prepared"
    shutil.copytree(original, out)
    return out


def _meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


def _rewrite_meta(out: Path, change) -> None:
    meta = _meta(out)
    change(meta)
    (out / "meta.json").write_text(json.dumps(meta))


# --- the manifest ------------------------------------------------------------------------


@pytest.mark.ray
def test_manifest_lists_every_file_with_rows_bytes_and_checksum(dataset):
    meta = _meta(dataset)
    files = {str(p.relative_to(dataset)) for p in dataset.rglob("*") if p.is_file()} - {"meta.json"}
    assert {entry["path"] for entry in meta["shards"]} == files
    rows = {entry["path"]: entry["rows"] for entry in meta["shards"]}
    # 40 sessions of 5 events, all kept: 200 transitions over the three splits.
    assert sum(n for p, n in rows.items() if p.split("/")[0] in ("train", "val", "test")) == 200
    assert rows["items.parquet"] == 12 and rows["sessions.parquet"] == 40
    for entry in meta["shards"]:
        assert entry["bytes"] == (dataset / entry["path"]).stat().st_size
        assert len(entry["sha256"]) == 64
    assert meta["format_version"] == 2
    assert verify_dataset(str(dataset), checksums=True)["n_items"] == 12


# --- prepare --overwrite never loses the old dataset ------------------------------------


@pytest.mark.ray
def test_overwrite_with_input_that_fails_validation_leaves_old_dataset(dataset, tmp_path, capsys):
    bad = _write_csv(tmp_path / "bad.csv", bad_timestamps=10)  # 10 of 200 rows: 5 %
    before = tree_digest(dataset)
    outcome = _prepare(capsys, bad, dataset, "--overwrite")
    assert_user_error(outcome, "bad.csv", "max_invalid_fraction")
    assert tree_digest(dataset) == before
    assert _siblings(dataset) == []


@pytest.mark.ray
def test_ctrl_c_while_writing_leaves_old_dataset_and_no_staging(
    dataset, source, capsys, monkeypatch
):
    import recrl.pipelines.prepare.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_items", interrupted)  # after the shards are written
    before = tree_digest(dataset)
    outcome = _prepare(capsys, source, dataset, "--overwrite", "--seed", "5")
    assert outcome.code == 130 and "interrupted" in outcome.err
    assert tree_digest(dataset) == before
    assert _siblings(dataset) == []


@pytest.mark.ray
def test_full_disk_while_writing_meta_leaves_old_dataset(dataset, source, monkeypatch):
    import recrl.pipelines.prepare.pipeline as pipeline
    from recrl.pipelines.prepare.config import PrepareConfig

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_meta", no_space)
    before = tree_digest(dataset)
    config = PrepareConfig(
        source="generic", input_path=str(source), output_path=str(dataset), state_len=3,
        seed=5, overwrite=True,
    )  # fmt: skip
    with pytest.raises(OSError, match="No space left"):
        pipeline.prepare(config)
    assert tree_digest(dataset) == before
    assert _siblings(dataset) == []


@pytest.mark.ray
def test_a_log_of_one_session_leaves_no_half_written_folder(ray_session, tmp_path, capsys):
    log = tmp_path / "one.csv"
    rows = "".join(f"s0,2024-01-01T00:00:0{k}Z,i{k},click\n" for k in range(5))
    log.write_text("session_id,timestamp,item_id,event\n" + rows)
    out = tmp_path / "out"
    assert_user_error(_prepare(capsys, log, out), "one.csv")
    assert not out.exists()
    assert _siblings(out) == []


@pytest.mark.ray
def test_overwrite_replaces_the_whole_folder(dataset, source, capsys):
    outcome = _prepare(capsys, source, dataset, "--overwrite", "--seed", "5")
    assert outcome.code == 0, outcome.err
    meta = _meta(dataset)
    assert meta["settings"]["seed"] == 5
    assert verify_dataset(str(dataset), checksums=True) == meta
    assert _siblings(dataset) == []


# --- leftovers of killed runs ------------------------------------------------------------


@pytest.mark.ray
def test_stale_staging_folder_of_a_killed_run_is_removed(dataset, source, capsys):
    stale = dataset.with_name(f".prepared.tmp-{DEAD_PID}-0badc0de")
    shutil.copytree(dataset / "train", stale / "train")  # half a dataset
    before = tree_digest(dataset)
    outcome = _prepare(capsys, source, dataset)
    assert outcome.code == 0 and "reused" in outcome.out, outcome.err
    assert not stale.exists()
    assert tree_digest(dataset) == before


@pytest.mark.ray
def test_swap_killed_between_its_renames_is_undone(dataset, source, capsys):
    before = tree_digest(dataset)
    old = dataset.with_name(f".prepared.old-{DEAD_PID}-0badc0de")
    dataset.rename(old)  # killed after `target -> .old`, before `staging -> target`
    dataset.with_name(f".prepared.tmp-{DEAD_PID}-0badc0de").mkdir()
    outcome = _prepare(capsys, source, dataset)
    assert outcome.code == 0 and "reused" in outcome.out, outcome.err
    assert tree_digest(dataset) == before
    assert _siblings(dataset) == []


@pytest.mark.ray
def test_old_folder_left_after_a_finished_swap_is_removed(dataset, source, capsys):
    old = dataset.with_name(f".prepared.old-{DEAD_PID}-0badc0de")
    shutil.copytree(dataset, old)
    before = tree_digest(dataset)
    outcome = _prepare(capsys, source, dataset)
    assert outcome.code == 0, outcome.err
    assert tree_digest(dataset) == before
    assert _siblings(dataset) == []


# --- files recrl did not write ------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.parametrize("where", ["notes.txt", "train/notes.txt", "val/deep/er/notes.txt"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_foreign_file_is_refused_named_and_kept(dataset, source, capsys, where, overwrite):
    foreign = dataset / where
    foreign.parent.mkdir(parents=True, exist_ok=True)
    foreign.write_text("mine\n")
    before = tree_digest(dataset)
    outcome = _prepare(capsys, source, dataset, *(["--overwrite"] if overwrite else []))
    line = assert_user_error(outcome, where, "did not write")
    assert "incomplete" not in line
    assert tree_digest(dataset) == before


@pytest.mark.ray
def test_many_foreign_files_are_counted(dataset, source, capsys):
    for k in range(8):
        (dataset / f"note{k}.txt").write_text("x")
    line = assert_user_error(_prepare(capsys, source, dataset, "--overwrite"), "note0.txt")
    assert "8 file(s)" in line and "and 3 more" in line


@pytest.mark.ray
def test_folder_without_meta_needs_overwrite_and_foreign_files_are_not_incomplete(
    dataset, source, capsys
):
    (dataset / "meta.json").unlink()  # what an interrupted older recrl left
    line = assert_user_error(_prepare(capsys, source, dataset), "incomplete", "--overwrite")
    assert str(dataset) in line
    (dataset / "train" / "notes.txt").write_text("mine\n")
    before = tree_digest(dataset)
    line = assert_user_error(_prepare(capsys, source, dataset, "--overwrite"), "train/notes.txt")
    assert "incomplete" not in line
    assert tree_digest(dataset) == before


def test_output_under_a_regular_file_is_refused_before_any_work(tmp_path, capsys):
    source = _write_csv(tmp_path / "log.csv")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    outcome = _prepare(capsys, source, blocker / "out")
    assert_user_error(outcome, str(blocker), "is a file")
    assert blocker.read_text() == "x"


# --- damaged shards: refused by reuse, stats and train -----------------------------------


def _missing(out: Path) -> None:
    (out / TRAIN_SHARD).unlink()


def _truncated(out: Path) -> None:
    data = (out / TRAIN_SHARD).read_bytes()
    (out / TRAIN_SHARD).write_bytes(data[: len(data) // 2])


def _altered(out: Path) -> None:
    """Same size, same footer: only the checksum tells (a flipped byte in the data)."""
    path = out / TRAIN_SHARD
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # inside the first data page, far from the footer
    path.write_bytes(bytes(data))


def _rows(out: Path) -> None:
    def change(meta):
        entry = next(e for e in meta["shards"] if e["path"] == TRAIN_SHARD)
        entry["rows"] += 1

    _rewrite_meta(out, change)


def _extra(out: Path) -> None:
    shutil.copy(out / TRAIN_SHARD, out / "train" / "part-09999-000.parquet")


DAMAGE = {
    "missing": (_missing, TRAIN_SHARD, "missing"),
    "truncated": (_truncated, TRAIN_SHARD, "truncated"),
    "altered": (_altered, TRAIN_SHARD, "SHA-256"),
    "row count": (_rows, TRAIN_SHARD, "rows"),
    "extra": (_extra, "train/part-09999-000.parquet", ""),
}


@pytest.mark.ray
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_reuse_refuses_a_damaged_shard(dataset, source, capsys, kind):
    damage, name, word = DAMAGE[kind]
    damage(dataset)
    before = tree_digest(dataset)
    line = assert_user_error(_prepare(capsys, source, dataset), name, word)
    assert "already holds" not in line
    assert tree_digest(dataset) == before


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["missing", "truncated", "row count", "extra"])
def test_stats_refuses_a_damaged_shard(dataset, capsys, kind):
    damage, name, word = DAMAGE[kind]
    damage(dataset)
    assert_user_error(run_recrl(capsys, "stats", dataset), name, word)


@pytest.mark.ray
def test_stats_verify_finds_a_same_size_alteration(dataset, capsys):
    _altered(dataset)
    assert run_recrl(capsys, "stats", dataset).code == 0  # sizes and footers still match
    assert_user_error(run_recrl(capsys, "stats", "--verify", dataset), TRAIN_SHARD, "SHA-256")


@pytest.mark.ray
@pytest.mark.parametrize("kind", ["missing", "truncated"])
def test_train_refuses_a_damaged_shard_before_training(dataset, tmp_path, capsys, kind):
    damage, name, word = DAMAGE[kind]
    damage(dataset)
    outcome = run_recrl(
        capsys, "-q", "train", "--variant", "sasrec", "--data", dataset, "--steps", "2",
        "--no-mlflow", "--run-dir", tmp_path / "run",
    )  # fmt: skip
    assert_user_error(outcome, name, word)
    assert not (tmp_path / "run").exists()


@pytest.mark.ray
def test_dataset_without_manifest_is_refused_with_the_fix(dataset, source, capsys):
    def older(meta):
        del meta["shards"]
        meta["format_version"] = 1

    _rewrite_meta(dataset, older)
    assert_user_error(run_recrl(capsys, "stats", dataset), "shard manifest", "--overwrite")
    before = tree_digest(dataset)
    assert_user_error(_prepare(capsys, source, dataset), "format_version 1", "--overwrite")
    assert tree_digest(dataset) == before


# --- the atomic-replace helper, display sets, user models, sweep reports ---------------


@pytest.mark.parametrize("stop", [RuntimeError("boom"), KeyboardInterrupt()])
def test_staged_output_leaves_target_untouched_on_failure(tmp_path, stop):
    target = tmp_path / "out"
    target.mkdir()
    (target / "meta.json").write_text("old")
    with pytest.raises(type(stop)), atomic_output.staged_output(str(target)) as staging:
        Path(staging, "meta.json").write_text("new")
        raise stop
    assert (target / "meta.json").read_text() == "old"
    assert _siblings(target) == []


def test_staged_output_through_a_symlink_replaces_the_folder_it_points_to(tmp_path):
    real = _one(tmp_path / "real", "meta.json", "old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_output.staged_output(str(link)) as staging:
        Path(staging, "meta.json").write_text("new")
    assert link.is_symlink() and (real / "meta.json").read_text() == "new"
    assert _siblings(real) == [] and _siblings(link) == []


def test_staged_output_on_a_uri_builds_aside_and_copies_meta_last(tmp_path):
    """``file://`` takes the object-store path (copy, no rename)."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "meta.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_output.staged_output(f"file://{target}") as st:
        Path(st.removeprefix("file://"), "meta.json").write_text("half")
        raise RuntimeError
    assert tree_digest(target) == tree_digest(_one(tmp_path / "ref", "meta.json", "old"))
    with atomic_output.staged_output(f"file://{target}") as staging:
        Path(staging.removeprefix("file://"), "train").mkdir()
        Path(staging.removeprefix("file://"), "train", "a.parquet").write_text("a")
        Path(staging.removeprefix("file://"), "meta.json").write_text("new")
    assert sorted(tree_digest(target)) == ["meta.json", "train/a.parquet"]
    assert (target / "meta.json").read_text() == "new"
    assert _siblings(target) == []


def test_a_file_put_in_the_target_during_the_build_is_refused_not_deleted(tmp_path):
    """The foreign-file check is made again right before the swap."""
    target = _one(tmp_path / "out", "meta.json", "old")
    with (
        pytest.raises(ForeignFilesError, match=r"notes\.txt"),
        atomic_output.staged_output(str(target), ours={"meta.json"}.__contains__) as staging,
    ):
        Path(staging, "meta.json").write_text("new")
        (target / "notes.txt").write_text("mine")  # the user, while the job runs
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "meta.json").read_text() == "old"
    assert _siblings(target) == []


def test_a_failed_copy_into_a_uri_keeps_the_complete_staging_copy(tmp_path, monkeypatch):
    """Object stores cannot rename: when copying the new output in fails, the old one is
    already gone, so the staging prefix (the only complete copy) is kept and named."""
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    target = _one(tmp_path / "out", "meta.json", "old")

    class QuotaExceeded:
        """The local filesystem, except that copying fails."""

        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def copy_file(self, src, dest):
            raise OSError("quota exceeded")

    def from_uri(uri):
        fs, path = pafs.FileSystem.from_uri(uri)
        return QuotaExceeded(fs), path

    fake = SimpleNamespace(
        FileSystem=SimpleNamespace(from_uri=from_uri),
        FileSelector=pafs.FileSelector,
        FileType=pafs.FileType,
    )
    monkeypatch.setattr(atomic_output, "pafs", fake)
    with (
        pytest.raises(atomic_output.OutputNotWritableError, match="kept at") as error,
        atomic_output.staged_output(f"file://{target}") as staging,
    ):
        Path(staging.removeprefix("file://"), "meta.json").write_text("new")
    kept = str(error.value).split("kept at file://")[1].split()[0].rstrip(";,")
    assert Path(kept, "meta.json").read_text() == "new"


def _one(folder: Path, name: str, text: str) -> Path:
    folder.mkdir()
    (folder / name).write_text(text)
    return folder


def _impressions_config(tmp_path: Path, out: Path, seed: int = 0):
    from recrl.pipelines.display_sets.config import DisplaySetConfig

    folder = tmp_path / "imp"
    if not folder.exists():
        folder.mkdir()
        (folder / "log.csv").write_text(
            "user_id,timestamp,shown,clicked\n"
            "a,2024-01-01T00:00:00Z,x y z,y\n"
            "a,2024-01-01T00:01:00Z,x w,\n"
            "b,2024-01-01T00:02:00Z,x y,x\n"
        )
    return DisplaySetConfig(
        source="impressions", input_path=str(folder), output_path=str(out),
        split_fractions=(1.0, 0.0, 0.0), seed=seed,
    )  # fmt: skip


def test_display_sets_interrupted_rebuild_leaves_the_old_ones(tmp_path, monkeypatch):
    import recrl.pipelines.display_sets.build as build

    out = tmp_path / "sets"
    build.build_display_sets(_impressions_config(tmp_path, out))
    before = tree_digest(out)
    assert sorted(before) == ["items.parquet", "meta.json", "test.parquet", "train.parquet",
                              "val.parquet"]  # fmt: skip

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "write_meta", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build.build_display_sets(_impressions_config(tmp_path, out, seed=1))
    assert tree_digest(out) == before
    assert _siblings(out) == []
    monkeypatch.undo()
    build.build_display_sets(_impressions_config(tmp_path, out, seed=1))
    assert json.loads((out / "meta.json").read_text())["settings"]["seed"] == 1


def test_display_sets_refuse_a_folder_with_foreign_files(tmp_path):
    from recrl.pipelines.display_sets.build import build_display_sets

    out = tmp_path / "sets"
    build_display_sets(_impressions_config(tmp_path, out))
    (out / "mine.csv").write_text("x")
    before = tree_digest(out)
    with pytest.raises(ForeignFilesError, match=r"mine\.csv"):
        build_display_sets(_impressions_config(tmp_path, out, seed=1))
    assert tree_digest(out) == before


def test_user_model_save_interrupted_keeps_the_old_file(tmp_path, monkeypatch):
    import numpy as np
    import recrl.models.user_model.checkpoint as checkpoint
    import torch
    from recrl.models.user_model.config import UserModelConfig
    from recrl.models.user_model.network import UserModel

    path = tmp_path / "um" / "user_model.pt"
    path.parent.mkdir()
    path.write_bytes(b"old model")

    def half_then_kill(payload, file):
        Path(file).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_then_kill)
    features = np.zeros((3, 1), dtype=np.float32)
    model = UserModel(features, UserModelConfig())
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_user_model(path, model, model, features)
    assert path.read_bytes() == b"old model"
    assert sorted(p.name for p in path.parent.iterdir()) == ["user_model.pt"]


def test_sweep_report_csv_failure_keeps_the_old_report(tmp_path):
    from recrl.pipelines.tune.report import write_csv

    path = tmp_path / "report.csv"
    path.write_text("old report\n")

    class Broken:  # fails after the header row is written
        variant, setting, runs, diverged = "v", "s", [], []

        def best(self, mode):
            raise RuntimeError("no curve")

    with pytest.raises(RuntimeError, match="no curve"):
        write_csv([Broken()], path)
    assert path.read_text() == "old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]
    assert os.access(path, os.R_OK)
