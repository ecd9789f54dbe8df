"""recrl on a real two-node Ray cluster.

The test starts a head and a second node as two ``ray start --block`` processes on 127.0.0.1
(`tests.ray_cluster`), each offering one ``learner_slot`` and one ``trial_slot``, then runs
the commands as users do, in subprocesses that join the cluster through ``RAY_ADDRESS``:
- ``recrl train --num-learners 2 --learner-resource learner_slot=1``: the two learners must
  land on different nodes, DDP (gloo) must leave them with bit-identical weights, and the
  checkpoint must hold exactly those weights;
- ``recrl tune`` with two trials that each need a ``trial_slot``: one trial per node.
The cluster is stopped after the module, also when a test fails, and no process of it may
remain.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions

from tests.ray_cluster import RAY_CLI, LocalRayCluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(RAY_CLI is None, reason="the `ray` command line is not installed"),
]

REPO = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT_S = 600
NODE_CPUS = 3
"""Logical CPUs per node: a learner (1), its pre-learner actor and read tasks (0.5 each)
and Tune's trial bundles must all fit, although the machine has 2 cores."""


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, each with one ``learner_slot`` and one ``trial_slot``;
    stopped after the module, and no process of theirs may remain."""
    cluster = LocalRayCluster()
    try:
        slots = {"learner_slot": 1, "trial_slot": 1}
        cluster.start_head(num_cpus=NODE_CPUS, resources=slots)
        cluster.wait_until_started()  # one at a time: less contention on 2 cores
        cluster.add_worker(num_cpus=NODE_CPUS, resources=slots)
        cluster.wait_until_started()
        assert cluster.leftovers(), "the leftover check below would see nothing"
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, f"processes of the test's Ray cluster are still alive: {left}"


@pytest.fixture(scope="module")
def prepared(cluster, tmp_path_factory):
    """A small prepared dataset, made by ``recrl prepare`` on the cluster (which spares this
    process a Ray runtime of its own)."""
    root = tmp_path_factory.mktemp("multinode")
    frame = generate_sessions(SessionGeneratorConfig(seed=4, n_sessions=400, n_items=80))
    (root / "raw").mkdir()
    frame.to_parquet(root / "raw" / "sessions.parquet", index=False)
    _recrl(cluster, ["prepare", "--source", "generic", "--input", str(root / "raw"),
                        "--output", str(root / "prepared")], root)  # fmt: skip
    return root / "prepared"


def _recrl(cluster: LocalRayCluster, args: list[str], cwd: Path) -> str:
    """Run ``recrl ARGS`` as a driver of ``cluster``; its output, or the test fails with it."""
    env = cluster.env({"RAY_ADDRESS": cluster.address, "PYTHONPATH": str(REPO)})
    done = subprocess.run(
        [sys.executable, "-m", "recrl.pipelines.cli", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"recrl {' '.join(args)} failed:\n{output[-6000:]}"
    return output


def test_two_learners_on_two_nodes_stay_identical_under_ddp(cluster, prepared, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule
    from recrl.pipelines.prepare.meta import read_meta
    from recrl.pipelines.sasrec.algorithm import algorithm_config, module_digest
    from recrl.pipelines.sasrec.config import TrainConfig

    run_dir = tmp_path / "run"
    settings = {"hidden_size": 16, "batch_size": 32}
    output = _recrl(cluster, [
        "train", "--variant", "sasrec_ccql", "--data", str(prepared), "--steps", "40",
        "--eval-interval", "20", "--num-learners", "2", "--learner-resource", "learner_slot=1",
        "--no-mlflow", "--run-dir", str(run_dir),
        *[f"--set={key}={value}" for key, value in settings.items()],
    ], tmp_path)  # fmt: skip

    progress = json.loads((run_dir / "checkpoint" / "progress.json").read_text())
    learners = progress["learners"]
    assert [learner["rank"] for learner in learners] == [0, 1]
    assert len({learner["node_id"] for learner in learners}) == 2  # the cluster's two nodes
    assert {learner["device"] for learner in learners} == {"cpu"}
    # DDP averaged every gradient: both replicas hold bit-identical weights...
    assert learners[0]["weights_sha256"] == learners[1]["weights_sha256"]
    # ... which are the checkpoint's, after 40 updates, and not the initial ones.
    module_dir = run_dir / "checkpoint" / "learner_group" / "learner" / "rl_module"
    trained = RLModule.from_checkpoint(str(module_dir / "default_policy"))
    assert trained.num_updates == 40
    assert module_digest(trained) == learners[0]["weights_sha256"]
    config = TrainConfig.for_variant("sasrec_ccql", str(prepared), **settings)
    fresh = algorithm_config(config, read_meta(str(prepared))).get_rl_module_spec().build()
    fresh.num_updates = 40
    assert module_digest(fresh) != module_digest(trained)

    assert progress["updates"] == 40
    assert [row["updates"] for row in progress["val_history"]] == [20, 40]
    for name in ("loss/total", "loss/ce", "q/mean", "q/td_error", "q/cql_gap"):
        points = progress["history"][name]
        assert [step for step, _ in points] == [20, 40], name
        assert all(math.isfinite(value) for _, value in points), (name, points)
    assert "sasrec_ccql after 40 updates - test split:" in output
    assert "on 2 learner(s), 2 node(s), cpu" in output


def test_a_two_trial_sweep_uses_both_nodes(cluster, prepared, tmp_path):
    study = {
        "name": "spread", "data": str(prepared), "variants": ["sasrec"], "seeds": [0, 1],
        "fixed": {"total_steps": 20, "eval_interval": 10, "hidden_size": 16, "batch_size": 32},
        "resources": {"cpu": 0.5, "data_cpu": 1, "custom": {"trial_slot": 1}},
    }  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    _recrl(cluster, ["tune", str(tmp_path / "study.yaml"), "--storage", str(tmp_path / "sweeps"),
                     "--no-mlflow"], tmp_path)  # fmt: skip

    trials = sorted((tmp_path / "sweeps" / "spread").rglob("checkpoint/progress.json"))
    assert len(trials) == 2, trials
    placed = []
    for path in trials:
        progress = json.loads(path.read_text())
        assert progress["updates"] == 20
        (learner,) = progress["learners"]  # a trial trains with its local learner
        placed.append(learner["node_id"])
    assert len(set(placed)) == 2, placed  # one trial on each node


def test_the_weights_digest_tells_any_bit_apart():
    """What the DDP check above relies on: equal digests for equal states, a different one
    for a single weight moved by one ulp or another update count."""
    import torch
    from recrl.pipelines.sasrec.algorithm import algorithm_config, module_digest
    from recrl.pipelines.sasrec.config import TrainConfig

    meta = {"L": 10, "n_items": 30, "pad_id": 30, "splits": {"train": {"transitions": 100}}}
    spec = algorithm_config(TrainConfig.for_variant("sasrec_ac", "/d", hidden_size=8), meta)
    first, second = (spec.get_rl_module_spec().build() for _ in range(2))
    assert module_digest(first) == module_digest(second)  # same seed, same weights
    weight = second.networks[1].q_head.linear.weight  # the second twin counts too
    with torch.no_grad():
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1.0))
    assert module_digest(first) != module_digest(second)
    third = spec.get_rl_module_spec().build()
    third.num_updates = 1
    assert module_digest(first) != module_digest(third)
