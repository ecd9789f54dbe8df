"""The MLflow dashboard of recrl runs, in a real browser.

A short real training job and a sweep (a parent run with two child runs, logged through
`recrl.pipelines.tracking.Tracker` the way `recrl tune` logs them) are written to a sqlite store;
`mlflow server` is started on it as `mlflow ui` would be, and headless Chromium (Debian's
package, driven by Playwright; no browser download) opens the run page, the stability
figure, the sweep's parent run and the compare view of its children. What the pages draw
is checked against what was logged: the chart's line has one vertex per evaluation, the
image has the figure's pixel size, the compare view names both trials. Screenshots are
saved in the test's tmp dir.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.pipeline import prepare
from recrl.pipelines.sasrec.config import TrainConfig
from recrl.pipelines.sasrec.job import train
from recrl.pipelines.tracking import Tracker

from tests.services import chromium_executable, free_port, mlflow_server, port_in_use

pytestmark = [pytest.mark.ray, pytest.mark.service]

EXPERIMENT, SWEEP_EXPERIMENT = "dashboard-test", "dashboard-test-sweeps"
TOTAL_STEPS, EVAL_INTERVAL = 100, 50
EVAL_STEPS = [50, 100]
TRIALS = {"trial-n_neg=5": (0.12, 0.18), "trial-n_neg=20": (0.10, 0.21)}
"""Child runs of the sweep: name -> eval/hr_20_purchase at updates 50 and 100."""
UI_TIMEOUT_MS = 240_000
"""The UI is a large React app; on a loaded 2-core machine a page can take a minute."""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


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
        result = train(config, run_dir=root / "run", run_name="sasrec_ccql-dashboard")
    assert [row["updates"] for row in result.val_history] == EVAL_STEPS

    sweep = Tracker(SWEEP_EXPERIMENT, uri=uri)
    parent = sweep.start("sweep-dashboard", params={"study": {"n_neg": [5, 20]}},
                         tags={"recrl.kind": "sweep"})  # fmt: skip
    children = []
    for name, values in TRIALS.items():
        child = Tracker(SWEEP_EXPERIMENT, uri=uri)
        children.append(child.start(name, params={"n_neg": name.split("=")[1]},
                                    parent_run_id=parent))  # fmt: skip
        for step, value in zip(EVAL_STEPS, values, strict=True):
            child.log_metrics({"eval/hr_20_purchase": value}, step=step)
        child.end()
    sweep.end()
    return {"uri": uri, "root": root, "result": result, "parent": parent, "children": children}


@pytest.fixture(scope="module")
def dashboard(store) -> str:
    """`mlflow server` on the store (the artifacts of a sqlite store are read from disk)."""
    port = free_port()
    with mlflow_server(store["uri"], store["root"] / "served-artifacts", port=port) as url:
        yield url
    assert not port_in_use(port)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium_executable()
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox needs user namespaces, absent in CI containers
        chromium = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def experiment_id(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_experiment_by_name(name).experiment_id


def screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), timeout=UI_TIMEOUT_MS, animations="disabled")
    assert png_size(path) == (1400, 900)


def test_run_page_draws_the_eval_metric_chart(store, dashboard, page, tmp_path):
    run_id = store["result"].run_id
    page.goto(f"{dashboard}/#/experiments/{experiment_id(store['uri'], EXPERIMENT)}"
              f"/runs/{run_id}/model-metrics")  # fmt: skip
    page.get_by_text("sasrec_ccql-dashboard").first.wait_for()
    # the search box keeps only this metric's chart, wherever its section is on the page
    page.get_by_placeholder("Search metric charts").fill("eval/hr_20_purchase")
    legend = page.get_by_text("sasrec_ccql-dashboard (eval/hr_20_purchase)")
    legend.first.wait_for()
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has_text="(eval/hr_20_purchase)"
    )
    line = card.locator("path.js-line").first
    line.wait_for(state="attached")
    screenshot(page, tmp_path / "run_metrics.png")
    # plotly draws a line of n points as "M x0,y0 L x1,y1 ...": one vertex per evaluation
    path = line.get_attribute("d")
    assert path.startswith("M") and path.count("L") == len(EVAL_STEPS) - 1, path
    assert card.get_by_text("Step").first.is_visible()


def test_artifact_view_shows_the_stability_figure(store, dashboard, page, tmp_path):
    run_id = store["result"].run_id
    figure = store["result"].run_dir / "stability.png"
    page.goto(f"{dashboard}/#/experiments/{experiment_id(store['uri'], EXPERIMENT)}"
              f"/runs/{run_id}/artifacts/stability.png")  # fmt: skip
    image = page.locator('img[alt="stability.png"]')
    image.wait_for(state="visible")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    drawn = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    screenshot(page, tmp_path / "run_stability.png")
    assert tuple(drawn) == png_size(figure)


def test_sweep_parent_and_compare_view_of_its_children(store, dashboard, page, tmp_path):
    sweep_id = experiment_id(store["uri"], SWEEP_EXPERIMENT)
    page.goto(f"{dashboard}/#/experiments/{sweep_id}/runs/{store['parent']}")
    page.get_by_text("sweep-dashboard").first.wait_for()
    page.get_by_text("recrl.kind").first.wait_for()
    for name in TRIALS:  # the overview's "Child runs" row links each trial
        page.get_by_role("link", name=name, exact=True).wait_for()
    screenshot(page, tmp_path / "sweep_parent.png")

    runs = json.dumps(store["children"])
    page.goto(f'{dashboard}/#/compare-runs?runs={runs}&experiments=["{sweep_id}"]')
    page.get_by_text("Comparing 2 Runs").first.wait_for()
    for name in TRIALS:
        page.get_by_text(name, exact=True).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for(state="attached")
    screenshot(page, tmp_path / "sweep_compare.png")
    # the parallel-coordinates plot spans the trials: n_neg 5..20, final hr_20 0.18..0.21
    plot = page.locator(".js-plotly-plot").first
    for label in ("5.00000", "20.00000", "0.18000", "0.21000"):
        assert plot.get_by_text(label, exact=True).count() >= 1, label
    assert plot.get_by_text("eval/hr_20_purchase").count() >= 1
