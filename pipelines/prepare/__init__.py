"""`recrl prepare`: logged sessions → RL transitions (design.md §1)."""

from pipelines.prepare.config import PrepareConfig
from pipelines.prepare.errors import DataError
from pipelines.prepare.meta import read_meta

__all__ = ["DataError", "PrepareConfig", "read_meta"]
