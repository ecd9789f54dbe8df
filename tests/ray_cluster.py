"""Throwaway Ray clusters for tests: ``ray start`` processes on 127.0.0.1 that the test owns.

Every node is its own ``ray start --block`` process group with ports of its own and the
cluster's private ``--temp-dir``, so a test cluster neither joins nor disturbs the session
Ray runtime of other tests or any other Ray on the machine. ``ray stop`` is never used (it
would stop every Ray here): a node is stopped through its ``--block`` process, and whatever
outlives it is found by `MARKER_ENV` and killed by pid.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RAY_CLI = shutil.which("ray", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
MARKER_ENV = "RECRL_TEST_RAY_HEAD"
"""Set to the cluster's temp dir in the environment of each of its nodes; every process of a
node inherits it, including workers whose titles Ray rewrites and job drivers."""
STOP_TIMEOUT_S = 10
STARTED = "Ray runtime started."
"""What ``ray start`` prints once its node is part of the cluster."""
FAILED = "Traceback (most recent call last)"
"""What ``ray start`` prints when it gives up."""
WORKER_PORTS = 60
"""Worker ports per node (each Ray worker process listens on one)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free now (held open together while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(size: int, avoid: set[int] = frozenset()) -> int:
    """The first port of ``size`` consecutive free ports (none in ``avoid``)."""
    for _ in range(200):
        base = int.from_bytes(os.urandom(2), "big") % 20000 + 20000
        if avoid & set(range(base, base + size)):
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + size):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {size} consecutive free ports")


def processes_of(marker: str) -> list[str]:
    """``"pid: cmdline"`` of live processes (zombies excluded) that name ``marker`` in their
    command line or carry ``MARKER_ENV=marker`` in their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        mine = marker.encode() in cmdline or f"{MARKER_ENV}={marker}".encode() in environ
        if mine and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200].decode(errors='replace')}")
    return found


def ray_env(marker: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without ``RAY_*`` settings (a test cluster must not pick up another
    cluster's address or auth), with the marker and this interpreter's bin first on PATH (the
    nodes' workers and jobs must run the interpreter that has recrl's dependencies)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env[MARKER_ENV] = marker
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


@dataclass
class RayNode:
    """One ``ray start --block`` process and its log."""

    name: str
    process: subprocess.Popen
    log: Path
    start: tuple[str, dict]
    """The `LocalRayCluster` method and keywords that started it (to start it again)."""
    attempt: int = 1
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class LocalRayCluster:
    """A head and any number of worker nodes on 127.0.0.1, all under one private temp dir.

    Use as a context manager, or call `stop` in a ``finally``: it stops every node and checks
    that none of their processes is left (`leftovers`).
    """

    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(dir="/tmp", prefix="rc")))
    env_extra: dict[str, str] = field(
        default_factory=lambda: {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_enable_worker_prestart": "0",
        }
    )
    """Added to the environment of every node and driver: Ray token authentication with a
    token of the cluster's own (`ray start --head` turns token auth on where a token file
    exists, and the other nodes must then present the same token); no prestarted Python
    workers (each imports Ray: on a loaded 2-core machine they delay the raylet's
    registration past the 30 s that ``ray start`` allows)."""
    nodes: list[RayNode] = field(default_factory=list)
    gcs_port: int | None = None
    dashboard_port: int | None = None
    _used: set[int] = field(default_factory=set)

    @property
    def marker(self) -> str:
        return str(self.temp_dir)

    @property
    def address(self) -> str:
        """GCS address for ``ray.init`` / ``RAY_ADDRESS`` / ``ray start --address``."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_address(self) -> str:
        """Job server address (``ray job submit --address``); needs ``dashboard=True``."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of a process that belongs to this cluster (a node, or a driver the
        test starts): counted by `leftovers` and killed by `stop` if still alive."""
        return ray_env(self.marker, {**self.env_extra, **(extra or {})})

    def start_head(
        self,
        *,
        num_cpus: float,
        resources: dict[str, float] | None = None,
        dashboard: bool = False,
        object_store_mb: int = 256,
        attempt: int = 1,
    ) -> RayNode:
        if self.gcs_port is not None:
            raise RuntimeError("the cluster already has a head")
        options = {"num_cpus": num_cpus, "resources": resources, "dashboard": dashboard,
                   "object_store_mb": object_store_mb}  # fmt: skip
        start = ("start_head", options)
        gcs, dashboard_port, client = self._ports(3)
        self.gcs_port, self.dashboard_port = gcs, dashboard_port
        # The head's dashboard process runs (minimal) even without the UI: it always gets a
        # port of its own, not the default 8265 that another Ray here may hold.
        args = [
            "--head", "--port", str(gcs), "--ray-client-server-port", str(client),
            "--disable-usage-stats", "--include-dashboard", str(dashboard).lower(),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        ]  # fmt: skip
        return self._launch("head", args, num_cpus, resources, object_store_mb, start, attempt)

    def add_worker(
        self,
        *,
        num_cpus: float,
        resources: dict[str, float] | None = None,
        object_store_mb: int = 256,
        attempt: int = 1,
    ) -> RayNode:
        if self.gcs_port is None:
            raise RuntimeError("start the head first")
        name = f"worker{len(self.nodes)}"
        start = ("add_worker", {"num_cpus": num_cpus, "resources": resources,
                                "object_store_mb": object_store_mb})  # fmt: skip
        return self._launch(name, ["--address", self.address], num_cpus, resources,
                            object_store_mb, start, attempt)  # fmt: skip

    def _ports(self, count: int) -> list[int]:
        ports = [p for p in free_ports(count + len(self._used)) if p not in self._used][:count]
        self._used.update(ports)
        return ports

    def _launch(self, name, args, num_cpus, resources, object_store_mb, start, attempt):
        import json

        (node_manager, object_manager, agent_listen, agent_grpc, metrics,
         runtime_env_agent) = self._ports(6)  # fmt: skip
        workers = free_port_range(WORKER_PORTS, self._used)
        self._used.update(range(workers, workers + WORKER_PORTS))
        command = [
            RAY_CLI, "start", "--block", *args,
            "--node-ip-address", "127.0.0.1",
            "--num-cpus", str(num_cpus),
            "--num-gpus", "0",
            "--resources", json.dumps(resources or {}),
            "--object-store-memory", str(object_store_mb * 1024 * 1024),
            "--node-manager-port", str(node_manager),
            "--object-manager-port", str(object_manager),
            "--dashboard-agent-listen-port", str(agent_listen),
            "--dashboard-agent-grpc-port", str(agent_grpc),
            "--metrics-export-port", str(metrics),
            "--runtime-env-agent-port", str(runtime_env_agent),
            "--min-worker-port", str(workers),
            "--max-worker-port", str(workers + WORKER_PORTS - 1),
            "--temp-dir", str(self.temp_dir),
            # Worker logs stay in the temp dir: one Python process less per node.
            "--include-log-monitor", "false",
        ]  # fmt: skip
        log = self.temp_dir / f"{name}.{attempt}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                start_new_session=True,
            )  # fmt: skip
        node = RayNode(name, process, log, start, attempt)
        self.nodes.append(node)
        return node

    def wait_until_started(self, attempt_timeout_s: float = 150, attempts: int = 4) -> None:
        """Block until every node's ``ray start`` reports "Ray runtime started.", which it
        prints once its raylet is registered with the GCS (so the cluster has all nodes).
        Read from the logs: asking the GCS would cost a Ray import per try.

        A node whose ``ray start`` gave up or hangs past ``attempt_timeout_s`` (it allows
        its raylet 30 s to register and the raylet its agents 15 s, which a loaded machine
        can exceed) is started again, up to ``attempts`` times, after its process group is
        killed so that no half-started raylet joins later. A head is started again on new
        ports: start it alone, and workers once it is up."""
        waiting = [n for n in self.nodes if STARTED not in n.log.read_text()]
        while waiting:
            for node in list(waiting):
                log = node.log.read_text()
                if STARTED in log:
                    waiting.remove(node)
                    continue
                # `ray start` may log its failure and then linger while it shuts down.
                overdue = time.monotonic() - node.started_at > attempt_timeout_s
                if node.process.poll() is None and FAILED not in log and not overdue:
                    continue
                if node.attempt >= attempts or (node.name == "head" and len(self.nodes) > 1):
                    raise RuntimeError(
                        f"`ray start` of {node.name} failed {node.attempt} time(s); the last "
                        f"(exit code {node.process.poll()}):\n{log[-4000:]}"
                    )
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.process.pid, signal.SIGKILL)
                self.nodes.remove(node)
                waiting.remove(node)
                if node.name == "head":
                    self.gcs_port = None
                method, kwargs = node.start
                waiting.append(getattr(self, method)(**kwargs, attempt=node.attempt + 1))
            time.sleep(0.5)

    def leftovers(self) -> list[str]:
        """Processes of this cluster still alive."""
        return processes_of(self.marker)

    def stop(self) -> list[str]:
        """Stop every node (workers first), then kill by pid whatever of the cluster is left;
        removes the temp dir. Returns the processes still alive after all that (normally
        none: callers assert it)."""
        try:
            for node in reversed(self.nodes):
                node.process.terminate()  # `--block` then stops the node's processes
            for node in reversed(self.nodes):
                try:
                    node.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
            _wait_until_gone(self.marker, 10)
            for node in self.nodes:  # what outlived the leader in its group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.process.pid, signal.SIGKILL)
            for line in processes_of(self.marker):  # and outside it (drivers, job sessions)
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
            _wait_until_gone(self.marker, 10)
            return self.leftovers()
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self

    def __exit__(self, *exc) -> None:
        left = self.stop()
        if left and exc[0] is None:
            raise AssertionError(f"processes of the test's Ray cluster are still alive: {left}")


def _wait_until_gone(marker: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while processes_of(marker) and time.monotonic() < deadline:
        time.sleep(0.3)
