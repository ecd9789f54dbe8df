"""The MLflow child runs of a sweep, for the tests of `recrl tune`."""

from __future__ import annotations

import json
from pathlib import Path


def sweep_child_runs(client, sweep_dir: Path, experiment: str) -> list:
    """The runs of ``experiment`` whose parent is the sweep's run (``sweep.json``)."""
    parent_id = json.loads((Path(sweep_dir) / "sweep.json").read_text())["parent_run_id"]
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
