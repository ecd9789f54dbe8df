"""SASRec backbone, heads and sequence augmentations (pure torch)."""

from recrl.models.sasrec.augment import AugmentConfig, crop, mask, random_augment, reorder
from recrl.models.sasrec.encoder import QHead, SASRecConfig, SASRecEncoder

__all__ = [
    "AugmentConfig",
    "QHead",
    "SASRecConfig",
    "SASRecEncoder",
    "crop",
    "mask",
    "random_augment",
    "reorder",
]
