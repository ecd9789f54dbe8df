"""Offline training of the SASRec variants on RLlib (SPEC §3-4)."""
