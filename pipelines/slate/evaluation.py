"""Paper Table 3 metrics of a slate policy on a simulated user, and the item features the
slate Q-networks read (the user model's f_a)."""

from __future__ import annotations

import numpy as np
import torch
from recrl.envs.user_model_env import UserModelEnv
from recrl.models.user_model.network import UserModel


def item_feature_table(model: UserModel) -> torch.Tensor:
    """f_a of every item (and the zero padding row) under a user model, frozen: eq. 9 feeds
    the cascading Q-networks the embedding of eq. 4."""
    with torch.no_grad():
        return model.items(torch.arange(model.pad_id + 1)).detach()


def evaluate_policy(env: UserModelEnv, policy, episodes: int | None, seed: int) -> dict[str, float]:
    """Paper Table 3: cumulative reward = mean over simulated users of the mean reward per
    step, and CTR = clicks / steps. ``episodes`` episodes of randomly drawn users, or with
    ``episodes=None`` one episode per user of the environment's split (all test users).
    ``policy.select(obs) -> int64 [k]`` candidate slots. Also returns ``episodes``, the mean
    ``visit_length`` (steps per episode: ``episode_length`` unless the environment's quit
    rule, `UserModelEnvConfig.quit_after`, or an exhausted pool ends a visit early) and the
    mean ``return`` (summed reward per visit, undiscounted)."""
    per_user_reward, returns, lengths, clicks = [], [], [], 0
    count = len(env.users) if episodes is None else episodes
    env.reset(seed=seed)
    for episode in range(count):
        options = None if episodes is not None else {"user_index": episode}
        obs, _ = env.reset(options=options)
        rewards, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.select(obs))
            rewards.append(reward)
            clicks += int(info["clicked_slot"] >= 0)
            done = terminated or truncated
        per_user_reward.append(float(np.mean(rewards)))
        returns.append(float(np.sum(rewards)))
        lengths.append(len(rewards))
    return {
        "reward": float(np.mean(per_user_reward)),
        "ctr": clicks / max(sum(lengths), 1),
        "episodes": count,
        "visit_length": float(np.mean(lengths)),
        "return": float(np.mean(returns)),
    }
