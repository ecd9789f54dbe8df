"""The MLflow dashboard of recrl runs, in a real browser.

A short real training job and a sweep (a parent run with two child runs, logged through
`recrl.pipelines.tracking.Tracker` the way `recrl tune` logs them) are written to a sqlite store;
`mlflow server` is started on it as `mlflow ui` would be, and headless Chromium (Debian's
package, driven by Playwright; no browser download) opens the run page, the stability
figure, the sweep's parent run and the compare view of its children. What the pages draw
is checked against what was logged: the experiment link recrl prints opens the runs table
(MLflow's training view, not its GenAI overview), the chart's line has one point per
evaluation, the image has the figure's pixel size, the compare view names both trials by
their settings and plots the searched setting against the metric. Screenshots are saved in
the test's tmp dir. The pages are driven by `tests.dashboard_pages`, which also takes the
README's screenshots of real runs (`benchmarks/dashboard_screenshots.py`).
"""

from __future__ import annotations

import json

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.job import default_run_name, train
from recrl.pipelines.tracking import Tracker
from recrl.pipelines.tune.study import study_from_dict
from recrl.pipelines.tune.trainable import trial_name

from tests import dashboard_pages as pages
from tests.services import chromium_executable, free_port, mlflow_server, port_in_use

pytestmark = [pytest.mark.ray, pytest.mark.service]

EXPERIMENT, SWEEP_EXPERIMENT = "dashboard-test", "dashboard-test-sweeps"
TOTAL_STEPS, EVAL_INTERVAL = 100, 50
EVAL_STEPS = [50, 100]
SWEEP = study_from_dict({"name": "sweep-dashboard", "data": "d", "variants": ["snqn"],
                         "search": {"n_neg": {"grid": [5, 20]}}})  # fmt: skip
TRIALS = {
    trial_name({"variant": "snqn", "n_neg": n_neg, "seed": 0}, SWEEP): (n_neg, values)
    for n_neg, values in ((5, (0.12, 0.18)), (20, (0.10, 0.21)))
}
"""Child runs of the sweep, named as `recrl tune` names them: name -> (n_neg,
eval/hr_20_purchase at updates 50 and 100)."""


@pytest.fixture(scope="module")
def store(ray_session, tmp_path_factory) -> dict:
    """A sqlite store holding one finished training run and one sweep (parent + 2 children)."""
    root = tmp_path_factory.mktemp("dashboard")
    uri = f"sqlite:///{root}/mlruns.db"
    frame = generate_sessions(SessionGeneratorConfig(seed=7, n_sessions=400, n_items=80))
    (root / "raw").mkdir()
    frame.to_parquet(root / "raw" / "sessions.parquet", index=False)
    prepare(PrepareConfig(source="generic", input_path=str(root / "raw"),
                          output_path=str(root / "prepared")))  # fmt: skip
    config = TrainConfig.for_variant(
        "sasrec_ccql", str(root / "prepared"), hidden_size=16, batch_size=32,
        total_steps=TOTAL_STEPS, eval_interval=EVAL_INTERVAL, experiment=EXPERIMENT,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = train(config, run_dir=root / "run")  # the run's default name
    assert [row["updates"] for row in result.val_history] == EVAL_STEPS

    sweep = Tracker(SWEEP_EXPERIMENT, uri=uri)
    parent = sweep.start("sweep-dashboard", params={"study": {"n_neg": [5, 20]}},
                         tags={"recrl.kind": "sweep"})  # fmt: skip
    children = []
    for name, (n_neg, values) in TRIALS.items():
        child = Tracker(SWEEP_EXPERIMENT, uri=uri)
        # params as `recrl tune` logs a trial's: its resolved, flattened config
        children.append(child.start(name, params={"objective": {"n_neg": n_neg}},
                                    parent_run_id=parent))  # fmt: skip
        for step, value in zip(EVAL_STEPS, values, strict=True):
            child.log_metrics({"eval/hr_20_purchase": value}, step=step)
        child.end()
    sweep.end()
    return {"uri": uri, "root": root, "config": config, "result": result, "parent": parent,
            "children": children}  # fmt: skip


@pytest.fixture(scope="module")
def dashboard(store) -> str:
    """`mlflow server` on the store (the artifacts of a sqlite store are read from disk)."""
    port = free_port()
    with mlflow_server(store["uri"], store["root"] / "served-artifacts", port=port) as url:
        yield url
    assert not port_in_use(port)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with pages.chromium(chromium_executable()) as chromium:
        yield chromium


@pytest.fixture
def page(browser):
    with pages.new_page(browser) as page:
        yield page


def test_the_experiment_opens_on_its_runs_table(store, dashboard, page, tmp_path):
    from mlflow.tracking import MlflowClient

    result = store["result"]
    run_name = MlflowClient(tracking_uri=store["uri"]).get_run(result.run_id).info.run_name
    assert run_name == "sasrec_ccql hidden_size=16 batch_size=32 total_steps=100 " \
                       "eval_interval=50 seed=0" == default_run_name(store["config"])  # fmt: skip
    experiment = MlflowClient(tracking_uri=store["uri"]).get_experiment(result.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the link `recrl train` prints; not the GenAI overview of traces, which a plain
    # experiment link opens on
    pages.open_runs_table(page, dashboard, result.experiment_id, [run_name])
    pages.screenshot(page, tmp_path / "experiment.png")


def test_run_page_draws_the_eval_metric_chart(store, dashboard, page, tmp_path):
    experiment = pages.experiment_id(store["uri"], EXPERIMENT)
    run_name = default_run_name(store["config"])
    drawn = pages.open_metric_charts(page, dashboard, experiment, store["result"].run_id,
                                     run_name, ["eval/hr_20_purchase"])  # fmt: skip
    pages.screenshot(page, tmp_path / "run_metrics.png")
    assert drawn == {"eval/hr_20_purchase": len(EVAL_STEPS)}  # a point per evaluation


def test_artifact_view_shows_the_stability_figure(store, dashboard, page, tmp_path):
    run_id = store["result"].run_id
    figure = store["result"].run_dir / "stability.png"
    experiment = pages.experiment_id(store["uri"], EXPERIMENT)
    drawn = pages.open_artifact_image(page, dashboard, experiment, run_id, "stability.png")
    pages.screenshot(page, tmp_path / "run_stability.png")
    assert drawn == pages.png_size(figure)
    # the figure drew every point MLflow holds of the losses and Q statistics
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store["uri"])
    progress = store["result"].checkpoint / "progress.json"
    drawn_history = json.loads(progress.read_text())["history"]
    for name in ("loss/ce", "loss/td", "q/mean"):
        logged = [m.step for m in client.get_metric_history(run_id, name)]
        assert [step for step, _ in drawn_history[name]] == sorted(logged), name


def test_sweep_parent_and_compare_view_of_its_children(store, dashboard, page, tmp_path):
    sweep_id = pages.experiment_id(store["uri"], SWEEP_EXPERIMENT)
    pages.open_sweep_run(page, dashboard, sweep_id, store["parent"], "sweep-dashboard", TRIALS)
    pages.screenshot(page, tmp_path / "sweep_parent.png")

    plot = pages.open_compare_view(page, dashboard, sweep_id, store["children"], TRIALS,
                                   metric="eval/hr_20_purchase")  # fmt: skip
    pages.screenshot(page, tmp_path / "sweep_compare.png")
    # the parallel-coordinates plot spans the trials: n_neg 5..20, final hr_20 0.18..0.21
    assert plot.get_by_text("objective.n_neg", exact=True).count() >= 1
    for label in ("5.00000", "20.00000", "0.18000", "0.21000"):
        assert plot.get_by_text(label, exact=True).count() >= 1, label
