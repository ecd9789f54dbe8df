"""The SASRec two-tower representation of bandit runs (reuses ``recrl.models.sasrec.encoder``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recrl.models.bandits.sequence_representation import (
    SequenceRepresentation,
    SequenceRepresentationConfig,
)
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.job import run_bandit
from recrl.pipelines.settings import apply_settings

SMALL = SequenceRepresentationConfig(hidden_size=8, max_len=4, steps_per_refit=60, batch_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors


def test_states_are_the_last_items_left_padded():
    rep = SequenceRepresentation(10, SMALL)
    history = torch.tensor([[10, 10, 10, 3, 7, 2], [10, 10, 10, 10, 10, 10]])
    state, length = rep.states(history, torch.tensor([3, 0]))
    assert state.tolist() == [[10, 3, 7, 2], [10, 10, 10, 10]] and length.tolist() == [3, 0]
    assert rep.item_embeddings.shape == (10, 8)


def test_refit_learns_which_items_a_history_leads_to():
    # users whose last item is 0 take items 1-2; users whose last item is 5 take items 6-7
    rep = SequenceRepresentation(10, SMALL, seed=0)
    a = torch.tensor([[10, 10, 10, 0]])
    b = torch.tensor([[10, 10, 10, 5]])
    one = torch.tensor([1])
    for _ in range(10):
        for state, good, bad in ((a, [1, 2], [6, 7]), (b, [6, 7], [1, 2])):
            items = torch.tensor(good + bad)
            rep.observe(state.expand(4, -1), one.expand(4), items, torch.tensor([1, 1, 0, 0.0]))
    for _ in range(5):
        rep.refit()
    pa, pb = rep.predictions(a, one)[0], rep.predictions(b, one)[0]
    assert pa[[1, 2]].min() > pa[[6, 7]].max() and pb[[6, 7]].min() > pb[[1, 2]].max()
    mc = rep.mc_predictions(a, one, passes=5)
    assert mc.shape == (5, 1, 10) and mc.std(0).max() > 0  # dropout makes passes differ
    assert not rep.encoder.training  # back in eval mode


@pytest.mark.parametrize("policy", ["ren", "n-dropout-ucb", "s-n-gblm-ucb"])
def test_loop_runs_on_the_sasrec_encoder(policy):
    config = apply_settings(
        BanditRunConfig(
            policy=policy, rounds=12, encoder="sasrec", refit_interval=5, window=5, tracking=False
        ),
        {"hidden_size": 8, "max_len": 5, "steps_per_refit": 3},
    )
    result = run_bandit(config, progress=False)
    assert result.rewards.shape == (12,) and np.isfinite(result.cumulative_regret).all()
