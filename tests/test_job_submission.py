"""Ray job submission end to end: a local Ray head started by the test on 127.0.0.1, a real
``recrl`` job submitted through `recrl.pipelines.jobs.submit`, polled to SUCCEEDED, its logs
retrieved, and the head stopped afterwards.

The head (`tests.ray_cluster`) runs as its own ``ray start --head --block`` process group with
its own ports and temp dir, so it neither joins nor disturbs the session Ray runtime of other
tests or any other Ray on the machine; ``ray stop`` is never used (it would stop every Ray here).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from pathlib import Path

import pytest
from recrl.envs.generated_dataset import write_generated_dataset
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.pipelines import cli, jobs

from tests.ray_cluster import RAY_CLI, LocalRayCluster, RayNode, free_ports

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90
JOB_TIMEOUT_S = 240


def needs_ray_head(test):
    """Starts a Ray head: marked `ray`, skipped only where the `ray` command is missing."""
    skip = pytest.mark.skipif(RAY_CLI is None, reason="the `ray` command line is not installed")
    return pytest.mark.ray(skip(test))


@pytest.fixture(scope="module")
def ray_head():
    """The dashboard address of a fresh single-node Ray cluster, stopped afterwards.

    It uses Ray token authentication (the default of `ray start --head` where a token
    exists) with a token of its own, which this process then presents.
    """
    cluster = LocalRayCluster()
    monkeypatch = pytest.MonkeyPatch()
    for key in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.env_extra["RAY_AUTH_TOKEN"])
    try:
        head = cluster.start_head(num_cpus=2, dashboard=True)
        _wait_for_job_server(cluster.dashboard_address, head)
        assert cluster.leftovers(), "the leftover check below would see nothing"
        yield cluster.dashboard_address
    finally:
        try:
            left = cluster.stop()
            assert not left, f"processes of the test's Ray head are still alive: {left}"
        finally:
            monkeypatch.undo()


def _wait_for_job_server(address: str, head: RayNode) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if head.process.poll() is not None:
            pytest.fail(f"`ray start --head` exited ({head.process.returncode}):\n"
                        f"{head.log.read_text()}")  # fmt: skip
        try:
            jobs.connect(address)
            return
        except jobs.JobSubmissionError as exc:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no job server after {START_TIMEOUT_S} s: {exc}\n{head.log.read_text()}"
                )
        time.sleep(1.0)


@needs_ray_head
def test_submitted_recrl_job_succeeds_and_returns_its_logs(ray_head, tmp_path, capsys):
    out = tmp_path / "gen"
    outcome = jobs.submit(
        ray_head,
        ["generate", "--out", str(out), "--sessions", "300", "--items", "100", "--users", "50"],
        working_dir=REPO,
        timeout_s=JOB_TIMEOUT_S,
    )
    assert outcome.status == "SUCCEEDED" and outcome.succeeded
    assert outcome.job_id.startswith("raysubmit_")
    # The job wrote where it was told (an absolute path: the cluster shares this disk).
    assert list((out / "sessions").glob("*.parquet"))
    assert (out / "ground_truth.npz").is_file()
    generator = json.loads((out / "generator.json").read_text())
    assert generator["config"]["n_sessions"] == 300
    # Its logs came back, and were streamed to stdout as they came.
    assert outcome.logs.strip()
    assert "300" in outcome.logs
    assert outcome.logs.strip().splitlines()[-1] in capsys.readouterr().out

    # Through the command line; a failing command is reported with its last log lines.
    code = cli.main(["submit", "--address", ray_head, "--working-dir", str(REPO),
                     "--", "stats", str(tmp_path / "no_such_dataset")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED" in err and "last 30 log lines" in err
    assert "no_such_dataset" in err.split("last 30 log lines", 1)[1]


@needs_ray_head
def test_prepare_then_train_as_jobs(ray_head, tmp_path):
    """The workflow of the README on the cluster: prepare (Ray Data on the cluster the job
    joins through RAY_ADDRESS), then a tiny training run."""
    gen, prepared, run_dir = tmp_path / "gen", tmp_path / "prepared", tmp_path / "run"
    run = functools.partial(
        jobs.submit, ray_head, working_dir=REPO, follow_logs=False, timeout_s=JOB_TIMEOUT_S
    )
    # Generated here, not as a job: the first test covers `generate` on the cluster.
    write_generated_dataset(
        SessionGeneratorConfig(n_sessions=300, n_items=100, n_users=50, seed=0), gen
    )
    prep = run(["prepare", "--source", "generic", "--input", str(gen / "sessions"),
                "--output", str(prepared)])  # fmt: skip
    assert prep.succeeded
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["rows"]["kept"] > 0 and list((prepared / "train").glob("*.parquet"))
    trained = run(["train", "--variant", "sasrec", "--data", str(prepared), "--steps", "20",
                   "--eval-interval", "10", "--no-mlflow", "--set", "hidden_size=16",
                   "--set", "batch_size=32", "--run-dir", str(run_dir)])  # fmt: skip
    assert trained.succeeded
    assert "sasrec after 20 updates - test split:" in trained.logs
    assert "ndcg_20_purchase" in trained.logs
    assert any(run_dir.iterdir())


@needs_ray_head
def test_a_job_runs_the_submitted_checkout_not_the_installed_recrl(ray_head, tmp_path):
    """The cluster's Python has recrl installed (this checkout, editable); a job submitted
    from an edited copy runs the copy's code: ``recrl.pipelines`` resolves to the uploaded
    folder's ``pipelines/``."""
    copy = tmp_path / "checkout"
    for folder in ("recrl", "pipelines", "models", "envs"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    cli_file = copy / "pipelines" / "cli.py"
    original = cli.build_parser().description
    cli_file.write_text(cli_file.read_text().replace(original, "EDITED-IN-THE-COPY"))
    assert "EDITED-IN-THE-COPY" in cli_file.read_text()

    outcome = jobs.submit(ray_head, ["--help"], working_dir=copy, follow_logs=False,
                          timeout_s=JOB_TIMEOUT_S)  # fmt: skip
    assert outcome.succeeded
    assert "EDITED-IN-THE-COPY" in outcome.logs
    assert original not in outcome.logs


def test_runtime_env_excludes_data_and_forwards_absolute_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    env = jobs.runtime_env(".", extra_env={"A": 1})
    assert env["working_dir"] == "."
    for pattern in (".venv/", ".git/", "data/", "runs/", "mlruns.db", "mlartifacts/", "*.parquet"):
        assert pattern in env["excludes"]
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert env["env_vars"]["A"] == "1"
    assert jobs.entrypoint(["train", "--set", "x=a b"]) == (
        "python -m recrl.pipelines.cli train --set 'x=a b'"
    )


def test_address_resolution_and_unreachable_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert jobs.resolve_address() == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "head:8265")
    assert jobs.resolve_address() == "http://head:8265"
    assert jobs.resolve_address("https://x:1/") == "https://x:1"
    (port,) = free_ports(1)  # nothing listens there
    with pytest.raises(
        jobs.ClusterUnreachableError, match=f"(?s)127.0.0.1:{port}.*ray start --head"
    ):
        jobs.connect(f"127.0.0.1:{port}")


def test_auth_headers_follow_ray_token_settings(monkeypatch, tmp_path):
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert jobs.auth_headers() == {}
    (tmp_path / "token").write_text("abc\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert jobs.auth_headers() == {"Authorization": "Bearer abc"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert jobs.auth_headers() == {"Authorization": "Bearer xyz"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs.auth_headers() == {}


class _ProbeOnlyClient:
    """A job server whose Python lacks pyarrow: the probe job fails with its line."""

    def __init__(self):
        self.submitted = []

    def submit_job(self, entrypoint, runtime_env):
        self.submitted.append(entrypoint)
        return f"raysubmit_{len(self.submitted)}"

    def get_job_status(self, job_id):
        return "FAILED"

    def get_job_logs(self, job_id):
        return ("RECRL_PROBE missing /usr/bin/python3 pyarrow: ModuleNotFoundError: No module "
                "named 'pyarrow'\n")  # fmt: skip


def test_submit_to_a_cluster_whose_python_cannot_import_recrl_says_so(monkeypatch, capsys):
    """A cluster started with `.venv/bin/ray start` outside the venv runs
    jobs with the system python; the probe job finds it before the real job is submitted."""
    from tests.hostile import assert_user_error, run_recrl

    client = _ProbeOnlyClient()
    monkeypatch.setattr(jobs, "connect", lambda address=None: client)
    outcome = run_recrl(capsys, "submit", "--address", "http://127.0.0.1:1", "--working-dir",
                        REPO, "--", "stats", "x")  # fmt: skip
    line = assert_user_error(outcome, "/usr/bin/python3", "cannot import pyarrow", "activate")
    assert "Traceback" not in line
    assert client.submitted == ["python -m recrl.pipelines.job_probe"]  # the real job never went


def test_the_probe_reports_its_python():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "recrl.pipelines.job_probe"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == f"RECRL_PROBE ok {sys.executable}"
