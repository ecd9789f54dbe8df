"""Training cascading Q-networks against the simulated user, and Table-3 evaluation.

A plain PyTorch loop (experience replay, ε-greedy, Polyak target network; Chen et al. 2019
Algorithm 2 in the appendix, SPEC §5): each env step stores (s, pool, slate, r, s', pool'),
each update regresses all Q_j on y = r + γ·Q_k^target(s', a*') (`cascading_td_loss`,
`next_state_value`). ``reward = "pm1"`` trains on ±1 for click / no click (GAN-RWD1) while
the environment still reports the learned reward for evaluation. The state is the frozen
user model's state of the history (obs["state"]) and an item's features are the user
model's f_a, as in the paper (eq. 9 uses the embedding of eq. 4).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from envs.user_model_env import UserModelEnv
from models.slate.cascading import CascadingQNetwork, next_state_value
from models.slate.losses import cascading_td_loss
from models.slate.policies import CascadingQPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CDQNConfig:
    """Cascading DQN settings (defaults: SPEC §4/§8 where they apply)."""

    hidden: int = 64
    """ℓ: hidden units of each Q_j (eq. 9)."""
    gamma: float = 0.5
    """Discount γ (SPEC §4 default)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 64
    """Transitions per update."""
    replay_size: int = 20_000
    """Replay buffer capacity."""
    env_steps: int = 5_000
    """Environment steps of training."""
    warmup_steps: int = 500
    """Steps of pure random slates before updates start."""
    epsilon_end: float = 0.05
    """ε after the linear decay from 1 over the first half of training."""
    tau: float = 0.01
    """Polyak rate of the target network per update."""
    reward: Literal["learned", "pm1"] = "learned"
    """Training reward: the user model's utility (GAN-CDQN) or ±1 (GAN-RWD1)."""
    seed: int = 0
    """Seed of network init, exploration and replay sampling."""


class _Replay:
    def __init__(self, capacity: int, state_dim: int, pool: int, k: int) -> None:
        self.s = np.zeros((capacity, state_dim), np.float32)
        self.s2 = np.zeros_like(self.s)
        self.cand = np.zeros((capacity, pool), np.int64)
        self.mask2 = np.zeros((capacity, pool), bool)
        self.slate = np.zeros((capacity, k), np.int64)
        self.r = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size, self.next, self.capacity = 0, 0, capacity

    def add(self, s, cand, slate, r, s2, mask2, done) -> None:
        i = self.next
        self.s[i], self.cand[i], self.slate[i], self.r[i] = s, cand, slate, r
        self.s2[i], self.mask2[i], self.done[i] = s2, mask2, done
        self.next, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows = rng.integers(0, self.size, n)
        names = ("s", "s2", "cand", "mask2", "slate", "r", "done")
        return {name: torch.as_tensor(getattr(self, name)[rows]) for name in names}


def item_feature_table(env: UserModelEnv) -> torch.Tensor:
    """f_a of every item (and the zero padding row) under the env's user model, frozen."""
    with torch.no_grad():
        return env.model.items(torch.arange(env.pad_id + 1)).detach()


def train_cdqn(
    env: UserModelEnv,
    config: CDQNConfig,
    *,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> CascadingQNetwork:
    """Train Q_1..Q_k (k = the env's slate size) and return the online network."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    features = item_feature_table(env)
    k = env.config.slate_size
    obs, _ = env.reset(seed=config.seed)
    net = CascadingQNetwork(len(obs["state"]), features.shape[1], k, config.hidden)
    target = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    replay = _Replay(config.replay_size, len(obs["state"]), env.pool_size, k)
    policy = CascadingQPolicy(net, features, epsilon=1.0, seed=config.seed)
    decay = max(config.env_steps // 2, 1)
    steps = tqdm(range(config.env_steps), desc="cascading DQN", disable=not progress, leave=False)
    for step in steps:
        policy.epsilon = 1.0 if step < config.warmup_steps else max(
            config.epsilon_end, 1.0 - (1.0 - config.epsilon_end) * step / decay
        )  # fmt: skip
        slate = policy.select(obs)
        next_obs, reward, terminated, truncated, info = env.step(slate)
        train_reward = reward if config.reward == "learned" else (
            1.0 if info["clicked_slot"] >= 0 else -1.0
        )  # fmt: skip
        mask2 = next_obs["candidate_mask"].astype(bool)
        # No bootstrap where the pool cannot fill another slate; a time limit is not an end.
        exhausted = mask2.sum() < k
        replay.add(obs["state"], obs["candidates"], slate, train_reward, next_obs["state"],
                   mask2 if not exhausted else obs["candidate_mask"].astype(bool),
                   float(terminated or exhausted))  # fmt: skip
        obs = env.reset()[0] if (terminated or truncated) else next_obs
        if step >= config.warmup_steps and replay.size >= config.batch_size:
            metrics = _update(net, target, optimizer, replay.sample(config.batch_size, rng),
                              features, config)  # fmt: skip
            if on_log is not None and step % 100 == 0:
                on_log(step, {**metrics, "train/epsilon": policy.epsilon})
    return net


def _update(net, target, optimizer, batch, features, config: CDQNConfig) -> dict[str, float]:
    cand = features[batch["cand"]]  # [B, P, d]
    slate = torch.gather(cand, 1, batch["slate"][:, :, None].expand(-1, -1, cand.shape[2]))
    q_taken = net.q_values(batch["s"], slate)
    next_q = next_state_value(net, target, batch["s2"], cand, batch["mask2"])
    loss, diag = cascading_td_loss(q_taken, batch["r"], batch["done"], next_q, gamma=config.gamma)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        for p, t in zip(net.parameters(), target.parameters(), strict=True):
            t.lerp_(p, config.tau)
    return {name: float(value) for name, value in diag.items()}


def evaluate_policy(env: UserModelEnv, policy, episodes: int, seed: int) -> dict[str, float]:
    """Paper Table 3: cumulative reward = mean over simulated users of the mean reward per
    step, and CTR = clicks / steps, over ``episodes`` episodes (one user each)."""
    per_user_reward, clicks, steps = [], 0, 0
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        rewards, done = [], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy.select(obs))
            rewards.append(reward)
            clicks += int(info["clicked_slot"] >= 0)
            steps += 1
            done = terminated or truncated
        per_user_reward.append(float(np.mean(rewards)))
        obs, _ = env.reset()
    return {"reward": float(np.mean(per_user_reward)), "ctr": clicks / max(steps, 1)}
