"""The GPU-window sweep on CPU: the train split shared through the object store, and
benchmarks/gpu_study.py's code path (the negatives_gpu study cut to 2 trials) with its
summary's counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from ray.data.block import BlockAccessor
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.meta import read_meta
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.prepare.stages import list_to_matrix
from recrl.pipelines.sasrec.algorithm import learner_metrics
from recrl.pipelines.tune.shared_split import (
    INPUT_SCHEME,
    SharedOfflineData,
    share_train_split,
    trial_reads_shared_split,
)

from benchmarks.gpu_study import format_summary, run_gpu_study, study_at_budget

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "tune_configs" / "negatives_gpu.yaml"


@pytest.fixture(scope="module")
def prepared(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_study")
    frame = generate_sessions(SessionGeneratorConfig(seed=5, n_sessions=300, n_items=80))
    (root / "raw").mkdir()
    frame.to_parquet(root / "raw" / "sessions.parquet", index=False)
    prepare(PrepareConfig(source="generic", input_path=str(root / "raw"),
                          output_path=str(root / "prepared")))  # fmt: skip
    return root / "prepared"


def test_the_shared_split_holds_the_pre_learners_columns_of_every_train_file(prepared):
    import ray

    meta = read_meta(str(prepared))
    shared = share_train_split(str(prepared))

    files = meta["splits"]["train"]["files"]
    assert len(shared.blocks) == len(files)
    assert shared.rows == meta["splits"]["train"]["transitions"] > 0
    assert shared.nbytes > 0 and shared.seconds > 0
    assert [m.metadata.num_rows for m in shared.metadata] == [
        pq.ParquetFile(prepared / name).metadata.num_rows for name in files
    ]
    for ref, name in zip(shared.blocks, files, strict=True):
        source = pq.read_table(prepared / name)
        # as a trial's data iterator hands the block on
        batch = BlockAccessor.for_block(ray.get(ref)).to_batch_format("numpy")
        assert batch["default_policy/state"].shape == (source.num_rows, meta["L"])
        np.testing.assert_array_equal(batch["default_policy/state"],
                                      list_to_matrix(source.column("state")))  # fmt: skip
        np.testing.assert_array_equal(batch["default_policy/action"],
                                      source.column("action").to_numpy())  # fmt: skip


def test_a_changed_train_split_is_refused_before_it_is_shared(prepared, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    first = copy / read_meta(str(copy))["splits"]["train"]["files"][0]
    table = pq.read_table(first)
    pq.write_table(table.slice(0, table.num_rows - 1), first)
    with pytest.raises(ValueError, match=r"hold \d+ transitions but meta\.json says \d+"):
        share_train_split(str(copy))


def test_a_trial_trains_on_the_shared_split_with_no_reader_of_its_own(prepared):
    from recrl.pipelines.sasrec import algorithm as sasrec_algorithm

    study = study_at_budget(STUDY, steps=4, eval_interval=2, data=str(prepared),
                            overrides={"hidden_size": 16, "batch_size": 32})  # fmt: skip
    config = study.trial_settings("snqn", 0, {"n_neg": 2})
    meta = read_meta(str(prepared))
    split = share_train_split(str(prepared))
    with trial_reads_shared_split(split) as configure:
        algo = sasrec_algorithm.build_algorithm(config, meta, configure=configure)
    try:
        data = algo.offline_data
        assert isinstance(data, SharedOfflineData) and data.data_is_mapped
        # the same passes over the train split as a trial's own reader would make
        passes = len(sasrec_algorithm.algorithm_config(config, meta).input_)
        assert data.data.count() == passes * split.rows
        assert all(p.startswith(INPUT_SCHEME) for p in algo.config.input_)  # no refs in it
        updates = [learner_metrics(algo.train())["train/num_updates"] for _ in range(2)]
    finally:
        algo.stop()
    assert updates == [2, 4]


def test_two_trials_of_the_gpu_study_add_up(prepared, tmp_path):
    # The study as shipped (shared train split, a GPU fraction per trial), cut to 2 trials.
    # The unshared path (each trial reads the files) is the one tests/test_tune_sweep.py runs.
    study = study_at_budget(
        STUDY, steps=20, eval_interval=10, data=str(prepared), name="smoke",
        overrides={"variants": ["snqn"], "seeds": [0, 1], "search": {"n_neg": {"grid": [2]}},
                   "hidden_size": 16, "batch_size": 32, "eval_max_rows": 200},
    )  # fmt: skip
    assert study.fixed["warmup_steps"] == 10 and study.resources.gpu > 0  # dropped: no GPU
    assert study.shared_data

    summary = run_gpu_study(study, tmp_path / "sweeps")

    assert summary.expected_trials == summary.trials == 2
    assert sorted(t.params["seed"] for t in summary.trial_results) == [0, 1]
    assert [t.updates for t in summary.trial_results] == [20, 20]
    assert summary.total_updates == summary.trials * summary.steps == 40
    assert summary.wall_s > 0 and summary.updates_per_s == pytest.approx(40 / summary.wall_s)
    assert 0 < summary.trials_span_s <= summary.wall_s
    for trial in summary.trial_results:
        assert trial.seconds > 0 and trial.updates_per_s == pytest.approx(20 / trial.seconds)
        assert trial.metric is not None and 0.0 <= trial.metric <= 1.0 and not trial.diverged
    assert summary.shared_data and summary.cluster["GPU"] == 0
    # The 4-CPU test runtime: 0.5 CPU per trial and no reader CPU (1.5 per trial unshared).
    assert summary.max_concurrent_trials == 8
    assert "2/2 trials × 20 updates = 40 updates" in format_summary(summary)
    assert summary.to_dict()["meets_target"] is (summary.updates_per_s >= 500)
