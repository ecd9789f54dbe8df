"""Writing a generated dataset to disk and reading its ground truth back.

`write_generated_dataset` streams the sessions of `recrl.envs.session_generator` into parquet parts
of whole sessions, with the user model's parameters (``ground_truth.npz``) and the config and
counts (``generator.json``) beside them; equal configs give equal bytes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from recrl.envs.session_generator import (
    ARROW_SCHEMA,
    SESSIONS_PER_BLOCK,
    GroundTruth,
    SessionGeneratorConfig,
    build_ground_truth,
    iter_session_chunks,
)

logger = logging.getLogger(__name__)

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class GeneratedDataset:
    """Paths and counts of a dataset written by `write_generated_dataset`."""

    root: Path
    """Output directory."""
    session_files: tuple[Path, ...]
    """Parquet parts ``sessions/part-NNNNN.parquet``, in session order."""
    ground_truth_path: Path
    """``ground_truth.npz`` (the fields of `GroundTruth`)."""
    metadata_path: Path
    """``generator.json``: the config and the counts."""
    n_sessions: int
    """Number of sessions."""
    n_clicks: int
    """Number of click rows."""
    n_purchases: int
    """Number of purchase rows."""

    @property
    def n_rows(self) -> int:
        """Number of rows (clicks and purchases)."""
        return self.n_clicks + self.n_purchases


def _session_cut(session_ids: np.ndarray, limit: int) -> int:
    """Largest row count ≤ ``limit`` ending on a session boundary (else the next boundary)."""
    starts = np.flatnonzero(session_ids[1:] != session_ids[:-1]) + 1
    inside, after = starts[starts <= limit], starts[starts > limit]
    if inside.size:
        return int(inside[-1])
    return int(after[0]) if after.size else int(session_ids.shape[0])


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), "w") as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


def write_generated_dataset(
    config: SessionGeneratorConfig,
    out_dir: str | Path,
    *,
    rows_per_file: int = 1_000_000,
    sessions_per_chunk: int = 16 * SESSIONS_PER_BLOCK,
    threads: int | None = None,
) -> GeneratedDataset:
    """Write ``sessions/part-NNNNN.parquet``, ``ground_truth.npz`` and ``generator.json``.

    A part holds whole sessions in (session_id, timestamp) order, at most ``rows_per_file``
    rows unless a single session is longer. Old parts in ``out_dir/sessions`` are removed.
    """
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file = {rows_per_file}: must be >= 1")
    root = Path(out_dir)
    (root / "sessions").mkdir(parents=True, exist_ok=True)
    for stale in (root / "sessions").glob("part-*.parquet"):
        stale.unlink()
    truth = build_ground_truth(config)
    files: list[Path] = []
    n_purchases = 0

    def write_part(frame: pd.DataFrame) -> None:
        nonlocal n_purchases
        files.append(root / "sessions" / f"part-{len(files):05d}.parquet")
        table = pa.Table.from_pandas(frame, schema=ARROW_SCHEMA, preserve_index=False)
        pq.write_table(table, files[-1])
        n_purchases += int((frame["event"] == "purchase").sum())

    pending: pd.DataFrame | None = None
    chunks = iter_session_chunks(
        config, sessions_per_chunk=sessions_per_chunk, ground_truth=truth, threads=threads
    )
    for chunk in chunks:
        pending = chunk if pending is None else pd.concat([pending, chunk], ignore_index=True)
        while len(pending) >= rows_per_file:
            cut = _session_cut(pending["session_id"].to_numpy(), rows_per_file)
            write_part(pending.iloc[:cut])
            pending = pending.iloc[cut:].reset_index(drop=True)
    if pending is not None and len(pending):
        write_part(pending)
    n_rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)

    dataset = GeneratedDataset(
        root=root,
        session_files=tuple(files),
        ground_truth_path=root / "ground_truth.npz",
        metadata_path=root / "generator.json",
        n_sessions=config.n_sessions,
        n_clicks=n_rows - n_purchases,
        n_purchases=n_purchases,
    )
    _write_npz(dataset.ground_truth_path, dataclasses.asdict(truth))
    metadata = {
        "generator": "recrl.envs.session_generator",
        "sessions_per_block": SESSIONS_PER_BLOCK,
        "config": dataclasses.asdict(config),
        "n_sessions": dataset.n_sessions,
        "n_rows": dataset.n_rows,
        "n_clicks": dataset.n_clicks,
        "n_purchases": dataset.n_purchases,
        "session_files": [path.relative_to(root).as_posix() for path in files],
    }
    dataset.metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
    logger.info(
        "wrote %d sessions, %d rows in %d parts to %s", config.n_sessions, n_rows, len(files), root
    )
    return dataset


def load_ground_truth(out_dir: str | Path) -> GroundTruth:
    """Read ``out_dir/ground_truth.npz`` written by `write_generated_dataset`."""
    with np.load(Path(out_dir) / "ground_truth.npz", allow_pickle=False) as archive:
        values = {f.name: archive[f.name] for f in dataclasses.fields(GroundTruth)}
    return GroundTruth(**{**values, "purchase_bias": float(values["purchase_bias"])})
