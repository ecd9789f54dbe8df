"""SASRec variants on RLlib: learning, checkpoints, double Q (few, small runs: each costs seconds).

One module-scoped algorithm (sasrec_ccql on a generated dataset) serves the learning and the
checkpoint tests; the double-Q tests drive a local `SASRecLearner` directly, without Ray Data.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import tree
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.models import batch as B
from recrl.models.evaluation.ranking import finalize_ranking, merge_sums, ranking_sums
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.prepare.stages import list_to_matrix
from recrl.pipelines.sasrec.algorithm import (
    TRAIN_COLUMNS,
    algorithm_config,
    build_algorithm,
    learner_metrics,
    scoring_network,
)
from recrl.pipelines.sasrec.config import TrainConfig

pytestmark = pytest.mark.ray

UPDATES, PER_ITERATION = 300, 100
LOGGED = ("loss/ce", "loss/td", "loss/td_neg", "loss/cql", "loss/co", "loss/total", "q/mean",
          "q/max", "q/td_error", "q/cql_gap", "train/lr", "train/grad_norm")  # fmt: skip


@pytest.fixture(scope="module")
def dataset(ray_session, tmp_path_factory):
    frame = generate_sessions(SessionGeneratorConfig(seed=11, n_sessions=2000, n_items=300))
    raw = tmp_path_factory.mktemp("raw")
    frame.to_parquet(raw / "sessions.parquet", index=False)
    out = tmp_path_factory.mktemp("prepared") / "data"
    result = prepare(PrepareConfig(source="generic", input_path=str(raw), output_path=str(out)))
    return str(out), result.meta


def _columns(data: str, split: str, names) -> dict[str, torch.Tensor]:
    table = pq.read_table(f"{data}/{split}", columns=list(names))
    matrix = {B.STATE, B.NEXT_STATE}
    return {
        name: torch.from_numpy(
            np.array(list_to_matrix(table[name]) if name in matrix else table[name].to_numpy())
        )
        for name in names
    }


@pytest.fixture(scope="module")
def trained(dataset):
    data, meta = dataset
    config = TrainConfig.for_variant(
        "sasrec_ccql", data, hidden_size=32, total_steps=UPDATES, eval_interval=UPDATES,
        tracking=False,
    )  # fmt: skip
    algo = build_algorithm(config, meta, iteration_updates=PER_ITERATION)
    history = [learner_metrics(algo.train()) for _ in range(UPDATES // PER_ITERATION)]
    yield algo, history
    algo.stop()


def _hit_rate_20(scores_fn, test: dict[str, torch.Tensor]) -> dict[str, float]:
    sums: dict = {}
    with torch.inference_mode():
        for start in range(0, len(test[B.ACTION]), 512):
            rows = {k: v[start : start + 512] for k, v in test.items()}
            scores = scores_fn(rows[B.STATE], rows[B.STATE_LEN])
            batch_sums = ranking_sums(
                scores, rows[B.ACTION], rows[B.IS_BUY], rows[B.REWARD], ks=(20,)
            )
            sums = merge_sums(sums, batch_sums)
    metrics = finalize_ranking(sums)
    hits = float(sums["hit_20_click"] + sums["hit_20_purchase"])
    metrics["hr_20_all"] = hits / float(sums["count_click"] + sums["count_purchase"])
    return metrics


def test_ccql_logs_every_component_and_beats_popularity(trained, dataset):
    algo, history = trained
    data, meta = dataset
    for metrics in history:
        for name in LOGGED:
            assert math.isfinite(metrics[name]), (name, metrics)
    assert [m["train/num_updates"] for m in history] == [100, 200, 300]
    assert history[-1]["loss/ce"] < 0.9 * history[0]["loss/ce"]

    test = _columns(data, "test", (B.STATE, B.STATE_LEN, B.ACTION, B.IS_BUY, B.REWARD))
    network = scoring_network(algo)
    model = _hit_rate_20(lambda s, n: network.score_all(s, n), test)
    counts = torch.tensor(meta["item_counts_train"], dtype=torch.float32)
    popularity = _hit_rate_20(lambda s, n: counts.expand(len(s), -1), test)
    assert model["hr_20_all"] > popularity["hr_20_all"] + 0.02, (model, popularity)
    assert model["hr_20_click"] > popularity["hr_20_click"], (model, popularity)


def test_checkpoint_restores_both_networks_adam_and_the_update_count(trained, dataset, tmp_path):
    algo, _ = trained
    algo.save_to_path(str(tmp_path / "checkpoint"))
    restored = Algorithm.from_checkpoint(str(tmp_path / "checkpoint"))
    try:
        before, after = scoring_network(algo), scoring_network(restored)
        assert after.num_updates == before.num_updates == UPDATES
        for net_before, net_after in zip(before.networks, after.networks, strict=True):
            expected = net_before.state_dict()
            for key, value in net_after.state_dict().items():
                assert torch.equal(value, expected[key]), key
        adam = [
            tree.flatten(a.learner_group.get_state(components="learner/optimizer")["learner"])
            for a in (algo, restored)
        ]
        assert len(adam[0]) > 10
        for x, y in zip(*adam, strict=True):
            assert np.array_equal(np.asarray(x), np.asarray(y))
        rows = _columns(dataset[0], "val", (B.STATE, B.STATE_LEN))
        state, state_len = rows[B.STATE][:64], rows[B.STATE_LEN][:64]
        with torch.inference_mode():
            for head in ("supervised", "q"):
                assert torch.equal(
                    before.score_all(state, state_len, head),
                    after.score_all(state, state_len, head),
                )
    finally:
        restored.stop()


def _batch(data: str, rows: int = 128) -> MultiAgentBatch:
    columns = {k: v[:rows].numpy() for k, v in _columns(data, "train", TRAIN_COLUMNS).items()}
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(columns)}, env_steps=rows)


def _learner(dataset, variant: str = "sasrec_ccql", **overrides):
    data, meta = dataset
    config = TrainConfig.for_variant(variant, data, hidden_size=16, **overrides)
    learner = algorithm_config(config, meta).build_learner()
    return learner, learner.module[DEFAULT_MODULE_ID]


def _weights(network) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def test_twin_update_trains_exactly_the_network_the_coin_picked(dataset):
    learner, module = _learner(dataset, double_q="twin")
    batch = _batch(dataset[0])
    picks = []
    for _ in range(4):
        picked = module.trained_index(module.num_updates)
        before = [_weights(net) for net in module.networks]
        learner.update(batch=batch)
        changed = [
            any(not torch.equal(v, before[i][k]) for k, v in net.state_dict().items())
            for i, net in enumerate(module.networks)
        ]
        assert changed == [picked == 0, picked == 1]
        assert all(p.grad is None for p in module.networks[1 - picked].parameters())
        picks.append(picked)
    assert module.num_updates == 4
    out = module.forward_inference({B.STATE: batch[DEFAULT_MODULE_ID][B.STATE][:3]})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (3, dataset[1]["n_items"])


def test_target_moves_by_tau_toward_the_online_network(dataset):
    tau = 0.1
    learner, module = _learner(dataset, double_q="target", tau=tau)
    online, target = module.networks
    assert all(not p.requires_grad for p in target.parameters())
    assert torch.equal(online.q_head.linear.weight, target.q_head.linear.weight)
    start = target.q_head.linear.weight.detach().clone()
    learner.update(batch=_batch(dataset[0]))
    expected = start + tau * (online.q_head.linear.weight.detach() - start)
    torch.testing.assert_close(target.q_head.linear.weight.detach(), expected)
    assert not torch.equal(target.q_head.linear.weight, start)


def test_phase_two_switches_the_learning_rate(dataset):
    learner, _ = _learner(dataset, "sasrec_ac", warmup_steps=1, lr=0.005, lr_phase2=0.001)
    optimizer = learner.get_optimizer(DEFAULT_MODULE_ID)
    batch = _batch(dataset[0])
    learner.update(batch=batch)
    assert optimizer.param_groups[0]["lr"] == 0.005
    learner.update(batch=batch)
    assert optimizer.param_groups[0]["lr"] == 0.001


def _adam_state(learner) -> list[torch.Tensor]:
    optimizer = learner.get_optimizer(DEFAULT_MODULE_ID)
    return [v.clone() for state in optimizer.state.values() for v in state.values()]


def test_a_non_finite_update_is_skipped_and_counted(dataset):
    learner, module = _learner(dataset, double_q="target")
    batch = _batch(dataset[0])
    first = learner.update(batch=batch)[DEFAULT_MODULE_ID]
    assert first["train/skipped_updates"].peek() == 0.0
    batch[DEFAULT_MODULE_ID][B.REWARD][0] = np.nan  # a NaN TD target: NaN gradients
    online, adam = _weights(module.networks[0]), _adam_state(learner)
    results = learner.update(batch=batch)[DEFAULT_MODULE_ID]
    assert results["train/skipped_updates"].peek() == 1.0
    assert math.isnan(results["loss/total"].peek())  # the trainer stops on it
    assert math.isnan(results["gradients_default_optimizer_global_norm"].peek())
    weights = module.networks[0].state_dict()
    assert not {k for k, v in weights.items() if not torch.equal(v, online[k])}
    after = _adam_state(learner)  # no Adam step either: moments and step count as they were
    assert len(after) == len(adam) > 10
    assert all(torch.equal(x, y) for x, y in zip(after, adam, strict=True))
    assert module.num_updates == 2
    batch[DEFAULT_MODULE_ID][B.REWARD][0] = 0.0
    assert learner.update(batch=batch)[DEFAULT_MODULE_ID]["train/skipped_updates"].peek() == 0.0
    assert not torch.equal(module.networks[0].q_head.linear.weight, online["q_head.linear.weight"])


def test_an_update_call_logs_the_mean_of_its_updates_diagnostics(dataset):
    """One ``update()`` over four minibatches logs what four one-minibatch calls log, averaged
    (the last gradient norm, the final update count)."""
    batch = _batch(dataset[0], rows=4 * 64)
    rows = batch[DEFAULT_MODULE_ID]
    names = ("loss/total", "loss/ce", "loss/cql", "q/mean", "train/trained_network",
             "train/skipped_updates")  # fmt: skip
    # seed 1: the twin coins of updates 0-3 are 0, 1, 1, 1 (seed 0 draws 0 four times)
    torch.manual_seed(0)
    together, _ = _learner(dataset, seed=1)
    logged = together.update(batch=batch, minibatch_size=64)[DEFAULT_MODULE_ID]
    torch.manual_seed(0)
    apart, module = _learner(dataset, seed=1)
    each = []
    for start in range(0, 4 * 64, 64):
        part = SampleBatch({k: v[start : start + 64] for k, v in rows.items()})
        out = apart.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: part}, env_steps=64))
        each.append(out[DEFAULT_MODULE_ID])
    assert module.num_updates == 4
    assert logged["train/num_updates"].peek() == each[-1]["train/num_updates"].peek() == 4
    for name in names:
        expected = np.mean([m[name].peek() for m in each])
        assert logged[name].peek() == pytest.approx(expected, rel=1e-5), name
    assert {m["train/trained_network"].peek() for m in each} == {0.0, 1.0}  # both twins seen
    norm = "gradients_default_optimizer_global_norm"
    assert logged[norm].peek() == pytest.approx(each[-1][norm].peek(), rel=1e-5)


def test_state_length_must_match_the_prepared_data(dataset):
    data, meta = dataset
    config = TrainConfig.for_variant("sasrec", data, max_len=meta["L"] + 2)
    with pytest.raises(ValueError, match=f"L={meta['L']}.*max_len={meta['L'] + 2}"):
        algorithm_config(config, meta)
