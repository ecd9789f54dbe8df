"""MLflow screenshots of real runs (README, docs/dashboard.md), by the browser test's page code.

    RAY_ADDRESS=local .venv/bin/python benchmarks/dashboard_screenshots.py

It took 1.5 hours on a shared 2-CPU machine (training 51 min, sweep 37 min, pages 2 min).

Every step is skipped when its output is already there, so an interrupted call goes on
where it stopped and a second call only takes the pictures again:

1. `recrl prepare` the RC15 sample (``../shared/data/yoochoose-rc15-sample``) into
   ``data/rc15``, unless it is prepared;
2. `recrl train` ``sasrec_ccql`` for 1,500 updates, validated every 125, into
   ``runs/screenshots/train`` (``--resume`` when a checkpoint is there);
3. `recrl tune tune_configs/negatives.yaml` cut down to one variant, ``snqn``, at n_neg 1,
   10 and 50, one seed and 500 updates a trial, into ``runs/screenshots/sweeps``;
4. `mlflow server` on the store (``sqlite:///runs/screenshots/mlruns.db``, both jobs log
   there through ``MLFLOW_TRACKING_URI``) and headless Chromium, driven by
   `tests.dashboard_pages` as `tests/test_mlflow_dashboard.py` drives it, open the runs
   table, the run's metric charts and its ``stability.png`` (-> ``docs/img/mlflow_run.png``),
   the sweep's parent run and its ``report/stability.png``, and the compare view of the
   trials with the study's metric on the plot (-> ``docs/img/mlflow_compare.png``). What
   they show is checked against the store as the test checks it, so a broken page stops
   the script with the reason; every page is saved under ``runs/screenshots/pages/``.

Needs the dev extra (Playwright, pytest) and a system Chromium (Debian's ``chromium``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recrl.pipelines.commands.overrides import parse_overrides  # noqa: E402
from recrl.pipelines.sasrec.job import CONFIG_FILE, PROGRESS_FILE, latest_checkpoint  # noqa: E402
from recrl.pipelines.tune.study import load_study  # noqa: E402
from recrl.pipelines.tune.sweep import SWEEP_FILE  # noqa: E402
from recrl.pipelines.tune.trainable import trial_name  # noqa: E402

from tests import dashboard_pages as pages  # noqa: E402

log = logging.getLogger("dashboard_screenshots")

RAW_SAMPLE = REPO.parent / "shared" / "data" / "yoochoose-rc15-sample"
TRAIN_STEPS, TRAIN_EVAL_INTERVAL = 1500, 125
"""1,500 updates in RLlib iterations of 25 (the gcd with the evaluation interval): 60 points
of every loss and Q statistic, 12 validations."""
SWEEP_STUDY = REPO / "tune_configs" / "negatives.yaml"
SWEEP_SETTINGS = [
    "name=screenshots-negatives",
    "description=negative actions per row, snqn, 500 updates",
    "variants=[snqn]",
    "search={n_neg: {grid: [1, 10, 50]}}",
    "seeds=[0]",
    "total_steps=500",
    "eval_interval=100",
]
"""`recrl tune --set` values that cut the negatives study to three short trials."""
SEARCHED_PARAM = "objective.n_neg"
"""The searched setting as a child run logs it (`recrl train` logs its flattened config)."""
CHARTED = ("eval/hr_20_purchase", "eval/ndcg_20_purchase", "eval/ndcg_20_click",
           "loss/ce", "loss/td", "loss/cql", "q/mean", "q/cql_gap")  # fmt: skip
"""Metrics whose charts the run page is checked on and shows in its screenshot: a row of
validation metrics, then the losses and Q statistics below."""


@dataclass(frozen=True)
class Sweep:
    name: str
    metric: str
    """The study's metric (``eval/ndcg_20_purchase``)."""
    parent_id: str
    trials: dict[str, str]
    """Child run name (the trial's settings) -> run id, in grid order."""


def recrl(*args: str, env: dict[str, str]) -> None:
    """Run a `recrl` command of this interpreter's environment; stop if it fails."""
    command = [str(Path(sys.executable).parent / "recrl"), *args]
    log.info("$ %s", " ".join(command))
    started = time.monotonic()
    subprocess.run(command, cwd=REPO, env=env, check=True)
    log.info("done in %.0f s", time.monotonic() - started)


def prepare(data: Path, raw: Path, env: dict[str, str]) -> None:
    if (data / "meta.json").is_file():
        log.info("%s is prepared", data)
        return
    if not raw.is_dir():
        raise SystemExit(f"{data} is not prepared and the raw sample {raw} is absent")
    recrl("prepare", "--source", "yoochoose", "--input", str(raw), "--output", str(data), env=env)


def train(data: Path, run_dir: Path, env: dict[str, str]) -> tuple[str, dict]:
    """The training run (trained unless done); its MLflow run id and last progress."""
    checkpoint = latest_checkpoint(run_dir)
    progress = json.loads((checkpoint / PROGRESS_FILE).read_text()) if checkpoint else {}
    if progress.get("updates") == TRAIN_STEPS and (run_dir / "stability.png").is_file():
        log.info("%s holds the finished run", run_dir)
    elif checkpoint is not None:
        recrl("train", "--resume", str(run_dir), env=env)
    else:
        recrl("train", "--variant", "sasrec_ccql", "--data", str(data),
              "--steps", str(TRAIN_STEPS), "--eval-interval", str(TRAIN_EVAL_INTERVAL),
              "--run-dir", str(run_dir), env=env)  # fmt: skip
    progress = json.loads((latest_checkpoint(run_dir) / PROGRESS_FILE).read_text())
    run_id = json.loads((run_dir / CONFIG_FILE).read_text())["run_id"]
    assert progress["updates"] == TRAIN_STEPS and progress["run_id"] == run_id, progress
    return run_id, progress


def sweep(data: Path, storage: Path, uri: str, env: dict[str, str]) -> Sweep:
    """The short sweep (run unless done): its parent run and child runs."""
    from mlflow.tracking import MlflowClient

    settings = [*SWEEP_SETTINGS, f"data={data}"]
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    study = load_study(SWEEP_STUDY, parse_overrides(settings))
    folder = storage / study.name
    if (folder / "report.png").is_file():
        log.info("%s holds the finished sweep", folder)
    else:
        resume = ["--resume"] if (folder / SWEEP_FILE).is_file() else []
        recrl("tune", str(SWEEP_STUDY), *overrides, "--storage", str(storage), *resume, env=env)
    parent = json.loads((folder / SWEEP_FILE).read_text())["parent_run_id"]
    children = MlflowClient(tracking_uri=uri).search_runs(
        [pages.experiment_id(uri, study.experiment)],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )
    by_name = {run.info.run_name: run.info.run_id for run in children}
    expected = [
        trial_name({"variant": variant, "n_neg": n_neg, "seed": seed}, study)
        for variant in study.variants
        for n_neg in study.search["n_neg"].values
        for seed in study.seeds
    ]
    assert sorted(by_name) == sorted(expected), f"child runs {sorted(by_name)} != {expected}"
    return Sweep(study.name, study.metric, parent, {name: by_name[name] for name in expected})


def artifact_size(client, run_id: str, artifact: str, workdir: Path) -> tuple[int, int]:
    """(width, height) of a PNG artifact of the run, as the store holds it."""
    local = client.download_artifacts(run_id, artifact, str(workdir / "downloads" / run_id))
    return pages.png_size(Path(local))


def take_pictures(
    uri: str, workdir: Path, run_id: str, progress: dict, sweep: Sweep, images: Path
) -> None:
    """Open the pages, check them against the store, save them; copy two to ``images``."""
    import pytest
    from mlflow.tracking import MlflowClient

    from tests.services import chromium_executable, free_port, mlflow_server

    try:
        executable = chromium_executable()
    except pytest.skip.Exception as missing:  # no Chromium: the test skips, this stops
        raise SystemExit(str(missing)) from None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    experiment, run_name = run.info.experiment_id, run.info.run_name
    sweep_experiment = client.get_run(sweep.parent_id).info.experiment_id
    shots = workdir / "pages"
    with (
        mlflow_server(uri, workdir / "served-artifacts", port=free_port()) as server,
        pages.chromium(executable) as browser,
        pages.new_page(browser) as page,
    ):
        log.info("MLflow UI at %s", server)
        pages.open_runs_table(page, server, experiment, [run_name])
        pages.screenshot(page, shots / "runs_table.png")

        drawn = pages.open_metric_charts(page, server, experiment, run_id, run_name, CHARTED)
        pages.screenshot(page, shots / "run_metrics.png")
        logged = {name: len(client.get_metric_history(run_id, name)) for name in CHARTED}
        assert drawn == logged, f"points drawn {drawn} != logged {logged}"
        # a point per validation and per RLlib iteration (25 updates here)
        assert logged["eval/ndcg_20_purchase"] == len(progress["val_history"])
        assert logged["loss/td"] == len(progress["history"]["loss/td"])

        size = pages.open_artifact_image(page, server, experiment, run_id, "stability.png")
        pages.screenshot(page, shots / "run_stability.png")
        assert size == artifact_size(client, run_id, "stability.png", workdir), size

        pages.open_sweep_run(page, server, sweep_experiment, sweep.parent_id, sweep.name,
                             sweep.trials)  # fmt: skip
        pages.screenshot(page, shots / "sweep_parent.png")
        size = pages.open_artifact_image(
            page, server, sweep_experiment, sweep.parent_id, "report/stability.png"
        )
        pages.screenshot(page, shots / "sweep_stability.png")
        assert size == artifact_size(client, sweep.parent_id, "report/stability.png", workdir)

        trial_ids = list(sweep.trials.values())
        plot = pages.open_compare_view(
            page, server, sweep_experiment, trial_ids, sweep.trials, metric=sweep.metric
        )
        pages.screenshot(page, shots / "sweep_compare.png")
        # the plot spans the trials: searched values on one axis, final metric on the other
        searched = [float(client.get_run(i).data.params[SEARCHED_PARAM]) for i in trial_ids]
        final = [client.get_run(i).data.metrics[sweep.metric] for i in trial_ids]
        assert plot.get_by_text(SEARCHED_PARAM, exact=True).count() >= 1, SEARCHED_PARAM
        for value in (min(searched), max(searched), min(final), max(final)):
            assert plot.get_by_text(f"{value:.5f}", exact=True).count() >= 1, value

    images.mkdir(parents=True, exist_ok=True)
    for page_name, image in (("run_stability", "mlflow_run"), ("sweep_compare", "mlflow_compare")):
        shutil.copyfile(shots / f"{page_name}.png", images / f"{image}.png")
        log.info("wrote %s", images / f"{image}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/rc15"),
                        help="prepared RC15 sample (prepared from --raw if absent)")  # fmt: skip
    parser.add_argument("--raw", type=Path, default=RAW_SAMPLE, help="raw YooChoose sample")
    parser.add_argument("--workdir", type=Path, default=Path("runs/screenshots"),
                        help="MLflow store, run, sweep and every page's picture")  # fmt: skip
    parser.add_argument("--images", type=Path, default=Path("docs/img"),
                        help="where mlflow_run.png and mlflow_compare.png go")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    workdir = (REPO / args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    data = (REPO / args.data).resolve()
    prepare(data, args.raw, env)
    run_id, progress = train(data, workdir / "train", env)
    trials = sweep(data, workdir / "sweeps", uri, env)
    take_pictures(uri, workdir, run_id, progress, trials, (REPO / args.images).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
