"""The update that reads Q at the few items each term needs equals the full-product one.

`objective_inputs(..., full_products=True)` computes every Q as a [B, I] product and
gathers from it, as the objective did before; the default path scores only the items
read (logged action, negatives, greedy picks). Same weights, batch, generator and
dropout draws must give the same total loss, the same diagnostics and the same gradient
of every parameter, for every preset.
"""

from __future__ import annotations

import pytest
import torch
from recrl.models.objectives import sample_negatives
from recrl.models.sasrec.encoder import QHead, SASRecConfig
from recrl.models.sasrec.loss import sasrec_objective
from recrl.models.sasrec.network import ObjectiveInputs, SASRecQNetwork, objective_inputs
from recrl.models.sasrec.objective_config import VARIANTS, objective_for

N_ITEMS, L, B, H = 50, 5, 24, 16
WARMUP = 3


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state_len = torch.randint(0, L + 1, (B,), generator=g)
    state = torch.full((B, L), N_ITEMS)
    for row, n in enumerate(state_len.tolist()):
        if n:
            state[row, L - n :] = torch.randint(0, N_ITEMS, (n,), generator=g)
    action = torch.randint(0, N_ITEMS, (B,), generator=g)
    return {
        "state": state,
        "state_len": state_len,
        "action": action,
        "reward": torch.where(torch.rand(B, generator=g) < 0.2, 1.0, 0.2),
        "done": torch.rand(B, generator=g) < 0.3,
        "next_state": torch.cat([state[:, 1:], action[:, None]], dim=1),
        "next_state_len": torch.clamp(state_len + 1, max=L),
    }


POPULARITY = torch.rand(N_ITEMS, generator=torch.Generator().manual_seed(9)) * 100 + 1

CASES = {
    **{f"{name}/phase1": (name, {}, 0) for name in VARIANTS},
    **{
        f"{name}/phase2": (name, {}, WARMUP)
        for name in VARIANTS
        if VARIANTS[name].preset.get("phase2", "none") != "none"
    },
    "sa2c/phase2/propensity/popularity negatives": (
        "sa2c", {"sa2c_smooth": 0.5, "neg_sampler": "popularity"}, WARMUP,
    ),
    "sasrec_ccql/cql over all items": ("sasrec_ccql", {"cql_actions": "all"}, 0),
    "sasrec_ccql/cql over all items, no negatives": (
        "sasrec_ccql", {"cql_actions": "all", "n_neg": 0}, 0,
    ),
    "sasrec_ccql/negatives may be state items": ("sasrec_ccql", {"neg_exclude": "action"}, 0),
    "snqn/target network": ("snqn", {"double_q": "target"}, 0),
}  # fmt: skip


def one_update(variant: str, overrides: dict, step: int, *, full_products: bool) -> dict:
    """Loss, diagnostics and gradients of one update from fixed weights, batch and draws,
    drawn in the order the RL module draws them: augmentations, then negatives."""
    torch.manual_seed(0)
    config = SASRecConfig(hidden_size=H, max_len=L, dropout=0.3)
    trained, other = SASRecQNetwork(N_ITEMS, config), SASRecQNetwork(N_ITEMS, config)
    objective = objective_for(variant, warmup_steps=WARMUP, **overrides)
    data = batch()
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(7)  # dropout draws from the global generator
    inputs = objective_inputs(
        trained, other, data, objective, generator, full_products=full_products
    )
    negatives = None
    if objective.n_neg:
        pop = POPULARITY if objective.neg_sampler == "popularity" else None
        exclude = data["state"] if objective.neg_exclude == "state" else None
        negatives = sample_negatives(
            data["action"], N_ITEMS, objective.n_neg, generator, pop, exclude=exclude
        )
    loss, metrics = sasrec_objective(
        inputs, data, negatives, objective, step=step, item_popularity=POPULARITY
    )
    loss.backward()
    grads = {
        f"{i}.{name}": p.grad
        for i, net in enumerate((trained, other))
        for name, p in net.named_parameters()
    }
    return {
        "loss": loss.detach(),
        "metrics": metrics,
        "grads": grads,
        "next_draw": torch.randint(2**31, (1,), generator=generator),
        "q_full": inputs.q is not None,
    }


@pytest.mark.parametrize("case", list(CASES))
def test_loss_diagnostics_and_gradients_equal_the_full_product_update(case):
    variant, overrides, step = CASES[case]
    new = one_update(variant, overrides, step, full_products=False)
    ref = one_update(variant, overrides, step, full_products=True)
    objective = objective_for(variant, **overrides)
    # the reference scores every item; the new path only where CQL's action set is all items
    assert ref["q_full"] == objective.uses_q
    needs_all = objective.uses_q and objective.cql_alpha > 0 and objective.cql_actions == "all"
    assert new["q_full"] == needs_all
    torch.testing.assert_close(new["loss"], ref["loss"], rtol=1e-5, atol=1e-6)
    assert set(new["metrics"]) == set(ref["metrics"])
    for name, value in ref["metrics"].items():
        torch.testing.assert_close(new["metrics"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert new["metrics"]["train/phase"] == (2.0 if step else 1.0)
    assert set(new["grads"]) == set(ref["grads"])
    trained_with_grad = 0
    for name, grad in ref["grads"].items():
        # the network giving targets gets no gradient on either path
        assert (new["grads"][name] is None) == (grad is None), name
        if grad is not None:
            torch.testing.assert_close(new["grads"][name], grad, rtol=1e-4, atol=1e-7, msg=name)
            trained_with_grad += grad.abs().sum() > 0
    assert trained_with_grad > 10  # a real gradient reached the trained network
    # both paths consumed the generator alike (augmentations, then negatives)
    assert torch.equal(new["next_draw"], ref["next_draw"])


def test_the_q_head_reads_its_columns_like_the_full_product():
    torch.manual_seed(0)
    head = QHead(H, N_ITEMS)
    s = torch.randn(B, H, requires_grad=True)
    items = torch.randint(0, N_ITEMS, (B, 7))
    items[0, :2] = 3  # a repeated item sums its gradients
    gathered = head.at(s, items)
    full = head(s).gather(1, items)
    torch.testing.assert_close(gathered, full)
    weights = torch.randn(B, 7)
    inputs = [s, *head.parameters()]
    grads = [torch.autograd.grad((q * weights).sum(), inputs) for q in (gathered, full)]
    for new, ref in zip(*grads, strict=True):
        torch.testing.assert_close(new, ref)
    torch.testing.assert_close(head.mean(s), head(s).mean())


def test_the_greedy_pick_is_the_argmax_over_every_item_in_any_row_blocks():
    torch.manual_seed(0)
    head = QHead(H, N_ITEMS)
    with torch.no_grad():
        head.linear.weight[7] = head.linear.weight[30]  # a tie: the lower id wins
        head.linear.bias[7] = head.linear.bias[30]
    s = torch.randn(150, H)
    s[0] = head.linear.weight[30] * 50  # rows where items 7 and 30 tie at the top
    expected = head(s).argmax(dim=1)
    assert expected[0] == 7
    for rows in (1, 64, 150, 1000):
        assert torch.equal(head.greedy(s, rows=rows), expected)


def test_cql_over_negatives_needs_negatives():
    torch.manual_seed(0)
    trained = SASRecQNetwork(N_ITEMS, SASRecConfig(hidden_size=H, max_len=L))
    other = SASRecQNetwork(N_ITEMS, SASRecConfig(hidden_size=H, max_len=L))
    config = objective_for("sasrec_ccql")
    data = batch()
    inputs = objective_inputs(trained, other, data, config, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="needs negatives"):
        sasrec_objective(inputs, data, None, config, step=0)


class _ForwardTrain(torch.nn.Module):
    """The trained network's forward pass as the RL module runs it inside DDP."""

    def __init__(self) -> None:
        super().__init__()
        config = SASRecConfig(hidden_size=H, max_len=L, dropout=0.0)
        self.trained = SASRecQNetwork(N_ITEMS, config)
        self.other = SASRecQNetwork(N_ITEMS, config)

    def forward(self, data: dict[str, torch.Tensor]) -> ObjectiveInputs:
        objective = objective_for("sasrec_ccql", co_weight=0.0)
        return objective_inputs(
            self.trained, self.other, data, objective, torch.Generator().manual_seed(1)
        )


def test_ddp_sees_the_q_head_used_by_a_loss_computed_after_the_forward_pass(tmp_path):
    # With several learners RLlib wraps the module in DDP(find_unused_parameters=True): a
    # parameter it cannot reach from the forward outputs counts as unused, and its
    # gradient arriving later in backward is an error. The Q head enters the loss only
    # after the forward pass (at the sampled negatives), through views in the outputs.
    dist = torch.distributed
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group of its own")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        module = _ForwardTrain()
        plain = _ForwardTrain()
        plain.load_state_dict(module.state_dict())
        ddp = torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
        data = batch()
        negatives = sample_negatives(data["action"], N_ITEMS, 10, torch.Generator())
        objective = objective_for("sasrec_ccql", co_weight=0.0)
        for net in (ddp, plain):
            loss, _ = sasrec_objective(net(data), data, negatives, objective, step=0)
            loss.backward()
        for (name, p), q in zip(module.named_parameters(), plain.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                torch.testing.assert_close(p.grad, q.grad, msg=name)
        assert module.trained.q_head.linear.weight.grad.abs().sum() > 0
    finally:
        dist.destroy_process_group()
