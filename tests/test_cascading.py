"""Cascading Q-networks: greedy cascade = brute force when Q_j = max over completions,
network algebra, the shared target and the TD loss on hand values."""

from __future__ import annotations

import itertools

import pytest
import torch
from recrl.models.slate.cascading import CascadingQNetwork, cascade_argmax, next_state_value
from recrl.models.slate.losses import cascading_td_loss


def _exact_cascade(joint: torch.Tensor, k: int):
    """Q_j(a_1..a_j) = max over distinct completions a_{j+1..k} of the joint Q [B, P^k]
    (-inf where items repeat) — the functions Algorithm 1 assumes."""
    tables = [joint]
    for _ in range(k - 1):
        tables.insert(0, tables[0].amax(dim=-1))

    def q(j: int, chosen: torch.Tensor) -> torch.Tensor:
        out = tables[j]
        for i in range(j):  # index row by row with the chosen prefix
            out = out[torch.arange(joint.shape[0]), chosen[:, i]]
        return out

    return q


@pytest.mark.parametrize(("pool", "k", "seed"), [(6, 2, 0), (9, 3, 1), (12, 3, 2), (7, 4, 3)])
def test_greedy_cascade_equals_brute_force_best_slate(pool, k, seed):
    g = torch.Generator().manual_seed(seed)
    b = 5
    joint = torch.randn(b, *([pool] * k), generator=g, dtype=torch.float64)
    mask = torch.ones(b, pool, dtype=torch.bool)
    mask[0, :2] = False  # some rows have unavailable candidates
    for idx in itertools.product(range(pool), repeat=k):
        if len(set(idx)) < k:
            joint[(slice(None), *idx)] = float("-inf")
    for row in range(b):  # unavailable items cannot appear anywhere in a slate
        for item in torch.nonzero(~mask[row]).flatten().tolist():
            for position in range(k):
                index = [row] + [slice(None)] * k
                index[1 + position] = item
                joint[tuple(index)] = float("-inf")
    slots, values = cascade_argmax(_exact_cascade(joint, k), mask, k)
    for row in range(b):
        best = max(
            float(joint[(row, *perm)])
            for perm in itertools.permutations(torch.nonzero(mask[row]).flatten().tolist(), k)
        )
        chosen = tuple(slots[row].tolist())
        assert float(joint[(row, *chosen)]) == pytest.approx(best)
        assert len(set(chosen)) == k and mask[row, list(chosen)].all()
        assert values[row].tolist() == pytest.approx([best] * k)  # eq. 10 holds exactly


def test_network_split_first_layer_equals_the_concatenated_mlp():
    torch.manual_seed(0)
    net = CascadingQNetwork(state_dim=3, item_dim=2, slate_size=3, hidden=5, chunk=2)
    s = torch.randn(4, 3)
    slate = torch.randn(4, 3, 2)
    q = net.q_values(s, slate)
    for j in range(3):
        weight = [net.state_in[j].weight]
        if j:
            weight.append(net.chosen_in[j].weight)
        weight.append(net.candidate_in[j].weight)
        x = torch.cat([s, slate[:, :j].flatten(1), slate[:, j]], dim=1)
        h = torch.nn.functional.elu(x @ torch.cat(weight, dim=1).T + net.state_in[j].bias)
        assert torch.allclose(q[:, j], net.out[j](h).squeeze(-1), atol=1e-6)


def test_greedy_slate_is_consistent_with_q_values_and_skips_masked_items():
    torch.manual_seed(1)
    net = CascadingQNetwork(state_dim=4, item_dim=3, slate_size=3, hidden=8, chunk=4)
    s = torch.randn(6, 4)
    cands = torch.randn(1, 10, 3)  # one pool shared by the batch
    mask = torch.ones(6, 10, dtype=torch.bool)
    mask[:, 7:] = False
    slots, values = net.greedy_slate(s, cands, mask)
    assert (slots < 7).all()
    assert all(len(set(row.tolist())) == 3 for row in slots)
    slate = cands.expand(6, -1, -1)[torch.arange(6)[:, None], slots]
    assert torch.allclose(net.q_values(s, slate), values, atol=1e-6)
    # each step is the argmax of Q_j among the remaining items
    q1 = net.q_candidates(0, s, slate[:, :0], cands).masked_fill(~mask, float("-inf"))
    assert torch.equal(slots[:, 0], q1.argmax(1))


def test_shared_target_uses_q_k_of_the_next_states_greedy_slate():
    torch.manual_seed(2)
    online = CascadingQNetwork(4, 3, slate_size=2, hidden=8)
    target = CascadingQNetwork(4, 3, slate_size=2, hidden=8)
    s_next = torch.randn(5, 4)
    cands = torch.randn(5, 6, 3)
    mask = torch.ones(5, 6, dtype=torch.bool)
    value = next_state_value(online, target, s_next, cands, mask)
    slots, _ = online.greedy_slate(s_next, cands, mask)
    slate = cands[torch.arange(5)[:, None], slots]
    assert torch.allclose(value, target.q_values(s_next, slate)[:, 1])
    assert not torch.allclose(value, target.q_values(s_next, slate)[:, 0])
    _, own = target.greedy_slate(s_next, cands, mask)
    assert torch.allclose(next_state_value(target, target, s_next, cands, mask), own[:, -1])


def test_cascading_td_loss_on_hand_values():
    q_taken = torch.tensor([[1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    loss, diag = cascading_td_loss(
        q_taken, torch.tensor([1.0, 0.0]), torch.tensor([False, True]),
        torch.tensor([4.0, 100.0]), gamma=0.5,
    )  # fmt: skip
    # y = [1 + 0.5·4, 0 + 0] = [3, 0]; errors² = 4, 1, 0, 1 → ½·mean = 0.75
    assert float(loss.detach()) == pytest.approx(0.75)
    assert float(diag["q/target_mean"]) == pytest.approx(1.5)
    assert float(diag["q/cascade_gap"]) == pytest.approx(0.5)
    loss.backward()
    assert q_taken.grad.tolist() == [[-0.5, -0.25], [0.0, 0.25]]  # d/dQ of ½·mean (y−Q)²
