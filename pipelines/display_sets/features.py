"""Item features: genres and release year for MovieLens, topics for MIND news.

Each reader returns ``(raw item id -> row, names, matrix)``; items without a feature row get
zeros. Sources without features (YooChoose, generated sessions) have none, and the user
model learns an item embedding instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from recrl.pipelines.prepare.errors import SchemaMismatchError

logger = logging.getLogger(__name__)

MOVIELENS_GENRES = (
    "unknown", "action", "adventure", "animation", "children", "comedy", "crime",
    "documentary", "drama", "fantasy", "film_noir", "horror", "musical", "mystery",
    "romance", "sci_fi", "thriller", "war", "western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in file order."""
_YEAR = re.compile(r"(\d{4})\s*$")


@dataclass(frozen=True)
class ItemFeatures:
    """Feature rows of the items a side file describes."""

    raw_ids: list[str]
    """Raw item id of each row (as a string, the way ids are matched)."""
    names: list[str]
    """Column names."""
    values: np.ndarray
    """float32 [rows, len(names)]."""

    def for_items(self, raw_item_ids: np.ndarray) -> np.ndarray:
        """float32 [len(raw_item_ids), F]; unknown items get zeros (and are counted)."""
        index = {raw: i for i, raw in enumerate(self.raw_ids)}
        rows = np.array([index.get(str(x), -1) for x in raw_item_ids], dtype=np.int64)
        out = np.zeros((len(rows), len(self.names)), dtype=np.float32)
        out[rows >= 0] = self.values[rows[rows >= 0]]
        if (rows < 0).any():
            logger.warning("%d items have no feature row (zeros used)", int((rows < 0).sum()))
        return out


def read_movielens_items(path: str | Path) -> ItemFeatures:
    """``u.item`` (``id|title|release date|video date|url|19 genre flags``, latin-1).

    Features: the 19 genre flags, the release year standardised over the catalogue
    (``year``) and ``year_missing`` (1 where the file gives no date; ``year`` is then 0).
    """
    path = Path(path)
    ids, flags, years = [], [], []
    with path.open(encoding="latin-1") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("|")
            if len(fields) != 5 + len(MOVIELENS_GENRES):
                raise SchemaMismatchError(
                    f"expected {5 + len(MOVIELENS_GENRES)} '|'-separated fields, found "
                    f"{len(fields)}: {line[:120]!r}",
                    file=str(path),
                    line=number,
                )
            try:
                flags.append([float(x) for x in fields[5:]])
            except ValueError:
                raise SchemaMismatchError(
                    f"genre flags must be 0 or 1: {fields[5:]}", file=str(path), line=number,
                    column="genres",
                ) from None  # fmt: skip
            match = _YEAR.search(fields[2])
            years.append(float(match.group(1)) if match else np.nan)
            ids.append(fields[0].strip())
    year = np.array(years)
    known = ~np.isnan(year)
    z = np.zeros_like(year)
    if known.any():
        z[known] = (year[known] - year[known].mean()) / max(year[known].std(), 1e-6)
    values = np.column_stack([np.array(flags), z, (~known).astype(float)]).astype(np.float32)
    names = [f"genre_{g}" for g in MOVIELENS_GENRES] + ["year", "year_missing"]
    return ItemFeatures(ids, names, values)


def read_mind_news(path: str | Path) -> ItemFeatures:
    """MIND ``news.tsv`` (``id, category, subcategory, title, abstract, url, entities…``).

    Features: one-hot topic (``category``) and sub-topic (``subcategory``). Read line by
    line with a plain split on tabs, because titles hold quote characters that a CSV
    parser would take as quoting.
    """
    path = Path(path)
    ids, categories, subcategories = [], [], []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or not fields[0].strip():
                raise SchemaMismatchError(
                    f"expected tab-separated news id, category, subcategory, ...: {line[:120]!r}",
                    file=str(path),
                    line=number,
                )
            ids.append(fields[0].strip())
            categories.append(fields[1].strip() or "unknown")
            subcategories.append(fields[2].strip() or "unknown")
    topics = sorted(set(categories))
    subtopics = sorted(set(subcategories))
    values = np.zeros((len(ids), len(topics) + len(subtopics)), dtype=np.float32)
    rows = np.arange(len(ids))
    values[rows, [topics.index(c) for c in categories]] = 1.0
    values[rows, [len(topics) + subtopics.index(c) for c in subcategories]] = 1.0
    names = [f"topic_{t}" for t in topics] + [f"subtopic_{t}" for t in subtopics]
    return ItemFeatures(ids, names, values)
