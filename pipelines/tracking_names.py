"""Where the MLflow store is, and the names and values it accepts (`recrl.pipelines.tracking`
re-exports all of it)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEFAULT_EXPERIMENT = "recrl"
GIT_COMMIT_TAG = "git.commit"
PARENT_RUN_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""Experiment tag naming an experiment's kind (MLflow 3.x). MLflow's UI picks an experiment's
view from it where its GenAI / Model training switch is off; 3.17's switch is on, and there
the view comes from `TRAINING_VIEW_QUERY`."""
EXPERIMENT_KIND = "custom_model_development"
"""Our experiments' kind, model training: the runs table and charts, not the GenAI traces
overview."""
_USER_CHOSEN_KINDS = ("genai_development", EXPERIMENT_KIND)
"""Kinds a person set (the UI's switch); the ``…_inferred`` guesses are replaced."""
TRAINING_VIEW_QUERY = "workflowType=machine_learning"
"""URL query that opens MLflow's UI in its training view. The UI of MLflow 3.17 picks the
view from this query, else from the browser's last choice (GenAI on a first visit), and no
longer from `EXPERIMENT_KIND_TAG`; links recrl prints carry it."""
LOCAL_UI_URL = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves the UI by default."""
# MLflow limits (mlflow.utils.validation): key length, value lengths, entities per batch.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100

_INVALID_NAME_CHARS = re.compile(r"[^\w.\- /]")  # what MLflow accepts on every platform


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def absolute_tracking_uri(uri: str | None = None) -> str:
    """`tracking_uri` with a relative sqlite path made absolute: processes that run in
    other working directories (Tune trials, Ray jobs) then write to the same database."""
    uri = tracking_uri(uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def dashboard_command(uri: str | None = None, experiment_id: str | None = None) -> str:
    """The shell command that opens the MLflow UI on the runs of ``uri``; with
    ``experiment_id``, on that experiment's training view (`dashboard_url`)."""
    uri = tracking_uri(uri)
    if uri.startswith(("http://", "https://")):  # a server already serves the UI
        url = dashboard_url(uri, experiment_id) if experiment_id else uri
        return f"python -m webbrowser {shlex.quote(url)}"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    if experiment_id:
        command += f"  # then open {dashboard_url(LOCAL_UI_URL, experiment_id)}"
    return command


def dashboard_url(server: str, experiment_id: str) -> str:
    """The page of experiment ``experiment_id`` in the MLflow UI at ``server``, in the
    training view (`TRAINING_VIEW_QUERY`): the runs table and their charts."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}?{TRAINING_VIEW_QUERY}"


def describe_run(lead: str | None, settings: Mapping[str, Any]) -> str:
    """A run name that says what sets the run apart: ``snqn n_neg=10 seed=0`` from
    ``("snqn", {"n_neg": 10, "seed": 0})``; floats to 3 significant digits."""
    parts = [str(lead)] if lead else []
    for key, value in settings.items():
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """HEAD commit of the checkout holding ``path`` (default: this package), else None."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() if out.returncode == 0 else ""
    return commit or None


def sanitize_name(name: str) -> str:
    """A metric/param key MLflow accepts: ``hr@20`` -> ``hr_20``; ``/`` namespaces are kept
    (``loss/td``), empty segments and leading/trailing slashes removed."""
    name = _INVALID_NAME_CHARS.sub("_", str(name))
    name = "/".join(part for part in name.split("/") if part not in ("", ".", ".."))
    return name[:MAX_KEY_LENGTH] or "_"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; values stringified and cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[sanitize_name(name)] = str(value)[:MAX_PARAM_VALUE_LENGTH]
    return flat


def clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {sanitize_name(k): str(v)[:MAX_TAG_VALUE_LENGTH] for k, v in tags.items()}


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local sqlite store go to ``mlartifacts/`` next to the database file."""
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        return str(Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts")
    return None


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name`` (``client``: an ``MlflowClient``), created if absent, and
    marked `EXPERIMENT_KIND` unless it already carries a kind that a person chose."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(
                name, artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:  # created meanwhile by a parallel trial
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.tags.get(EXPERIMENT_KIND_TAG) not in _USER_CHOSEN_KINDS:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return found.experiment_id


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
