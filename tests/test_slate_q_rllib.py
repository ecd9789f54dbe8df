"""Slate Q-networks trained by RLlib (`SlateQAlgorithm`) on a tiny simulated user, the
replay buffer and DQN-Off through the same Learner: learning checks, not timing."""

from __future__ import annotations

import numpy as np
from recrl.models.slate.policies import RandomSlatePolicy
from recrl.pipelines.slate.config import CDQNConfig
from recrl.pipelines.slate.evaluation import evaluate_policy, item_feature_table
from recrl.pipelines.slate.offline import train_offline_slate_q
from recrl.pipelines.slate.training import ModuleSlatePolicy, train_slate_q
from recrl.pipelines.slate.transitions import TransitionReplay

from tests.test_slate_policies import _env


def _transitions(start: int, n: int) -> dict[str, np.ndarray]:
    r = np.arange(start, start + n)
    return {"state": r[:, None].astype(np.float32), "candidates": np.zeros((n, 3), np.int64),
            "candidate_mask": np.ones((n, 3), np.int8), "slate": np.zeros((n, 2), np.int64),
            "reward": r.astype(np.float32), "next_state": r[:, None].astype(np.float32),
            "next_candidates": np.zeros((n, 3), np.int64),
            "next_mask": np.ones((n, 3), np.int8), "done": np.zeros(n, bool)}  # fmt: skip


def test_replay_keeps_the_latest_capacity_transitions():
    replay = TransitionReplay(capacity=5)
    replay.add(_transitions(0, 3))
    replay.add(_transitions(3, 4))  # 7 added: 0 and 1 overwritten
    assert replay.size == 5
    batch = replay.sample(400, np.random.default_rng(0))["default_policy"]
    rewards = set(batch["rewards"].tolist())
    assert rewards == {2.0, 3.0, 4.0, 5.0, 6.0}
    assert np.array_equal(batch["obs"]["state"][:, 0], batch["rewards"])  # rows stay aligned


def test_rllib_cascading_dqn_learns_to_beat_random(ray_session, one_torch_thread):
    env = _env()
    logged = []
    config = CDQNConfig(env_steps=600, warmup_steps=100, batch_size=32, hidden=16, lr=5e-3)
    module = train_slate_q(_env, config, on_log=lambda step, m: logged.append((step, m)),
                           progress=False)  # fmt: skip
    losses = [m["loss/td"] for _, m in logged]
    assert len(losses) >= 4 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < losses[0]  # the Q loss goes down
    assert logged[-1][0] >= 600
    learned = evaluate_policy(env, ModuleSlatePolicy(module, env.model), episodes=30, seed=2)
    random = evaluate_policy(env, RandomSlatePolicy(2, seed=2), episodes=30, seed=2)
    assert learned["reward"] > random["reward"] + 0.2


def test_offline_dqn_learns_from_logged_clicks(one_torch_thread):
    env = _env()
    # Logged page views in which the user always clicks the highest-utility shown item.
    rng = np.random.default_rng(0)
    pad = env.pad_id
    shown = np.stack([rng.choice(env.n_items, 6, replace=False) for _ in range(300)])
    history = np.full((300, 2), pad)
    from recrl.models.user_model.checkpoint import LoadedUserModel
    from recrl.models.user_model.data import DisplaySetArrays

    views = DisplaySetArrays(history=history, shown=shown, click=shown.argmax(axis=1),
                             user=np.arange(300), pad_id=pad)  # fmt: skip
    loaded = LoadedUserModel(env.model, env.reward_model, np.zeros((pad + 1, 1)), {})
    features = item_feature_table(env.model).numpy()
    config = CDQNConfig(env_steps=300, warmup_steps=0, batch_size=32, hidden=16, lr=5e-3)
    logged = []
    module = train_offline_slate_q(views, loaded, features, 2, config, progress=False,
                                   on_log=lambda s, m: logged.append(m), log_every=50)  # fmt: skip
    assert len(logged) == 6 and logged[-1]["loss/td"] < logged[0]["loss/td"]
    learned = evaluate_policy(env, ModuleSlatePolicy(module, env.model), episodes=30, seed=2)
    random = evaluate_policy(env, RandomSlatePolicy(2, seed=2), episodes=30, seed=2)
    assert learned["reward"] > random["reward"]
