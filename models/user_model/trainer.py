"""Fitting the GAN user model: maximum likelihood (Lemma 2), then optionally eq. 6.

Plain PyTorch over in-memory page views (`DisplaySetArrays`); metrics go to an optional
``on_epoch(epoch, metrics)`` callback, so this module knows nothing about MLflow. Model
selection: the maximum-likelihood epoch with the lowest validation NLL is kept.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.losses import (
    adversarial_generator_loss,
    adversarial_reward_loss,
    choice_mask,
    shannon_mle_loss,
)
from recrl.models.user_model.metrics import precision_metrics
from recrl.models.user_model.network import UserModel
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)
EpochCallback = Callable[[int, dict[str, float]], None]
EVAL_BATCH = 2048


@dataclass
class FitResult:
    """The fitted model(s) and the per-epoch metrics."""

    model: UserModel
    """The click model used for prediction: φ with the best validation NLL (for ``l2``:
    the adversarially trained φ_α)."""
    reward: UserModel
    """r_θ, the learned reward (for ``shannon`` the same network as ``model``)."""
    mle_model: UserModel
    """The maximum-likelihood (Shannon-entropy) model; for ``l2`` the starting point of the
    adversarial phase, kept apart so both can be compared (paper Table 2)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One dict per epoch: ``train/loss``, ``val/loss``, ``val/prec1``, ``val/prec2``…"""
    best_epoch: int = 0


@torch.no_grad()
def evaluate(model: UserModel, data: DisplaySetArrays) -> dict[str, float]:
    """``loss`` (mean NLL of the observed choice, no-click included), ``prec1``, ``prec2``."""
    model.eval()
    nll_sum, logits_all = 0.0, []
    for lo in range(0, len(data), EVAL_BATCH):
        batch = data.tensors(slice(lo, lo + EVAL_BATCH))
        logits = model.choice_logits(batch["history"], batch["shown"], batch["shown_mask"])
        loss, _ = shannon_mle_loss(logits, batch["click"])
        nll_sum += float(loss) * len(batch["click"])
        logits_all.append(logits[:, :-1])
    if not logits_all:
        return {"loss": math.nan, "prec1": math.nan, "prec2": math.nan}
    scores = torch.cat(logits_all)
    tensors = data.tensors()
    return {
        "loss": nll_sum / len(data),
        **precision_metrics(scores, tensors["shown_mask"], tensors["click"]),
    }


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for lo in range(0, n, batch_size):
        yield order[lo : lo + batch_size]


def fit_user_model(
    config: UserModelConfig,
    train: DisplaySetArrays,
    val: DisplaySetArrays,
    item_features: np.ndarray,
    *,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> FitResult:
    """Train by maximum likelihood for ``config.epochs`` epochs (keeping the best on val),
    then, for ``regularizer = "l2"``, run ``adversarial_epochs`` of eq.-6 updates with φ_α
    and r_θ both initialised from the maximum-likelihood model."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = UserModel(item_features, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = FitResult(model=model, reward=model, mle_model=model)
    best_loss, best_state = math.inf, copy.deepcopy(model.state_dict())
    epochs = tqdm(range(1, config.epochs + 1), desc=f"user model ({config.state})",
                  disable=not progress, leave=False)  # fmt: skip
    for epoch in epochs:
        model.train()
        total, count = 0.0, 0
        for rows in _batches(len(train), config.batch_size, rng):
            batch = train.tensors(rows)
            logits = model.choice_logits(batch["history"], batch["shown"], batch["shown_mask"])
            loss, _ = shannon_mle_loss(logits, batch["click"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
        metrics = _epoch_metrics(model, val, total / max(count, 1))
        result.history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        epochs.set_postfix(val_loss=f"{metrics['val/loss']:.4f}", p1=f"{metrics['val/prec1']:.3f}")
        if metrics["val/loss"] < best_loss:
            best_loss, best_state, result.best_epoch = metrics["val/loss"], _copy(model), epoch
    model.load_state_dict(best_state)
    if config.regularizer == "l2" and config.adversarial_epochs:
        result.mle_model = copy.deepcopy(model)
        result.model, result.reward = _adversarial(config, model, train, val, rng, on_epoch, result)
    return result


def _copy(model: torch.nn.Module) -> dict:
    return copy.deepcopy(model.state_dict())


def _epoch_metrics(model: UserModel, val: DisplaySetArrays, train_loss: float) -> dict:
    scores = evaluate(model, val)
    return {"train/loss": train_loss, **{f"val/{k}": v for k, v in scores.items()}}


def _adversarial(config, mle_model, train, val, rng, on_epoch, result):
    """Eq. 6: alternate a φ_α ascent step on E_φ[r_θ] − ‖φ‖²/η and an r_θ descent step on
    E_φ[r_θ] − r_θ(true), both players starting from the maximum-likelihood model."""
    generator = mle_model
    reward = copy.deepcopy(mle_model)
    g_opt = torch.optim.Adam(generator.parameters(), lr=config.adversarial_lr)
    r_opt = torch.optim.Adam(reward.parameters(), lr=config.adversarial_lr)
    best_loss, best_state = math.inf, _copy(generator)
    for step in range(1, config.adversarial_epochs + 1):
        generator.train()
        reward.train()
        sums = {"loss/generator": 0.0, "loss/reward": 0.0}
        n = 0
        for rows in _batches(len(train), config.batch_size, rng):
            b = train.tensors(rows)
            mask = choice_mask(b["shown_mask"])
            r = reward.choice_logits(b["history"], b["shown"], b["shown_mask"]) / config.eta
            r = r.masked_fill(~mask, 0.0)
            phi_logits = generator.choice_logits(b["history"], b["shown"], b["shown_mask"])
            g_loss, g_diag = adversarial_generator_loss(phi_logits, r, mask, eta=config.eta)
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            phi = torch.softmax(phi_logits.detach(), dim=1)
            r_loss, r_diag = adversarial_reward_loss(phi, r, b["click"], mask)
            r_opt.zero_grad()
            r_loss.backward()
            r_opt.step()
            sums["loss/generator"] += float(g_diag["loss/generator"]) * len(rows)
            sums["loss/reward"] += float(r_diag["loss/reward"]) * len(rows)
            n += len(rows)
        metrics = _epoch_metrics(generator, val, math.nan)
        metrics.update({f"adv/{k.split('/')[1]}": v / max(n, 1) for k, v in sums.items()})
        epoch = config.epochs + step
        result.history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if metrics["val/loss"] < best_loss:
            best_loss, best_state = metrics["val/loss"], _copy(generator)
    generator.load_state_dict(best_state)
    return generator, reward
