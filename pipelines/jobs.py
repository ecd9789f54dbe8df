"""Running a ``recrl`` command on a Ray cluster as a Ray job (the Ray Job SDK).

``recrl submit -- train ...`` and ``ray job submit --working-dir . -- recrl train ...`` do
the same thing: the checkout is uploaded (without data, runs, MLflow stores and
virtualenvs, see `EXCLUDES`), the command runs on the head node in a temporary copy of it,
and its logs come back. Here the entrypoint is ``python -m recrl.pipelines.cli ...`` so that the
uploaded code runs rather than whatever ``recrl`` the cluster may have installed.

Paths in the command are read on the cluster: they must be visible there (a shared
filesystem, ``s3://``, ``gs://``). A relative output path lands in the job's temporary
working directory. The MLflow store is forwarded as ``MLFLOW_TRACKING_URI`` with a local
sqlite path made absolute, which only helps when the cluster shares this machine's disk;
on real clusters point ``MLFLOW_TRACKING_URI`` at an MLflow server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from recrl.pipelines.tracking import absolute_tracking_uri

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_ENV = "RAY_ADDRESS"

# What never travels to the cluster: data, run outputs, MLflow stores, environments, caches.
EXCLUDES = [
    ".venv/",
    "venv/",
    ".git/",
    "data/",
    "runs/",
    "mlruns/",
    "mlruns.db",
    "mlartifacts/",
    "benchmarks/results/",
    "**/__pycache__/",
    "*.parquet",
    ".pytest_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    "*.egg-info/",
]

TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
FAILURE_LOG_LINES = 30
PROBE_TIMEOUT_S = 120.0
"""How long `probe_python` waits for the cluster to run its import check."""
_POLL_S = 1.0


class JobSubmissionError(RuntimeError):
    """A job could not be submitted, or did not succeed."""


class ClusterUnreachableError(JobSubmissionError):
    """No Ray job server answered at the address."""


class ClusterPythonError(JobSubmissionError):
    """The cluster's Python cannot import recrl or its dependencies."""


class JobFailedError(JobSubmissionError):
    """The job ended FAILED or STOPPED; ``outcome`` holds its id, status and logs."""

    def __init__(self, message: str, outcome: JobOutcome):
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED
    address: str
    logs: str = ""
    message: str = ""  # Ray's own status message (why a job failed, for instance)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def resolve_address(address: str | None = None) -> str:
    """``address``, else ``RAY_ADDRESS``, else ``http://127.0.0.1:8265``; the job server is
    the dashboard's HTTP address, so a bare ``host:port`` gets ``http://``."""
    address = (address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS).strip()
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def entrypoint(recrl_args: Sequence[str]) -> str:
    """The shell command a job runs: ``python -m recrl.pipelines.cli ARGS`` (shell-quoted)."""
    if not recrl_args:
        raise JobSubmissionError("no recrl command to run (e.g. `-- train --data ...`)")
    return shlex.join(["python", "-m", "recrl.pipelines.cli", *recrl_args])


def runtime_env(
    working_dir: str | os.PathLike = ".", extra_env: Mapping[str, str] | None = None
) -> dict:
    """The job's runtime env: the checkout without `EXCLUDES`, and the environment variables
    it needs (the absolute MLflow URI, unbuffered output so logs stream as they come)."""
    env_vars = {
        "MLFLOW_TRACKING_URI": absolute_tracking_uri(),
        "PYTHONUNBUFFERED": "1",
    }
    env_vars.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    return {
        "working_dir": str(working_dir),
        "excludes": list(EXCLUDES),
        "env_vars": env_vars,
    }


@contextlib.contextmanager
def _api_server_address(address: str) -> Iterator[None]:
    """Ray's client lets ``RAY_API_SERVER_ADDRESS``/``RAY_ADDRESS`` override the address it
    is given; pin it so that an explicit address wins."""
    key = "RAY_API_SERVER_ADDRESS"
    saved = os.environ.get(key)
    os.environ[key] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header for clusters with Ray token authentication (the default
    of ``ray start --head`` when a token exists): the token in ``RAY_AUTH_TOKEN``, else the
    file ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``; none when
    ``RAY_AUTH_MODE=disabled`` or no token is found."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        with contextlib.suppress(OSError):
            token = path.expanduser().read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def connect(address: str | None = None):
    """A `JobSubmissionClient` for the cluster at ``address`` (see `resolve_address`)."""
    from ray.job_submission import JobSubmissionClient

    address = resolve_address(address)
    try:
        with _api_server_address(address):
            return JobSubmissionClient(address, headers=auth_headers())
    except OSError as exc:  # ConnectionError, timeouts
        raise ClusterUnreachableError(
            f"no Ray job server answers at {address} ({exc}).\n"
            "Start a cluster here with `ray start --head` (its dashboard listens on port "
            "8265), or pass --address / set RAY_ADDRESS to the cluster's dashboard address, "
            "e.g. http://HEAD_NODE:8265, and check that the port is reachable."
        ) from None
    except Exception as exc:  # answered, but refused: authentication, version, ...
        raise JobSubmissionError(
            f"the Ray job server at {address} refused the connection: {type(exc).__name__}: {exc}"
        ) from None


def submit(
    address: str | None,
    recrl_args: Sequence[str],
    *,
    working_dir: str | os.PathLike = ".",
    wait: bool = True,
    follow_logs: bool = True,
    timeout_s: float | None = None,
    extra_env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    probe: bool = True,
) -> JobOutcome:
    """Submit ``recrl RECRL_ARGS`` as a Ray job and, when ``wait``, wait for it to end.

    With ``follow_logs`` the job's output is streamed to ``out`` (stdout) as it comes.
    Returns the outcome (status PENDING/RUNNING when not waiting). Raises
    `ClusterUnreachableError` when nothing answers at the address, `JobFailedError` (with
    the last log lines) when the job fails or is stopped, and `JobSubmissionError` when
    ``timeout_s`` passes first (the job keeps running; the message says how to stop it).
    With ``probe`` a tiny job first checks that the cluster's Python can import recrl
    (`probe_python`), so a cluster started outside the virtualenv is reported in one line.
    """
    folder = Path(working_dir).resolve()
    if not (folder / "pipelines" / "cli.py").is_file():
        raise JobSubmissionError(
            f"{folder} is not a recrl checkout (no pipelines/cli.py): run from the "
            "repository root or pass --working-dir"
        )
    command = entrypoint(recrl_args)
    client = connect(address)
    address = resolve_address(address)
    env = runtime_env(folder, extra_env)
    if probe:
        probe_python(client, env, timeout_s=PROBE_TIMEOUT_S)
    job_id = client.submit_job(entrypoint=command, runtime_env=env)
    if not wait:
        return JobOutcome(job_id, str(client.get_job_status(job_id)), address)

    out = out or sys.stdout
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    streamed = ""
    try:
        if follow_logs:
            streamed = _follow(client, job_id, out, deadline)
        status = _wait_terminal(client, job_id, deadline)
    except TimeoutError:
        raise JobSubmissionError(
            f"job {job_id} still {client.get_job_status(job_id)} after {timeout_s:g} s; it "
            f"keeps running. Follow it with `ray job logs --follow {job_id} --address "
            f"{address}`, stop it with `ray job stop {job_id} --address {address}`"
        ) from None
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; job {job_id} keeps running on the cluster. Stop it with "
            f"`ray job stop {job_id} --address {address}`",
            file=sys.stderr,
        )
        raise
    try:
        logs = client.get_job_logs(job_id)
    except Exception:  # the streamed copy is as good when the log fetch fails
        logs = streamed
    info = client.get_job_info(job_id)
    outcome = JobOutcome(job_id, status, address, logs or streamed, info.message or "")
    if not outcome.succeeded:
        tail = "\n".join(outcome.logs.rstrip().splitlines()[-FAILURE_LOG_LINES:])
        raise JobFailedError(
            f"job {job_id} {status}: {outcome.message}\n"
            f"--- last {FAILURE_LOG_LINES} log lines ---\n{tail}\n"
            f"(all logs: ray job logs {job_id} --address {address})",
            outcome,
        )
    return outcome


def probe_python(client, env: dict, *, timeout_s: float = 120.0) -> str:
    """Run `recrl.pipelines.job_probe` on the cluster with the job's runtime env; the Python it
    ran under, or `ClusterPythonError` naming that Python and the module it lacks."""
    from recrl.pipelines.job_probe import MARKER

    job_id = client.submit_job(entrypoint="python -m recrl.pipelines.job_probe", runtime_env=env)
    deadline = time.monotonic() + timeout_s
    try:
        status = _wait_terminal(client, job_id, deadline)
    except TimeoutError:
        raise JobSubmissionError(
            f"the cluster did not run the import check (job {job_id}) within {timeout_s:g} s"
        ) from None
    logs = client.get_job_logs(job_id)
    line = next((ln for ln in logs.splitlines() if ln.startswith(MARKER)), "")
    words = line.split(maxsplit=3)
    if status == "SUCCEEDED" and words[1:2] == ["ok"]:
        return words[2] if len(words) > 2 else ""
    if words[1:2] == ["missing"] and len(words) == 4:
        python, missing = words[2], words[3]
        raise ClusterPythonError(
            f"the cluster's Python ({python}) cannot import {missing}; start the Ray cluster "
            "with recrl's environment first on PATH (`source .venv/bin/activate && ray start "
            "--head`; running .venv/bin/ray alone leaves jobs on the system python)"
        )
    last = logs.strip().splitlines()[-1] if logs.strip() else "no output"
    raise ClusterPythonError(
        f"the cluster could not run recrl's import check (job {job_id} {status}: {last}); "
        "is the cluster's Python the one recrl is installed in?"
    )


def _follow(client, job_id: str, out: TextIO, deadline: float | None) -> str:
    """Stream the job's logs to ``out`` until the job ends; returns what was streamed."""
    chunks: list[str] = []

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            chunks.append(chunk)

    timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        asyncio.run(asyncio.wait_for(tail(), timeout))
    except (asyncio.TimeoutError, TimeoutError):
        raise TimeoutError from None
    except Exception as exc:  # the log stream broke; polling the status still works
        print(f"(log stream interrupted: {exc}; waiting for the job)", file=sys.stderr)
    return "".join(chunks)


def _wait_terminal(client, job_id: str, deadline: float | None) -> str:
    while True:
        status = str(client.get_job_status(job_id))
        if status in TERMINAL_STATUSES:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(_POLL_S)
