"""Offline training of the SASRec variants on RLlib (design.md §3-4)."""
