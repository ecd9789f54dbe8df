"""Slate Q-network RLModule, GDQN's additive Q and loss, and DQN-Off's logged transitions —
no Ray runtime needed."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from recrl.models.slate.additive import additive_greedy_slate, additive_next_value, item_q
from recrl.models.slate.cascading import CascadingQNetwork, cascade_argmax
from recrl.models.slate.losses import additive_td_loss
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel
from recrl.pipelines.slate.rl_module import (
    CANDIDATE_MASK,
    CANDIDATES,
    Q_TAKEN,
    STATE,
    SlateQRLModule,
)

N_ITEMS, STATE_DIM, POOL = 9, 4, 8


def _module(q_form: str, k: int, epsilon=0.0, seed: int = 0) -> SlateQRLModule:
    torch.manual_seed(seed)
    features = np.vstack([np.random.default_rng(seed).normal(size=(N_ITEMS, 3)), np.zeros((1, 3))])
    spaces = {
        "observation_space": gym.spaces.Dict({
            STATE: gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32),
            CANDIDATES: gym.spaces.Box(0, N_ITEMS, (POOL,), np.int64),
            CANDIDATE_MASK: gym.spaces.MultiBinary(POOL),
        }),
        "action_space": gym.spaces.MultiDiscrete([POOL] * k),
    }  # fmt: skip
    config = {"item_features": features.tolist(), "state_dim": STATE_DIM, "slate_size": k,
              "hidden": 8, "q_form": q_form, "epsilon": epsilon}  # fmt: skip
    return RLModuleSpec(module_class=SlateQRLModule, model_config=config, **spaces).build()


def _obs(b: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    candidates = torch.stack([torch.randperm(N_ITEMS, generator=g)[:POOL] for _ in range(b)])
    mask = torch.ones(b, POOL, dtype=torch.int8)
    mask[0, :3] = 0  # unavailable slots in some rows
    mask[1, -2:] = 0
    candidates[1, -2:] = N_ITEMS  # padding
    return {STATE: torch.randn(b, STATE_DIM, generator=g), CANDIDATES: candidates,
            CANDIDATE_MASK: mask}  # fmt: skip


def test_cascading_module_greedy_forward_is_algorithm_1_on_the_same_weights():
    module = _module("cascading", k=3)
    obs = _obs()
    slots = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    # An independent network holding the module's weights, driven by `cascade_argmax`.
    net = CascadingQNetwork(STATE_DIM, 3, 3, hidden=8)
    net.load_state_dict(module.network.state_dict())
    feats = module.item_features[obs[CANDIDATES]]

    def q(j, chosen):
        picked = torch.gather(feats, 1, chosen[:, :, None].expand(-1, -1, 3))
        return net.q_candidates(j, obs[STATE], picked, feats)

    expected, _ = cascade_argmax(q, obs[CANDIDATE_MASK].bool(), 3)
    assert torch.equal(slots, expected)
    assert obs[CANDIDATE_MASK][torch.arange(6)[:, None], slots].all()


def test_additive_module_greedy_forward_is_the_best_sum_by_brute_force():
    module = _module("additive", k=3)
    obs = _obs()
    slots = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    with torch.no_grad():
        q = item_q(module.network, obs[STATE], module.item_features[obs[CANDIDATES]])
    for row in range(6):
        free = torch.nonzero(obs[CANDIDATE_MASK][row]).flatten().tolist()
        best = max(itertools.combinations(free, 3), key=lambda c: float(q[row, list(c)].sum()))
        assert sorted(slots[row].tolist()) == sorted(best)


def test_exploration_is_greedy_at_epsilon_0_and_random_distinct_available_at_1():
    obs = _obs(b=200)
    greedy = _module("cascading", k=3, epsilon=0.0)
    out = greedy.forward_exploration({Columns.OBS: obs}, t=0)[Columns.ACTIONS]
    assert torch.equal(out, greedy.forward_inference({Columns.OBS: obs})[Columns.ACTIONS])
    random = _module("cascading", k=3, epsilon=[(0, 1.0), (100, 0.0)])
    torch.manual_seed(5)
    out = random.forward_exploration({Columns.OBS: obs}, t=0)[Columns.ACTIONS]
    assert all(len(set(row)) == 3 for row in out.tolist())
    assert obs[CANDIDATE_MASK][torch.arange(200)[:, None], out].all()
    first = torch.bincount(out[2:, 0], minlength=POOL)  # rows with all 8 slots free
    assert (first > 0).all()  # every slot drawn at some point: not the greedy slate
    late = random.forward_exploration({Columns.OBS: obs}, t=100)[Columns.ACTIONS]
    assert torch.equal(late, random.forward_inference({Columns.OBS: obs})[Columns.ACTIONS])


def test_forward_train_gives_q_of_the_slate_taken():
    module = _module("cascading", k=2)
    obs = _obs()
    slots = torch.tensor([[3, 4], [0, 1], [2, 5], [6, 7], [1, 0], [5, 2]])
    out = module.forward_train({Columns.OBS: obs, Columns.ACTIONS: slots})[Q_TAKEN]
    feats = module.item_features[obs[CANDIDATES]]
    slate = feats[torch.arange(6)[:, None], slots]
    assert torch.allclose(out, module.network.q_values(obs[STATE], slate))


def test_additive_greedy_and_next_value_on_hand_values():
    net = CascadingQNetwork(state_dim=1, item_dim=1, slate_size=1, hidden=1)
    with torch.no_grad():  # q(s, a) = ELU(f_a) with f_a = item value: q increases in f_a
        for layer in (net.state_in[0], net.candidate_in[0], net.out[0]):
            layer.weight.fill_(0.0)
        net.candidate_in[0].weight.fill_(1.0)
        net.state_in[0].bias.fill_(0.0)
        net.out[0].weight.fill_(1.0)
        net.out[0].bias.fill_(0.0)
    feats = torch.tensor([[[0.5], [2.0], [-1.0], [1.0]]])
    mask = torch.tensor([[True, True, True, False]])
    slots, values = additive_greedy_slate(net, torch.zeros(1, 1), feats, mask, 2)
    assert slots.tolist() == [[1, 0]]  # 1.0 is masked out
    assert values[0].tolist() == pytest.approx([2.0, 0.5])
    value = additive_next_value(net, net, torch.zeros(1, 1), feats, mask, 2)
    assert float(value) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="at least k=4"):
        additive_greedy_slate(net, torch.zeros(1, 1), feats, mask, 4)


def test_additive_td_loss_on_hand_values():
    q_items = torch.tensor([[1.0, 0.5], [0.0, 2.0]], requires_grad=True)
    loss, diag = additive_td_loss(
        q_items, torch.tensor([1.0, 0.0]), torch.tensor([False, True]),
        torch.tensor([3.0, 50.0]), gamma=0.5,
    )  # fmt: skip
    # Q(s, A) = [1.5, 2.0]; y = [1 + 0.5·3, 0] = [2.5, 0]; errors² = 1, 4 → ½·mean 1.25
    assert float(loss.detach()) == pytest.approx(1.25)
    assert float(diag["q/mean"]) == pytest.approx(1.75)
    assert float(diag["q/target_mean"]) == pytest.approx(1.25)
    loss.backward()
    # d/dq_j of ½·mean (y − Σ q)² = −(y − Q)/2 (2 rows): [−0.5, −0.5], [1, 1]
    assert q_items.grad.tolist() == [[-0.5, -0.5], [1.0, 1.0]]


def _offline_views():
    pad = N_ITEMS
    # user 5: view A (history [_, 0]) clicks item 3 → view B has history [0, 3];
    # view B clicks nothing; user 6's only view clicks item 7.
    return DisplaySetArrays(
        history=np.array([[pad, 0], [0, 3], [pad, pad]]),
        shown=np.array([[1, 3, 4, 2], [5, 6, 8, pad], [7, 1, 2, 4]]),
        click=np.array([1, -1, 0]), user=np.array([5, 5, 6]), pad_id=pad,
    )  # fmt: skip


def test_offline_transitions_follow_the_log():
    from recrl.pipelines.slate.offline import offline_transitions

    torch.manual_seed(0)
    features = np.vstack([np.eye(N_ITEMS, dtype=np.float32), np.zeros((1, N_ITEMS), np.float32)])
    model = UserModel(features, UserModelConfig(history_len=2, item_embedding_dim=0))
    model.eval().requires_grad_(False)
    views = _offline_views()
    data = offline_transitions(views, LoadedUserModel(model, model, features, {}), k=3, seed=0)
    assert data["slate"].shape == (3, 3)
    assert all(len(set(row)) == 3 for row in data["slate"].tolist())
    assert 1 in data["slate"][0] and 0 in data["slate"][2]  # the clicked slots are shown
    assert (views.shown_mask[np.arange(3)[:, None], data["slate"]]).all()
    with torch.no_grad():
        s = model.encode(torch.as_tensor(views.history))
        u3 = float(model.utility(s[:1], torch.tensor([[3]]))[0, 0])
        u7 = float(model.utility(s[2:], torch.tensor([[7]]))[0, 0])
    assert data["reward"].tolist() == pytest.approx([u3, 0.0, u7])
    assert data["done"].tolist() == [False, True, True]  # A → B; B and user 6 have no successor
    assert data["next_candidates"][0].tolist() == [5, 6, 8, N_ITEMS]  # B's shown set
    assert data["next_mask"][0].tolist() == [1, 1, 1, 0]
    expected_next = model.encode(torch.tensor([[0, 3]]))[0].numpy()
    assert np.allclose(data["next_state"][0], expected_next)
    assert np.allclose(data["state"][1], expected_next)  # B's own state is A's next state
    with pytest.raises(ValueError, match="at least k=5"):
        offline_transitions(views, LoadedUserModel(model, model, features, {}), k=5, seed=0)


def test_a_clicks_successor_may_come_first_when_both_views_share_a_second():
    """MovieLens rates in bursts: of two views in the same second, the later click's view
    can be stored first. It is still the successor (its history is this one's plus the
    click); after a no-click only a later view with the same history is."""
    from recrl.pipelines.slate.offline import _successors

    pad = N_ITEMS
    views = DisplaySetArrays(
        history=np.array([[0, 3], [pad, 0], [0, 3], [pad, 0]]),
        shown=np.tile(np.array([[1, 2, 3, 4]]), (4, 1)),
        click=np.array([0, 2, -1, -1]), user=np.array([5, 5, 5, 9]), pad_id=pad,
    )  # fmt: skip
    clicked = views.click != -1
    next_history = np.array([[3, 1], [0, 3], [0, 3], [pad, 0]])
    # row 1 clicks item 3 → row 0 (stored before it, same second) or row 2 (later) has
    # history [0, 3]: the later one wins; row 2's no-click has no later view of [0, 3];
    # row 0 clicks item 1 → nobody; user 9's no-click is its last view.
    assert _successors(views, next_history, clicked).tolist() == [-1, 2, -1, -1]
    only_earlier = DisplaySetArrays(
        history=views.history[:2], shown=views.shown[:2], click=views.click[:2],
        user=views.user[:2], pad_id=pad,
    )  # fmt: skip
    assert _successors(only_earlier, next_history[:2], clicked[:2]).tolist() == [-1, 0]
