"""Throwaway servers for tests: a PostgreSQL cluster and an MLflow tracking server.

Both run as child processes in their own process group, on 127.0.0.1 and a free port, and
are stopped (the whole group) when their context exits, also when the test fails. A test
that needs a binary which is absent is skipped with the reason; `.ci/run` installs them so
that CI runs these tests.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

CI_PACKAGES = "postgresql chromium"
POSTGRES_USER = "recrl"
POSTGRES_DB = "recrl"


# --- ports and binaries ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing listens on the port; raise naming the port if something still does."""
    deadline = time.monotonic() + timeout
    while port_in_use(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} is still open {timeout:.0f} s after stopping")
        time.sleep(0.2)


def skip_unless(binary: str) -> str:
    """Full path of `binary` (a name on PATH or an absolute path), or skip the test."""
    path = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None
    path = path or shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs: {CI_PACKAGES})")
    return path


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server binaries (/usr/lib/postgresql/N/bin), if any."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        initdb = shutil.which("initdb")
        return Path(initdb).resolve().parent if initdb else None
    newest = max(found, key=lambda p: int(Path(p).parents[1].name.split(".")[0]))
    return Path(newest).parent


def skip_unless_postgres() -> Path:
    """The PostgreSQL bin directory, or skip the test with the reason."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            f"PostgreSQL server binaries are not installed (.ci/run installs: {CI_PACKAGES})"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
    return bin_dir


def chromium_executable() -> str:
    """The system Chromium (Debian's `chromium` package), or skip the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return skip_unless("/usr/bin/chromium")


def mlflow_executable() -> str:
    """The `mlflow` of the interpreter running the tests (the project's venv)."""
    beside = Path(sys.executable).parent / "mlflow"
    return str(beside) if beside.exists() else skip_unless("mlflow")


# --- process groups -----------------------------------------------------------------------


def _stop_group(process: subprocess.Popen, first: int, timeout: float) -> None:
    """Send `first` to the process group, then SIGKILL whatever is left after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("process group %d ignored signal %d; killing it", process.pid, first)
    # Children (workers, backends) may outlive the leader for a moment; the group goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- PostgreSQL ---------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields its SQLAlchemy URI.

    `initdb` and `postgres` refuse to run as root, so under root they run as the `postgres`
    system user, in a directory that user owns (pytest's tmp dirs are private to root); the
    server log is copied to `tmp_path/postgres.log` on exit. Authentication is `trust`: only
    loopback connections are accepted and the cluster lives as long as the test.
    """
    bin_dir = skip_unless_postgres()
    as_postgres = os.geteuid() == 0
    user = pwd.getpwnam("postgres") if as_postgres else None
    run_as = {"user": user.pw_uid, "group": user.pw_gid} if user else {}

    root = Path(tempfile.mkdtemp(prefix="recrl-pg-"))
    if user:
        os.chown(root, user.pw_uid, user.pw_gid)
    log_path, port, process = root / "server.log", free_port(), None
    try:
        process = _start_postgres(bin_dir, root, port, run_as)
        log.info("PostgreSQL %s on 127.0.0.1:%d (pid %d)", bin_dir.parent.name, port, process.pid)
        yield f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{POSTGRES_DB}"
    finally:
        if process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, not waited for.
            _stop_group(process, signal.SIGINT, timeout=30)
            wait_port_closed(port)
        if log_path.exists():
            shutil.copyfile(log_path, Path(tmp_path) / "postgres.log")
        shutil.rmtree(root, ignore_errors=True)


def _start_postgres(bin_dir: Path, root: Path, port: int, run_as: dict) -> subprocess.Popen:
    """initdb + postgres + createdb in `root`; the running server, ready for connections."""
    data, log_path = root / "data", root / "server.log"
    process = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            cwd=root, capture_output=True, text=True, check=True, **run_as,
        )  # fmt: skip
        with open(log_path, "ab") as server_log:
            if run_as:
                os.chown(log_path, run_as["user"], run_as["group"])
            # Unix socket in the data dir, TCP on loopback only; fsync off: a test cluster.
            process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
                 "-c", "fsync=off", "-c", "full_page_writes=off"],
                cwd=root, stdout=server_log, stderr=subprocess.STDOUT,
                start_new_session=True, **run_as,
            )  # fmt: skip
        _wait_postgres(bin_dir, port, process, log_path)
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
             "-U", POSTGRES_USER, POSTGRES_DB],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return process
    except BaseException as error:
        if process is not None:
            _stop_group(process, signal.SIGINT, timeout=30)
        if isinstance(error, subprocess.CalledProcessError):
            raise RuntimeError(
                f"{Path(error.cmd[0]).name} failed ({error.returncode}): {error.stderr}\n"
                f"server log:\n{_log_tail(log_path)}"
            ) from error
        raise


def _wait_postgres(bin_dir: Path, port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {process.returncode} before accepting connections:\n"
                f"{_log_tail(log_path)}"
            )
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres not ready after 60 s:\n{_log_tail(log_path)}")
        time.sleep(0.2)


# --- MLflow tracking server ---------------------------------------------------------------


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, artifacts_dir: Path, port: int | None = None, timeout: float = 180.0
) -> Iterator[str]:
    """`mlflow server` on `backend_uri`, serving artifacts from `artifacts_dir`; yields its URL.

    The server log goes to `artifacts_dir.parent / mlflow-server-PORT.log` (appended, so a
    restarted server on the same port keeps one log). Entering again with the same backend
    and port starts a new server on the same store: the outage tests restart it that way.
    """
    port = port or free_port()
    if port_in_use(port):
        raise RuntimeError(f"port {port} is already in use; cannot start mlflow server on it")
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path = artifacts_dir.parent / f"mlflow-server-{port}.log"
    url = f"http://127.0.0.1:{port}"
    command = [
        mlflow_executable(), "server", "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts_dir),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # MLflow's job runner (a huey consumer process for GenAI jobs) is unused by recrl; off, the
    # server starts sooner and leaves no queue directory in /dev/shm behind.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with open(log_path, "ab") as server_log:
        process = subprocess.Popen(
            command, stdout=server_log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_health(url, process, log_path, timeout)
        log.info("mlflow server %s on %s (pid %d)", backend_uri, url, process.pid)
        yield url
    finally:
        _stop_group(process, signal.SIGTERM, timeout=20)
        wait_port_closed(port)


def _wait_health(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {process.returncode} before answering /health; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"mlflow server at {url} did not answer /health within {timeout:.0f} s; "
                f"log {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.5)
