"""`recrl prepare`: logged sessions → RL transitions (design.md §1)."""

from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import DataError
from recrl.pipelines.prepare.meta import read_meta

__all__ = ["DataError", "PrepareConfig", "read_meta"]
