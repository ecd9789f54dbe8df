"""The simulated-user environment: action validation, clicks and rewards from the frozen
user model, history and pool updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recrl.envs.user_model_env import InvalidSlateError, UserModelEnv, UserModelEnvConfig
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel

N_ITEMS = 6


def _loaded(utility_bias: float | None = None) -> LoadedUserModel:
    torch.manual_seed(0)
    features = np.vstack([np.eye(N_ITEMS, dtype=np.float32), np.zeros((1, N_ITEMS), np.float32)])
    config = UserModelConfig(history_len=3, item_embedding_dim=0)
    model, reward = UserModel(features, config), UserModel(features, config)
    if utility_bias is not None:
        with torch.no_grad():
            model.utility_mlp[-1].bias.fill_(utility_bias)
    for net in (model, reward):
        net.eval().requires_grad_(False)
    return LoadedUserModel(model, reward, features, {})


def _views() -> DisplaySetArrays:
    pad = N_ITEMS
    return DisplaySetArrays(
        history=np.array([[pad, pad, 0], [pad, 0, 1], [pad, pad, 5]]),
        shown=np.array([[1, 2, 3, pad], [2, 3, 4, 0], [0, 1, 4, pad]]),
        click=np.array([0, 1, 2]),
        user=np.array([7, 7, 9]),
        pad_id=pad,
    )


def _env(bias=None, **overrides) -> UserModelEnv:
    config = UserModelEnvConfig(
        **{"slate_size": 2, "episode_length": 3, "max_pool": 6, **overrides}
    )
    return UserModelEnv(_loaded(bias), _views(), config)


def test_pool_is_the_users_logged_items_padded_and_masked():
    env = _env()
    obs, info = env.reset(seed=0, options={"user_index": 0})  # user 7
    assert info["user"] == 7
    assert obs["candidates"].tolist() == [0, 1, 2, 3, 4, 6]
    # items already in the starting history are not offered again
    history = set(obs["history"].tolist()) - {N_ITEMS}
    expected = [int(c != N_ITEMS and c not in history) for c in obs["candidates"]]
    assert obs["candidate_mask"].tolist() == expected
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ([1, 1], "distinct"),
        ([1, 6], "out of range"),
        ([1, -1], "out of range"),
        ([1, 5], "masked"),  # slot 5 is padding
        ([1, 2, 3], "k=2"),
        ([1.0, 2.0], "integer"),
    ],
)
def test_invalid_actions_raise_a_clear_error(action, message):
    env = _env()
    env.reset(seed=0, options={"user_index": 0})
    with pytest.raises(InvalidSlateError, match=message):
        env.step(np.array(action))


def test_click_reward_is_the_learned_utility_and_history_moves_on():
    env = _env(bias=50.0)  # utilities ≫ 0: a click is (numerically) certain
    obs, _ = env.reset(seed=1, options={"user_index": 1})  # user 9, history [.., .., 5]
    slots = np.flatnonzero(obs["candidate_mask"])[:2]
    before = obs["history"].copy()
    obs2, reward, terminated, truncated, info = env.step(slots)
    assert info["clicked_slot"] in (0, 1) and not terminated and not truncated
    item = info["clicked_item"]
    assert item == obs["candidates"][slots[info["clicked_slot"]]]
    reward_net = env.reward_model
    with torch.no_grad():
        s = reward_net.encode(torch.as_tensor(before)[None, :])
        expected = float(reward_net.utility(s, torch.tensor([[item]]))[0, 0])
    assert reward == pytest.approx(expected)
    assert obs2["history"].tolist() == [*before[1:].tolist(), item]
    assert obs2["candidate_mask"][slots[info["clicked_slot"]]] == 0  # clicked leaves the pool
    with torch.no_grad():
        state = env.model.encode(torch.as_tensor(obs2["history"])[None, :])[0]
    assert np.allclose(obs2["state"], state.numpy())


def test_no_click_gives_zero_reward_and_keeps_the_history():
    env = _env(bias=-50.0)  # utilities ≪ 0: the user (numerically) never clicks
    obs, _ = env.reset(seed=0, options={"user_index": 0})
    slots = np.flatnonzero(obs["candidate_mask"])[:2]
    for t in range(3):
        obs2, reward, _, truncated, info = env.step(slots)
        assert reward == 0.0 and info["clicked_slot"] == -1
        assert info["click_probs"][-1] == pytest.approx(1.0)
        assert (obs2["history"] == obs["history"]).all()
        assert truncated == (t == 2)  # episode_length = 3


def test_click_probabilities_are_the_user_models_choice():
    env = _env()
    obs, _ = env.reset(seed=3, options={"user_index": 0})
    slots = np.flatnonzero(obs["candidate_mask"])[:2]
    _, _, _, _, info = env.step(slots)
    items = torch.as_tensor(obs["candidates"][slots])[None, :]
    with torch.no_grad():
        logits = env.model.choice_logits(
            torch.as_tensor(obs["history"])[None, :], items, torch.ones(1, 2, dtype=torch.bool)
        )
    assert np.allclose(info["click_probs"], torch.softmax(logits, 1)[0].numpy(), atol=1e-6)
    assert len(info["click_probs"]) == 3  # two slots + no-click


def test_whole_catalogue_pool():
    env = _env(pool="all")
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].tolist() == list(range(N_ITEMS))
    assert env.action_space.nvec.tolist() == [N_ITEMS, N_ITEMS]
