"""Long-term return of slate policies: the quit rule of the simulated user, visit length in
the evaluation, and a SASRec-family model serving slates (its top-k over the candidate pool,
with display-set ids mapped to the model's through the raw ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.network import SASRecQNetwork
from recrl.models.slate.policies import RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.data import DisplaySetArrays
from recrl.models.user_model.network import UserModel
from recrl.pipelines.sasrec.serving import Recommender, RecommenderSpec
from recrl.pipelines.slate.evaluation import evaluate_policy
from recrl.pipelines.slate.sasrec_policy import (
    UNKNOWN,
    SASRecSlatePolicy,
    display_to_model_ids,
    history_state,
    top_k_slots,
)

N_ITEMS = 6
CERTAIN = 60.0
"""|logit| of a scripted choice: the other outcome has probability ~e^-60."""


class ScriptedUser(UserModel):
    """A user model whose clicks follow a script: on its t-th page (counted over the
    episode) it clicks the first shown item if ``script[t]``, else nothing."""

    def __init__(self, features: np.ndarray, config: UserModelConfig, script: list[bool]):
        super().__init__(features, config)
        self.script, self.page = script, 0

    def choice_logits(self, history, shown, shown_mask):
        click = self.script[self.page % len(self.script)]
        self.page += 1
        logits = torch.full((1, shown.shape[1] + 1), -CERTAIN)
        logits[0, 0 if click else -1] = CERTAIN
        return logits


def _env(script: list[bool], **overrides) -> UserModelEnv:
    torch.manual_seed(0)
    features = np.vstack([np.eye(N_ITEMS, dtype=np.float32), np.zeros((1, N_ITEMS), np.float32)])
    config = UserModelConfig(history_len=3, item_embedding_dim=0)
    model = ScriptedUser(features, config, script).eval().requires_grad_(False)
    reward = UserModel(features, config).eval().requires_grad_(False)
    pad = N_ITEMS
    views = DisplaySetArrays(
        history=np.array([[pad, pad, pad]]),
        shown=np.array([[0, 1, 2, 3, 4, 5]]),
        click=np.array([0]),
        user=np.array([0]),
        pad_id=pad,
    )
    settings = {"slate_size": 1, "episode_length": 5, "max_pool": N_ITEMS, **overrides}
    return UserModelEnv(LoadedUserModel(model, reward, features, {}), views,
                        UserModelEnvConfig(**settings))  # fmt: skip


def _visit(env: UserModelEnv) -> list[tuple[bool, bool, bool]]:
    """(clicked, terminated, truncated) of each step of one episode that shows the first
    available candidate."""
    obs, _ = env.reset(seed=0)
    steps, done = [], False
    while not done:
        obs, _, terminated, truncated, info = env.step(np.flatnonzero(obs["candidate_mask"])[:1])
        steps.append((info["clicked_slot"] >= 0, terminated, truncated))
        done = terminated or truncated
    return steps


def test_user_leaves_after_exactly_c_pages_without_a_click():
    # miss, click, miss, miss: the click resets the count, so c = 2 ends the visit at page 4
    steps = _visit(_env([False, True, False, False, False], quit_after=2))
    assert steps == [(False, False, False), (True, False, False),
                     (False, False, False), (False, True, False)]  # fmt: skip


def test_a_user_who_never_clicks_leaves_after_c_pages():
    assert len(_visit(_env([False], quit_after=3))) == 3
    assert _visit(_env([False], quit_after=1)) == [(False, True, False)]


def test_without_the_quit_rule_every_visit_runs_to_the_horizon():
    steps = _visit(_env([False]))  # quit_after None: the horizon (5) truncates
    assert steps == [(False, False, False)] * 4 + [(False, False, True)]
    # a quit count larger than the horizon never fires either
    assert _visit(_env([False], quit_after=6))[-1] == (False, False, True)


def test_a_high_no_click_utility_makes_a_clicking_user_leave():
    # the script clicks on every page (logit 60), but not clicking is worth 1000
    assert _visit(_env([True], quit_after=2, no_click_utility=1000.0)) == [
        (False, False, False), (False, True, False)]  # fmt: skip
    assert all(clicked for clicked, _, _ in _visit(_env([True], quit_after=2)))


def test_quit_after_must_be_positive():
    with pytest.raises(ValueError, match="quit_after must be >= 1"):
        UserModelEnvConfig(quit_after=0)


def test_evaluation_reports_visit_length_and_return():
    # click, miss, miss, then c = 2 ends the visit: 3 pages, 1 click
    env = _env([True, False, False], quit_after=2)
    result = evaluate_policy(env, RandomSlatePolicy(1, seed=0), episodes=4, seed=0)
    assert result["visit_length"] == 3.0
    assert result["ctr"] == pytest.approx(1 / 3)
    # reward: the reward model's utility of the one clicked item, spread over 3 pages
    assert result["reward"] == pytest.approx(result["return"] / 3)


# --- the SASRec slate policy -------------------------------------------------------------


def test_display_ids_map_to_model_ids_through_raw_ids():
    display_raw = np.array(["10", "20", "30", "40"])  # display sets: strings
    model_raw = np.array([40, 10, 99], dtype=np.int64)  # prepare: integers
    assert display_to_model_ids(display_raw, model_raw).tolist() == [1, UNKNOWN, UNKNOWN, 0,
                                                                      UNKNOWN]  # fmt: skip
    # same types match directly; "042" is not 42
    assert display_to_model_ids(np.array([42, 7]), np.array([7, 42])).tolist() == [1, 0, UNKNOWN]
    assert display_to_model_ids(np.array(["042"]), np.array([42])).tolist() == [UNKNOWN, UNKNOWN]


def test_history_state_keeps_the_last_known_items_left_padded():
    state, length = history_state(np.array([UNKNOWN, 5, UNKNOWN, 2, 7, 3]), 3, pad_id=9)
    assert (state.tolist(), length) == ([2, 7, 3], 3)
    state, length = history_state(np.array([UNKNOWN, 4, UNKNOWN]), 3, pad_id=9)
    assert (state.tolist(), length) == ([9, 9, 4], 1)
    state, length = history_state(np.array([UNKNOWN, UNKNOWN]), 3, pad_id=9)
    assert (state.tolist(), length) == ([9, 9, 9], 0)


def test_top_k_slots_ranks_available_slots_and_unscorable_ones_last():
    scores = np.array([0.5, 3.0, -np.inf, 2.0, 9.0, 1.0])
    available = np.array([1, 1, 1, 1, 0, 1], dtype=bool)  # slot 4 (the best) is masked
    assert top_k_slots(scores, available, 3).tolist() == [1, 3, 5]
    assert top_k_slots(scores, available, 5).tolist() == [1, 3, 5, 0, 2]
    with pytest.raises(ValueError, match="fewer than k=6"):
        top_k_slots(scores, available, 6)


def _recommender(bias: list[float], raw_ids: list[int]) -> Recommender:
    """A SASRec model whose supervised scores are ``bias`` whatever the history (the
    head's weights are zero), so its top-k is known by hand."""
    config = SASRecConfig(hidden_size=8, max_len=3, dropout=0.0)
    network = SASRecQNetwork(len(bias), config)
    with torch.no_grad():
        network.encoder.supervised_weight.zero_()
        network.encoder.supervised_bias.copy_(torch.tensor(bias))
    spec = RecommenderSpec(n_items=len(bias), pad_id=len(bias),
                           encoder=config.__dict__, head="supervised")  # fmt: skip
    return Recommender(network, spec, np.array(raw_ids))


def test_sasrec_slate_is_the_models_top_k_over_the_available_pool():
    # model items (raw ids) 101..105 score 0.1, 0.9, 0.5, 0.7, 0.3
    recommender = _recommender([0.1, 0.9, 0.5, 0.7, 0.3], [101, 102, 103, 104, 105])
    # display items 0..5 are raw "105", "104", "103", "102", "101", "999" (unknown to it)
    to_model = display_to_model_ids(np.array(["105", "104", "103", "102", "101", "999"]),
                                    recommender.raw_ids)  # fmt: skip
    assert to_model.tolist() == [4, 3, 2, 1, 0, UNKNOWN, UNKNOWN]
    policy = SASRecSlatePolicy(recommender, to_model, k=2)
    pad = 6
    obs = {
        "history": np.array([pad, 4, 0]),
        # pool slots: display items 5 (unknown), 3 (0.9, masked: clicked), 1 (0.7), 2 (0.5),
        # 0 (0.3), then padding
        "candidates": np.array([5, 3, 1, 2, 0, pad]),
        "candidate_mask": np.array([1, 0, 1, 1, 1, 0], dtype=np.int8),
    }
    np.testing.assert_allclose(policy.scores(obs), [-np.inf, 0.9, 0.7, 0.5, 0.3, -np.inf],
                               rtol=1e-6)  # fmt: skip
    assert policy.select(obs).tolist() == [2, 3]  # raw 104 (0.7), then 103 (0.5)
    assert SASRecSlatePolicy(recommender, to_model, k=4).select(obs).tolist() == [2, 3, 4, 0]


def test_sasrec_policy_scores_the_history_it_is_given():
    """With a trained-looking (random) network the slate depends on the history, and the
    policy scores exactly the state ``score_all`` gets from the mapped history."""
    torch.manual_seed(0)
    config = SASRecConfig(hidden_size=8, max_len=3, dropout=0.0)
    network = SASRecQNetwork(5, config)
    spec = RecommenderSpec(n_items=5, pad_id=5, encoder=config.__dict__, head="supervised")
    recommender = Recommender(network, spec, np.arange(5))
    to_model = display_to_model_ids(np.array([4, 3, 2, 1, 0]), recommender.raw_ids)
    policy = SASRecSlatePolicy(recommender, to_model, k=2)
    obs = {"history": np.array([5, 0, 1]), "candidates": np.array([0, 1, 2, 3, 4]),
           "candidate_mask": np.ones(5, dtype=np.int8)}  # fmt: skip
    with torch.no_grad():  # display 0, 1 are model 4, 3: state [pad, 4, 3], length 2
        expected = network.score_all(torch.tensor([[5, 4, 3]]), torch.tensor([2]))[0]
    np.testing.assert_allclose(policy.scores(obs), expected.numpy()[[4, 3, 2, 1, 0]], rtol=1e-6)
