"""Pages of the MLflow UI as a user opens them, in headless Chromium driven by Playwright.

Shared by the browser test (`tests/test_mlflow_dashboard.py`, tiny runs) and the README
screenshots (`benchmarks/dashboard_screenshots.py`, real runs), so the pictures in the README
are taken by the code that the test checks. Each ``open_…`` function goes to one page in the
training view, waits for what a user looks for there and raises (Playwright's
``TimeoutError`` or ``AssertionError``) when the page does not show it; it returns what the
caller compares with what was logged.
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from recrl.pipelines.tracking_names import TRAINING_VIEW_QUERY, dashboard_url

VIEWPORT = {"width": 1400, "height": 900}
"""The browser window, and the size of every screenshot (readable in the README)."""
UI_TIMEOUT_MS = 240_000
"""The UI is a large React app; on a loaded 2-core machine a page can take a minute."""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]
"""--no-sandbox: Chromium's sandbox needs user namespaces, absent in CI containers."""
ASSISTANT_CLOSED = """
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
"""
"""MLflow 3.17 opens its chat assistant over a third of the window on a browser's first
visit; these are the choices it remembers once a user closes it."""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = Path(path).read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name`` in the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r} in {uri}"
    return experiment.experiment_id


@contextlib.contextmanager
def chromium(executable: str) -> Iterator[Any]:
    """Headless Chromium at ``executable`` (the system's, no Playwright download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser: Any) -> Iterator[Any]:
    """A page of `VIEWPORT` size in a fresh browser context, as on a first visit with the
    assistant panel closed."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(ASSISTANT_CLOSED)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, path: Path) -> Path:
    """Save what the window shows to ``path`` (a PNG of `VIEWPORT` size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), timeout=UI_TIMEOUT_MS, animations="disabled")
    assert png_size(path) == (VIEWPORT["width"], VIEWPORT["height"]), png_size(path)
    return path


def run_url(server: str, experiment: str, run_id: str, tab: str = "") -> str:
    """A run's page (``tab``: ``model-metrics``, ``artifacts/stability.png``...)."""
    suffix = f"/{tab}" if tab else ""
    return f"{server}/#/experiments/{experiment}/runs/{run_id}{suffix}?{TRAINING_VIEW_QUERY}"


def open_runs_table(page: Any, server: str, experiment: str, run_names: Iterable[str]) -> None:
    """The experiment link recrl prints: the runs table of the training view, listing each
    of ``run_names`` (not MLflow's GenAI overview of traces, which a plain link opens on)."""
    page.goto(dashboard_url(server, experiment))
    for name in run_names:
        page.get_by_role("link", name=name, exact=True).first.wait_for()
    page.get_by_text("Run Name", exact=True).first.wait_for()  # the runs table's header
    assert page.get_by_text("Token Usage").count() == 0, "the GenAI overview opened"
    assert TRAINING_VIEW_QUERY in page.url, page.url


def open_metric_charts(
    page: Any, server: str, experiment: str, run_id: str, run_name: str, metrics: Sequence[str]
) -> dict[str, int]:
    """The run's "Model metrics" tab with its charts narrowed to ``metrics`` (the search box
    takes a regular expression). Returns, per metric, the number of points its chart's line
    is drawn through (plotly's trace; it thins the SVG path of a long line, and marks each
    point only on short ones)."""
    page.goto(run_url(server, experiment, run_id, "model-metrics"))
    page.get_by_text(run_name).first.wait_for()
    search = page.get_by_placeholder("Search metric charts")
    points = {}
    for metric in metrics:  # one at a time: the UI draws only the charts in the window
        search.fill(f"^{re.escape(metric)}$")
        page.get_by_text(f"{run_name} ({metric})").first.wait_for()  # the chart's legend
        card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
            has_text=f"({metric})"
        )
        line = card.locator("path.js-line").first
        line.wait_for(state="attached")
        assert card.get_by_text("Step").first.is_visible(), f"{metric}: no step axis"
        path = line.get_attribute("d")  # "M x0,y0 L x1,y1 ...": a line, not a lone point
        assert path and path.startswith("M") and "L" in path, f"{metric}: no line ({path!r})"
        trace = card.locator(".js-plotly-plot").first.evaluate(
            "plot => ({n: plot.data[0].x.length, markers: plot.data[0].mode.includes('markers')})"
        )
        if trace["markers"]:
            markers = card.locator("path.point").count()
            assert markers == trace["n"], f"{metric}: {markers} markers, {trace['n']} points"
        points[metric] = trace["n"]
    search.fill("^(" + "|".join(re.escape(metric) for metric in metrics) + ")$")
    page.get_by_text(f"{run_name} ({metrics[0]})").first.wait_for()
    return points


def open_artifact_image(
    page: Any, server: str, experiment: str, run_id: str, artifact: str
) -> tuple[int, int]:
    """The run's artifact view with image ``artifact`` (``stability.png``,
    ``report/stability.png``) selected and drawn; returns its (width, height) in pixels."""
    page.goto(run_url(server, experiment, run_id, f"artifacts/{artifact}"))
    image = page.locator(f'img[alt="{artifact}"]')  # the artifact's path
    image.wait_for(state="visible")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    return tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


def open_sweep_run(
    page: Any, server: str, experiment: str, parent_id: str, sweep: str, trial_names: Iterable[str]
) -> None:
    """A sweep's parent run: its overview names the sweep and links each trial's child run."""
    page.goto(run_url(server, experiment, parent_id))
    page.get_by_text(sweep).first.wait_for()
    page.get_by_text("recrl.kind").first.wait_for()
    for name in trial_names:  # the overview's "Child runs" row
        page.get_by_role("link", name=name, exact=True).wait_for()


def open_compare_view(
    page: Any,
    server: str,
    experiment: str,
    run_ids: list[str],
    trial_names: Iterable[str],
    metric: str | None = None,
) -> Any:
    """The compare view of ``run_ids`` (a sweep's child runs), listing each trial by its
    name (its settings); returns the parallel-coordinates plot of params against metrics,
    with ``metric`` alone on its metric axes if given (the UI picks one of the runs'
    metrics, not always the same)."""
    page.goto(f"{server}/#/compare-runs?runs={json.dumps(run_ids)}"
              f'&experiments=["{experiment}"]&{TRAINING_VIEW_QUERY}')  # fmt: skip
    page.get_by_text(f"Comparing {len(run_ids)} Runs").first.wait_for()
    for name in trial_names:
        page.get_by_text(name, exact=True).first.wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(state="attached")
    if metric is not None:
        chosen = page.get_by_text("Metrics:", exact=True).locator("xpath=following-sibling::div[1]")
        remove = chosen.locator(".du-bois-light-select-selection-item-remove")
        while remove.count():
            remove.first.click()
        chosen.click()
        page.keyboard.type(metric)
        page.locator(f'.du-bois-light-select-item-option[title="{metric}"]').click()
        page.keyboard.press("Escape")
        plot.get_by_text(metric, exact=True).first.wait_for()  # the axis title
        items = chosen.locator(".du-bois-light-select-selection-item-content").all_inner_texts()
        assert items == [metric], items
    return plot
