"""The composed SASRec objective (models/sasrec/loss.py) and its presets."""

from __future__ import annotations

import pytest
import torch
from recrl.models.objectives import ce_loss, cql_loss, info_nce_loss, sample_negatives
from recrl.models.sasrec.encoder import SASRecConfig
from recrl.models.sasrec.loss import sasrec_objective
from recrl.models.sasrec.network import SASRecQNetwork, objective_inputs
from recrl.models.sasrec.objective_config import (
    CO_WEIGHT,
    VARIANTS,
    SASRecObjectiveConfig,
    objective_for,
)
from recrl.pipelines.sasrec.config import TrainConfig

N_ITEMS, L, B = 30, 4, 8


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state_len = torch.randint(0, L + 1, (B,), generator=g)
    state = torch.full((B, L), N_ITEMS)
    for row, n in enumerate(state_len.tolist()):
        if n:
            state[row, L - n :] = torch.randint(0, N_ITEMS, (n,), generator=g)
    action = torch.randint(0, N_ITEMS, (B,), generator=g)
    next_state = torch.cat([state[:, 1:], action[:, None]], dim=1)
    return {
        "state": state,
        "state_len": state_len,
        "action": action,
        "reward": torch.where(torch.rand(B, generator=g) < 0.2, 1.0, 0.2),
        "done": torch.rand(B, generator=g) < 0.3,
        "next_state": next_state,
        "next_state_len": torch.clamp(state_len + 1, max=L),
    }


@pytest.fixture
def networks():
    torch.manual_seed(0)
    config = SASRecConfig(hidden_size=16, max_len=L, dropout=0.0)
    return SASRecQNetwork(N_ITEMS, config), SASRecQNetwork(N_ITEMS, config)


def test_total_is_the_weighted_sum_of_its_terms(networks):
    trained, other = networks
    config = objective_for("sasrec_ccql", td_weight=0.7, co_weight=0.3, n_neg=3)
    data = batch()
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    negatives = sample_negatives(data["action"], N_ITEMS, 3, torch.Generator().manual_seed(2))
    total, metrics = sasrec_objective(inputs, data, negatives, config, step=0)
    expected = (
        metrics["loss/ce"]
        + 0.7 * (metrics["loss/td"] + metrics["loss/td_neg"])
        + metrics["loss/cql"]
        + 0.3 * metrics["loss/co"]
    )
    torch.testing.assert_close(total.detach(), expected)
    # Each term is the pure objective on the same inputs (no hidden state in between).
    torch.testing.assert_close(metrics["loss/ce"], ce_loss(inputs.logits, data["action"])[0])
    q_set = inputs.q_at(torch.cat([data["action"][:, None], negatives], dim=1))
    cql, _ = cql_loss(q_set[:, 0], q_set, 0.01, 0.5)
    torch.testing.assert_close(metrics["loss/cql"], cql.detach())
    torch.testing.assert_close(metrics["loss/co"], info_nce_loss(inputs.z1, inputs.z2, 0.07)[0])


def test_phase_two_weights_ce_by_q_only_after_warmup(networks):
    trained, other = networks
    config = objective_for("sasrec_ac", warmup_steps=5)
    data = batch()
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    _, before = sasrec_objective(inputs, data, None, config, step=4)
    _, after = sasrec_objective(inputs, data, None, config, step=5)
    assert before["train/phase"] == 1 and after["train/phase"] == 2
    torch.testing.assert_close(before["loss/ce"], before["loss/ce_unweighted"])
    q_sa = inputs.q_at(data["action"][:, None]).detach().squeeze(1)
    weighted = ce_loss(inputs.logits, data["action"], q_sa)[0]
    torch.testing.assert_close(after["loss/ce"], weighted)


def test_only_the_trained_twin_receives_gradients(networks):
    trained, other = networks
    config = objective_for("snqn")
    data = batch()
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    negatives = sample_negatives(data["action"], N_ITEMS, 10, torch.Generator().manual_seed(2))
    loss, _ = sasrec_objective(inputs, data, negatives, config, step=0)
    loss.backward()
    assert all(p.grad is None for p in other.parameters())
    assert trained.q_head.linear.weight.grad.abs().sum() > 0
    assert trained.encoder.item_embedding.weight.grad.abs().sum() > 0


def test_plain_sasrec_needs_no_q_and_no_second_network(networks):
    trained, _ = networks
    config = objective_for("sasrec")
    inputs = objective_inputs(trained, None, batch(), config, torch.Generator().manual_seed(1))
    assert inputs.state is None and inputs.q is None and inputs.next_value is None
    with pytest.raises(ValueError, match="no Q head"):
        inputs.q_at(batch()["action"][:, None])
    _, metrics = sasrec_objective(inputs, batch(), None, config, step=0)
    assert set(metrics) == {"loss/ce", "loss/ce_unweighted", "loss/total", "train/phase"}


def test_presets_and_overrides():
    # the six of design.md §4; a new variant is one more registry entry
    assert {"sasrec", "sasrec_ac", "snqn", "sa2c", "sasrec_co", "sasrec_ccql"} <= set(VARIANTS)
    ccql = objective_for("sasrec_ccql")
    assert (ccql.n_neg, ccql.cql_alpha, ccql.cql_temperature, ccql.gamma) == (10, 0.01, 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown objective setting"):
        objective_for("snqn", n_negatives=3)
    with pytest.raises(ValueError, match="needs n_neg > 0"):
        objective_for("sasrec_ccql", n_neg=0)
    config = TrainConfig.for_variant("sa2c", "data/x", n_neg=20, hidden_size=32, lr=0.01)
    assert (config.objective.n_neg, config.encoder.hidden_size, config.lr) == (20, 32, 0.01)
    assert config.to_dict()["objective.n_neg"] == 20
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.for_variant("sa2c", "data/x", learning_rate=0.1)


def double_q(picker: SASRecQNetwork, valuer: SASRecQNetwork, state, state_len):
    """Q_valuer(x, argmax_a Q_picker(x, a)) per row, from both networks' full Q(x, ·)."""
    with torch.no_grad():
        greedy = picker.q_values(state, state_len).argmax(dim=1, keepdim=True)
        return valuer.q_values(state, state_len).gather(1, greedy).squeeze(1)


@pytest.mark.parametrize("n_neg", [0, 4])
def test_target_values_are_the_other_networks_q_at_the_trained_networks_pick(networks, n_neg):
    # Q(s', ·) of the trained net picks, the other values its pick; the same at s for the
    # negative-action targets; the batched pass over s' and s must not mix the rows up.
    trained, other = networks
    config = objective_for("snqn", n_neg=n_neg)
    data = batch(3)
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    next_value = double_q(trained, other, data["next_state"], data["next_state_len"])
    torch.testing.assert_close(inputs.next_value, next_value)
    # not the other network's own maximum: double Q, not the max of eq. (1)
    own_max = other.q_values(data["next_state"], data["next_state_len"]).max(dim=1).values
    assert not torch.allclose(inputs.next_value, own_max)
    if n_neg:
        stay_value = double_q(trained, other, data["state"], data["state_len"])
        torch.testing.assert_close(inputs.stay_value, stay_value)
    else:
        assert inputs.stay_value is None
    assert not inputs.next_value.requires_grad
    assert inputs.q_at(data["action"][:, None]).requires_grad


# ---------------------------------------------------------------- faithful baselines


def test_snqn_has_no_phase_two_and_never_weights_ce(networks):
    # SNQN (Xin et al. 2022): CE + TD over logged and negative actions; only SQN-SAC and SA2C
    # weight the CE after a warm-up.
    assert objective_for("snqn").phase2 == "none"
    assert (objective_for("sasrec_ac").phase2, objective_for("sa2c").phase2) == ("sac", "sa2c")
    trained, other = networks
    config = objective_for("snqn", warmup_steps=5, n_neg=3)
    data = batch()
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    negatives = sample_negatives(data["action"], N_ITEMS, 3, torch.Generator().manual_seed(2))
    plain_ce = torch.nn.functional.cross_entropy(inputs.logits, data["action"])
    for step in (0, 5, 100_000):
        _, metrics = sasrec_objective(inputs, data, negatives, config, step=step)
        assert metrics["train/phase"] == 1 and "ce/weight_mean" not in metrics
        torch.testing.assert_close(metrics["loss/ce"], plain_ce.detach())  # CE weight 1


def test_contrastive_presets_share_one_documented_weight():
    weights = {VARIANTS[name].preset["co_weight"] for name in ("sasrec_co", "sasrec_ccql")}
    assert weights == {CO_WEIGHT}
    assert CO_WEIGHT == 1.0  # the paper's eq. (4), confirmed by the 6,000-update comparison
    assert objective_for("sasrec_ccql", co_weight=0.1).co_weight == 0.1  # still a setting


def test_target_passes_run_in_eval_mode_and_the_online_pass_in_train_mode():
    # With dropout 0.9 any target pass in train mode would differ between two calls; every
    # target must equal the eval-mode Q values, while the online Q still uses dropout.
    torch.manual_seed(0)
    config = SASRecConfig(hidden_size=16, max_len=L, dropout=0.9)
    trained, other = SASRecQNetwork(N_ITEMS, config), SASRecQNetwork(N_ITEMS, config)
    objective = objective_for("snqn", n_neg=3)
    data = batch(3)
    calls = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # dropout draws from the global generator
        calls.append(objective_inputs(trained, other, data, objective, torch.Generator()))
    assert trained.training and other.training  # modes restored
    trained.eval(), other.eval()
    expected = {
        "next_value": double_q(trained, other, data["next_state"], data["next_state_len"]),
        "stay_value": double_q(trained, other, data["state"], data["state_len"]),
    }
    for name, value in expected.items():
        for inputs in calls:
            torch.testing.assert_close(getattr(inputs, name), value, msg=name)
    items = torch.arange(N_ITEMS).expand(B, N_ITEMS)
    q_online = [inputs.q_at(items) for inputs in calls]
    assert not torch.allclose(q_online[0], q_online[1])  # the online pass: dropout on
    assert q_online[0].requires_grad


def test_phase2_starts_at_the_update_after_warmup_steps_and_never_without_weighting():
    ac = SASRecObjectiveConfig(td_weight=1.0, phase2="sac", warmup_steps=3)
    assert [ac.in_phase2(u) for u in range(5)] == [False, False, False, True, True]
    plain = SASRecObjectiveConfig(warmup_steps=0)
    assert not plain.has_phase2 and not plain.in_phase2(10**6)
