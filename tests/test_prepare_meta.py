"""meta.json helpers: row accounting adds up, the dataset fingerprint tracks what shapes it."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.meta import (
    FORMAT_VERSION,
    META_FILE,
    RowAccounting,
    describe_sources,
    file_sha256,
    fingerprint,
    read_meta,
    write_meta,
)
from recrl.pipelines.prepare.reading import SourceFile


def test_row_accounting_passes_when_counts_add_up():
    accounting = RowAccounting(
        input_rows=100, kept_rows=70, dropped={"short_session": 20, "invalid_timestamp": 10}
    )
    accounting.check()
    assert accounting.as_dict() == {
        "input": 100,
        "kept": 70,
        "dropped": {"invalid_timestamp": 10, "short_session": 20},  # sorted by reason
        "dropped_total": 30,
    }
    RowAccounting(5, 5, {}).check()


@pytest.mark.parametrize(("kept", "dropped"), [(70, {"short_session": 29}), (71, {"a": 30})])
def test_row_accounting_raises_when_rows_go_missing_or_appear(kept, dropped):
    with pytest.raises(AssertionError, match=r"row accounting is off: 100 input rows but"):
        RowAccounting(100, kept, dropped).check()


SETTINGS = {"source": "yoochoose", "state_len": 10, "seed": 0, "split_fractions": [0.8, 0.1, 0.1]}
SOURCES = [
    {"path": "/data/clicks.csv", "name": "clicks.csv", "role": "clicks", "sha256": "aa"},
    {"path": "/data/buys.csv", "name": "buys.csv", "role": "buys", "sha256": "bb"},
]


def test_fingerprint_is_stable_for_the_same_dataset():
    first = fingerprint(SETTINGS, SOURCES)
    assert len(first) == 64 and int(first, 16) >= 0  # a sha256 hex digest
    assert fingerprint(dict(reversed(SETTINGS.items())), list(reversed(SOURCES))) == first
    moved = [{**s, "path": "/elsewhere/" + s["name"]} for s in SOURCES]
    assert fingerprint(SETTINGS, moved) == first  # content, not location, identifies inputs


@pytest.mark.parametrize(
    "change",
    [
        {"settings": {"state_len": 5}},
        {"settings": {"seed": 1}},
        {"settings": {"split_fractions": [0.7, 0.2, 0.1]}},
        {"sources": {"sha256": "ab"}},
        {"sources": {"name": "clicks2.csv"}},
        {"sources": {"role": "buys"}},
    ],
)
def test_fingerprint_changes_with_a_setting_or_a_source(change):
    settings = {**SETTINGS, **change.get("settings", {})}
    sources = [{**SOURCES[0], **change.get("sources", {})}, SOURCES[1]]
    assert fingerprint(settings, sources) != fingerprint(SETTINGS, SOURCES)


def test_fingerprint_fields_skip_settings_that_do_not_change_transitions():
    base = PrepareConfig(source="yoochoose", input_path="in", output_path="out")
    same = PrepareConfig(
        source="yoochoose",
        input_path="in",
        output_path="other",
        overwrite=True,
        num_partitions=8,
        rows_per_shard=10,
    )
    assert same.fingerprint_fields() == base.fingerprint_fields()
    assert fingerprint(same.fingerprint_fields(), SOURCES) == fingerprint(
        base.fingerprint_fields(), SOURCES
    )
    changed = PrepareConfig(source="yoochoose", input_path="in", output_path="out", r_buy=2.0)
    assert fingerprint(changed.fingerprint_fields(), SOURCES) != fingerprint(
        base.fingerprint_fields(), SOURCES
    )
    assert "output_path" not in base.fingerprint_fields()
    assert base.fingerprint_fields()["state_len"] == 10


def test_describe_sources_hashes_the_file_content(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"timestamp,visitorid,event,itemid,transactionid\n")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(str(path), chunk_size=7) == expected  # several chunks
    [info] = describe_sources([SourceFile(str(path), "events", None, True, path.stat().st_size)])
    assert info == {
        "path": str(path),
        "name": "events.csv",
        "role": "events",
        "size": 47,
        "sha256": expected,
        "header": True,
    }
    before = fingerprint(SETTINGS, [info])
    path.write_bytes(b"timestamp,visitorid,event,itemid,transactionid\n1,2,view,3,\n")
    [after] = describe_sources([SourceFile(str(path), "events", None, True, 0)])
    assert fingerprint(SETTINGS, [after]) != before


def test_sha256_of_a_gzipped_source_is_that_of_its_bytes_on_disk(tmp_path):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(b"timestamp,visitorid,event,itemid,transactionid\n"))
    assert file_sha256(str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_write_and_read_meta(tmp_path):
    meta = {"format_version": FORMAT_VERSION, "n_items": 3, "pad_id": 3, "L": 10}
    write_meta(str(tmp_path), meta)
    assert json.loads((tmp_path / META_FILE).read_text()) == meta
    assert read_meta(str(tmp_path)) == meta


def _tiny_dataset(root):
    """Two train shards of 3 and 1 rows and meta.json with their manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from recrl.pipelines.prepare.manifest import SHARDS, build_manifest

    (root / "train").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2, 3]}), root / "train" / "part-00000-000.parquet")
    pq.write_table(pa.table({"a": [4]}), root / "train" / "part-00001-000.parquet")
    meta = {"format_version": FORMAT_VERSION, SHARDS: build_manifest(str(root))}
    write_meta(str(root), meta)
    return meta


def test_manifest_lists_rows_bytes_and_sha256_of_every_shard(tmp_path):
    meta = _tiny_dataset(tmp_path)
    first, second = (tmp_path / "train" / f"part-0000{k}-000.parquet" for k in (0, 1))
    assert meta["shards"] == [
        {"path": "train/part-00000-000.parquet", "rows": 3, "bytes": first.stat().st_size,
         "sha256": hashlib.sha256(first.read_bytes()).hexdigest()},
        {"path": "train/part-00001-000.parquet", "rows": 1, "bytes": second.stat().st_size,
         "sha256": hashlib.sha256(second.read_bytes()).hexdigest()},
    ]  # fmt: skip


def test_verify_dataset_names_the_shard_that_differs(tmp_path):
    from recrl.pipelines.prepare.errors import ShardMismatchError
    from recrl.pipelines.prepare.manifest import verify_dataset

    meta = _tiny_dataset(tmp_path)
    assert verify_dataset(str(tmp_path), checksums=True) == meta
    (tmp_path / "train" / "part-00001-000.parquet").unlink()
    with pytest.raises(ShardMismatchError, match=r"part-00001-000\.parquet is missing"):
        verify_dataset(str(tmp_path), checksums=False)
    write_meta(str(tmp_path), {"format_version": 1})
    with pytest.raises(ShardMismatchError, match="without a shard manifest"):
        verify_dataset(str(tmp_path), checksums=False)
