"""Saving and loading a fitted user model (one ``.pt`` file, torch only)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.network import UserModel

FORMAT_VERSION = 1


def save_user_model(
    path: str | Path,
    model: UserModel,
    reward: UserModel,
    item_features: np.ndarray,
    extra: dict | None = None,
) -> Path:
    """Write the click model φ, the reward r_θ (may be the same network), the item features
    and the config; ``extra`` holds provenance (data folder, metrics).

    Written to a temporary sibling and renamed over ``path``: an interruption or a full
    disk leaves the previous model file whole, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _save(tmp, model, reward, item_features, extra)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _save(
    path: Path, model: UserModel, reward: UserModel, item_features: np.ndarray, extra: dict | None
) -> None:
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(model.config),
            "model": model.state_dict(),
            "reward": reward.state_dict(),
            "item_features": np.asarray(item_features, dtype=np.float32),
            "extra": extra or {},
        },
        path,
    )


@dataclasses.dataclass(frozen=True)
class LoadedUserModel:
    model: UserModel
    """φ: the click (choice) model, in eval mode."""
    reward: UserModel
    """r_θ: the learned reward, in eval mode."""
    item_features: np.ndarray
    """float32 [n_items + 1, F] the model was trained with."""
    extra: dict
    """Provenance saved with it."""


def load_user_model(path: str | Path) -> LoadedUserModel:
    """Read a file written by `save_user_model`; both networks are frozen (no gradients)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a recrl user-model file (format {FORMAT_VERSION})")
    config = UserModelConfig(**payload["config"])
    features = payload["item_features"]
    networks = []
    for key in ("model", "reward"):
        net = UserModel(features, config)
        net.load_state_dict(payload[key])
        net.eval().requires_grad_(False)
        networks.append(net)
    return LoadedUserModel(networks[0], networks[1], features, payload["extra"])
