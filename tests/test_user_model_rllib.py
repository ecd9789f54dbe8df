"""The user model as an RLlib TorchRLModule + TorchLearner (a local learner, no Ray runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.user_model.config import UserModelConfig
from models.user_model.data import DisplaySetArrays
from models.user_model.losses import shannon_mle_loss


def test_learner_minimises_the_lemma2_likelihood():
    from ray.rllib.core import DEFAULT_MODULE_ID

    from pipelines.slate.user_model_algorithm import algorithm_config, learner_batch

    rng = np.random.default_rng(0)
    n_items, pad = 8, 8
    features = np.vstack([np.eye(n_items, dtype=np.float32), np.zeros((1, n_items), np.float32)])
    shown = np.stack([rng.permutation(n_items)[:4] for _ in range(64)])
    # The user always clicks the lowest item id shown, or nothing when item 0..1 are absent.
    best = shown.argmin(axis=1)
    click = np.where(shown.min(axis=1) <= 1, best, -1)
    data = DisplaySetArrays(
        history=np.full((64, 3), pad), shown=shown, click=click, user=np.arange(64), pad_id=pad
    )
    config = UserModelConfig(history_len=3, item_embedding_dim=4, lr=0.05, seed=0)
    learner = algorithm_config(config, features, set_size=4).build_learner()
    module = learner.module[DEFAULT_MODULE_ID]
    batch = learner_batch(data, np.arange(64))
    t = data.tensors()
    with torch.no_grad():
        logits = module.network.choice_logits(t["history"], t["shown"], t["shown_mask"])
        before, _ = shannon_mle_loss(logits, t["click"])
    first = learner.update(batch=batch)
    logged = first[DEFAULT_MODULE_ID]["loss/nll"].peek()
    assert logged == pytest.approx(float(before), rel=1e-5)
    for _ in range(30):
        learner.update(batch=batch)
    with torch.no_grad():
        logits = module.network.choice_logits(t["history"], t["shown"], t["shown_mask"])
        after, _ = shannon_mle_loss(logits, t["click"])
    assert float(after) < 0.5 * float(before)
