"""RLlib glue of the user model: an AlgorithmConfig naming its RLModule and Learner, and
batches of display-set records in the Learner's format.

The plain loop (`models.user_model.trainer`) is what `recrl usermodel fit` runs; this path
gives the same objective to RLlib's Learner stack (data-parallel learners, GPUs,
checkpoints) — e.g. ``user_model_learner(...).update(batch=learner_batch(train, rows))``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from models.user_model.config import UserModelConfig
from models.user_model.data import DisplaySetArrays
from models.user_model.user_model_learner import UserModelLearner
from models.user_model.user_model_rl_module import (
    CLICK,
    HISTORY,
    SHOWN,
    SHOWN_MASK,
    UserModelRLModule,
    user_model_config,
)


class UserModelAlgorithmConfig(AlgorithmConfig):
    """Defaults: `UserModelRLModule` and `UserModelLearner`."""

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=UserModelRLModule)

    def get_default_learner_class(self):
        return UserModelLearner


def algorithm_config(
    config: UserModelConfig, item_features: np.ndarray, set_size: int
) -> UserModelAlgorithmConfig:
    """The AlgorithmConfig of one user model; the spaces describe a page view: the history
    (observation) and a choice among ``set_size`` slots + no-click (action)."""
    pad = item_features.shape[0] - 1
    return (
        UserModelAlgorithmConfig()
        .environment(
            observation_space=gym.spaces.Box(0, pad, (config.history_len,), np.int64),
            action_space=gym.spaces.Discrete(set_size + 1),
        )
        .rl_module(model_config=user_model_config(config, item_features))
        .training(lr=config.lr, train_batch_size_per_learner=config.batch_size)
    )


def learner_batch(data: DisplaySetArrays, rows: np.ndarray) -> MultiAgentBatch:
    """Page views ``rows`` as the MultiAgentBatch a Learner's ``update`` takes."""
    columns = {
        HISTORY: data.history[rows],
        SHOWN: data.shown[rows],
        SHOWN_MASK: data.shown_mask[rows],
        CLICK: data.click[rows],
    }
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=len(rows))
