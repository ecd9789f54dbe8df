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


def dashboard_command(uri: str | None = None) -> str:
    """The shell command that opens the MLflow UI on the runs of ``uri``."""
    uri = tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        return f"python -m webbrowser {shlex.quote(uri)}"  # a server already serves the UI
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


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


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
