"""GPU settings without a GPU: device selection, the GPU request checks,
the CLI flags, a Tune trial's resource request, and the bf16 autocast path on CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from recrl.models import batch as B
from recrl.models.sasrec.precision import autocast_dtype
from recrl.pipelines import cli
from recrl.pipelines.commands.train import train_config
from recrl.pipelines.errors import SettingError
from recrl.pipelines.sasrec.algorithm import algorithm_config
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.device import check_gpu_request, learner_device
from recrl.pipelines.sasrec.rl_module import OBJECTIVE_INPUTS
from recrl.pipelines.tune.study import StudyError, study_from_dict
from recrl.pipelines.tune.sweep import trial_bundles

N_ITEMS, L, ROWS = 40, 10, 64
META = {"L": L, "n_items": N_ITEMS, "pad_id": N_ITEMS, "item_counts_train": [1.0] * N_ITEMS,
        "splits": {"train": {"transitions": 1000}}}  # fmt: skip


def _config(**overrides) -> TrainConfig:
    return TrainConfig.for_variant("sasrec_ccql", "/data", **overrides)


def test_device_is_cpu_without_a_gpu_request_and_cuda_with_one():
    assert learner_device(0) == torch.device("cpu")
    assert learner_device(0.5, cuda=True) == torch.device("cuda")
    with pytest.raises(ValueError, match=r"num_gpus_per_learner=0\.5 but CUDA is not available"):
        learner_device(0.5, cuda=False)
    with pytest.raises(ValueError, match=">= 0"):
        learner_device(-1)


def test_device_follows_torch_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert learner_device(0) == torch.device("cpu")
    with pytest.raises(ValueError, match="--num-gpus-per-learner 0"):
        learner_device(1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert learner_device(1) == torch.device("cuda")
    assert learner_device(0) == torch.device("cpu")  # no request: CPU even with a GPU


def test_gpu_request_is_checked_against_this_process_or_the_cluster(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # A local learner trains in this process: CUDA must be here.
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_gpu_request(_config(num_gpus_per_learner=0.5), cluster_gpus=4)
    assert check_gpu_request(_config(), cluster_gpus=0) == torch.device("cpu")
    # Remote learners need num_learners x fraction GPUs in the cluster (not here).
    remote = _config(num_learners=3, num_gpus_per_learner=0.5)
    assert check_gpu_request(remote, cluster_gpus=1.5) == torch.device("cuda")
    with pytest.raises(ValueError, match=r"3 learners x 0\.5 GPU need 1\.5 GPUs but the Ray "
                                         r"cluster has 1;"):  # fmt: skip
        check_gpu_request(remote, cluster_gpus=1)


def test_train_config_rejects_impossible_resource_settings():
    with pytest.raises(ValueError, match="num_gpus_per_learner must be >= 0"):
        _config(num_gpus_per_learner=-0.5)
    with pytest.raises(ValueError, match="fraction of one GPU or a whole number"):
        _config(num_gpus_per_learner=1.5)
    with pytest.raises(ValueError, match=r"may not name \['GPU'\]"):
        _config(custom_resources_per_learner={"GPU": 1})
    with pytest.raises(ValueError, match="setting precision: expected one of"):
        _config(precision="fp16")
    config = _config(num_gpus_per_learner=2, custom_resources_per_learner={"slot": 1})
    assert config.to_dict()["custom_resources_per_learner.slot"] == 1


def test_cli_gpu_and_placement_flags(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args([
        "train", "--data", "/d", "--gpus-per-learner", "0.5", "--num-learners", "2",
        "--num-cpus-per-learner", "0.5", "--learner-resource", "learner_slot=1",
        "--precision", "bf16",
    ])  # fmt: skip
    config = train_config(args)
    assert (config.num_gpus_per_learner, config.num_learners, config.num_cpus_per_learner) == (
        0.5, 2, 0.5)  # fmt: skip
    assert config.custom_resources_per_learner == {"learner_slot": 1.0}
    assert config.precision == "bf16"
    args = parser.parse_args(["train", "--data", "/d", "--num-gpus-per-learner", "0.25"])
    assert train_config(args).num_gpus_per_learner == 0.25
    assert train_config(args).precision == "auto"
    args = parser.parse_args(["train", "--data", "/d", "--learner-resource", "slot"])
    with pytest.raises(SettingError, match="--learner-resource expects NAME=AMOUNT"):
        train_config(args)

    rllib = algorithm_config(config, META)
    assert rllib.num_gpus_per_learner == 0.5 and rllib.num_cpus_per_learner == 0.5
    assert rllib.custom_resources_per_learner == {"learner_slot": 1.0}
    assert rllib.model_config["precision"] == "bf16"
    assert algorithm_config(_config(), META).num_cpus_per_learner == "auto"


def test_a_tune_trial_requests_its_gpu_fraction_and_custom_resources():
    study = study_from_dict({
        "name": "g", "data": "/d", "variants": ["sasrec"],
        "resources": {"cpu": 1, "gpu": 0.25, "data_cpu": 1, "custom": {"trial_slot": 1}},
    })  # fmt: skip
    # one bundle: the reader runs outside the trial's placement group
    assert trial_bundles(study, gpus=0.25) == [{"CPU": 1, "GPU": 0.25, "trial_slot": 1}]
    # run_sweep passes gpus=0 on a cluster without GPUs: the trial trains on CPU.
    assert trial_bundles(study, gpus=0.0)[0]["GPU"] == 0.0
    assert study_from_dict(study.to_dict()).resources == study.resources  # sweep.json
    with pytest.raises(StudyError, match="custom may not name CPU or GPU"):
        study_from_dict({"name": "g", "data": "/d", "variants": ["sasrec"],
                         "resources": {"custom": {"GPU": 1}}})  # fmt: skip


def test_autocast_dtype_per_precision_and_device():
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    assert autocast_dtype("auto", "cpu") is None
    assert autocast_dtype("fp32", "cuda") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("half", "cuda")


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, L + 1, ROWS)
    state = np.full((ROWS, L), N_ITEMS, dtype=np.int32)
    for row, length in enumerate(lengths):
        state[row, L - length :] = rng.integers(0, N_ITEMS, length)
    action = rng.integers(0, N_ITEMS, ROWS).astype(np.int32)
    next_state = np.concatenate([state[:, 1:], action[:, None]], axis=1)
    return {
        B.STATE: state, B.STATE_LEN: lengths.astype(np.int32), B.ACTION: action,
        B.REWARD: rng.choice([0.2, 1.0], ROWS).astype(np.float32), B.NEXT_STATE: next_state,
        B.NEXT_STATE_LEN: np.minimum(lengths + 1, L).astype(np.int32),
        B.DONE: np.zeros(ROWS, dtype=bool),
    }  # fmt: skip


def _learner(precision: str):
    config = _config(hidden_size=16, dropout=0.0, precision=precision, seed=3)
    learner = algorithm_config(config, META).build_learner()
    return learner, learner.module[DEFAULT_MODULE_ID]


def test_a_bf16_update_on_cpu_is_finite_and_close_to_float32():
    batch = _batch()
    losses, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        learner, module = _learner(precision)
        tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
        dtypes[precision] = module._forward_train(tensors)[OBJECTIVE_INPUTS].logits.dtype
        module.num_updates = 0  # the forward above draws nothing that persists; be sure
        before = module.networks[0].encoder.item_embedding.weight.detach().clone()
        results = learner.update(
            batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(dict(batch))}, env_steps=ROWS)
        )[DEFAULT_MODULE_ID]
        losses[precision] = {k: results[k].peek() for k in ("loss/total", "loss/ce", "loss/cql")}
        assert results["train/skipped_updates"].peek() == 0.0, precision
        after = module.networks[0].encoder.item_embedding.weight
        assert not torch.equal(after, before), f"{precision}: the update changed nothing"
        assert after.dtype == torch.float32  # autocast never changes the parameters
    # The bf16 path really ran in bf16, the fp32 path in float32 (CPU, "auto" = fp32).
    assert dtypes == {"fp32": torch.float32, "bf16": torch.bfloat16}
    for name, full in losses["fp32"].items():
        half = losses["bf16"][name]
        assert math.isfinite(half), (name, half)
        # Same weights, same batch: only the matmul rounding differs (bf16: 8-bit mantissa).
        assert abs(half - full) <= 0.02 * abs(full) + 1e-3, (name, half, full)
    assert losses["bf16"]["loss/total"] != losses["fp32"]["loss/total"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_a_gpu_modules_evaluation_moves_the_cpu_splits_to_its_device():
    """A local GPU learner's module scores the CPU-resident splits on the GPU, with the same
    metrics as its CPU copy (the first GPU run failed here: CPU batches, CUDA weights)."""
    from recrl.pipelines.evaluation import EvalData, evaluate
    from recrl.pipelines.sasrec.job import module_device, module_score_fn

    config = _config()
    cpu_module = algorithm_config(config, META).get_rl_module_spec().build().eval()
    gpu_module = algorithm_config(config, META).get_rl_module_spec().build().eval()
    gpu_module.set_state(cpu_module.get_state())
    gpu_module.to("cuda")
    rng = np.random.default_rng(0)
    n = 200
    data = EvalData(
        state=torch.from_numpy(rng.integers(0, N_ITEMS, (n, L))).int(),
        state_len=torch.full((n,), L, dtype=torch.int32),
        action=torch.from_numpy(rng.integers(0, N_ITEMS, n)).int(),
        is_buy=torch.from_numpy(rng.random(n) < 0.3),
        reward=torch.ones(n),
        n_items=N_ITEMS,
        pad_id=N_ITEMS,
        split="val",
    )
    assert module_device(gpu_module).type == "cuda"
    on_gpu = evaluate(module_score_fn(gpu_module, config.rank_with), data,
                      device=module_device(gpu_module))  # fmt: skip
    on_cpu = evaluate(module_score_fn(cpu_module, config.rank_with), data, device="cpu")
    for name in ("hr_20_purchase", "ndcg_20_purchase", "hr_10_click", "ndcg_5_click"):
        assert on_gpu[name] == pytest.approx(on_cpu[name], abs=2 / n), name
    assert on_gpu["eval_rows"] == n
