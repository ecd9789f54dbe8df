"""Offline evaluation of next-item recommenders (design.md §2)."""

from recrl.models.evaluation.ranking import (
    DEFAULT_KS,
    finalize_ranking,
    merge_sums,
    ranking_sums,
    true_item_ranks,
)

__all__ = ["DEFAULT_KS", "finalize_ranking", "merge_sums", "ranking_sums", "true_item_ranks"]
