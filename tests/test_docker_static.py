"""Static checks of docker/: the Dockerfile lints clean, the build context leaves data and
stores out, compose.yaml is valid for docker-compose, and the KubeRay manifests point at the
image build.sh makes, at `recrl` commands that parse, and at resources that add up.

No daemon is needed; `docker/smoke.sh` is the test that builds and runs the image."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from recrl.pipelines.cli import build_parser
from recrl.pipelines.commands.train import train_config

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
KUBERAY = DOCKER / "kuberay"


def _build_sh_tag(*flags: str) -> str:
    out = subprocess.run(
        ["bash", str(DOCKER / "build.sh"), "--print-tag", *flags],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def tags() -> dict[str, str]:
    return {"cpu": _build_sh_tag(), "gpu": _build_sh_tag("--gpu")}


def test_build_sh_tags_follow_the_project_version(tags):
    project_version = re.search(
        r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M
    ).group(1)
    assert tags == {"cpu": f"recrl:{project_version}", "gpu": f"recrl:{project_version}-gpu"}


# --- Dockerfile ---------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: it is in the dev extra, `pip install -e '.[dev]'`"
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "smoke/postgres.Dockerfile"])
def test_dockerfiles_pass_hadolint(dockerfile):
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKER / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    # The linter must really be looking: an unpinned base and apt install are findings.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3008" in result.stdout


def _dockerfile_args(text: str) -> dict[str, str | None]:
    args = {}
    for name, default in re.findall(r"^ARG (\w+)(?:=(\S+))?", text, re.M):
        args.setdefault(name, default or None)
    return args


def test_dockerfile_installs_offline_as_a_non_root_user():
    text = (DOCKER / "Dockerfile").read_text()
    args = _dockerfile_args(text)
    assert args["BASE_IMAGE"] == "python:3.11-slim"
    assert text.count("FROM ${BASE_IMAGE}") == 2  # both stages take the build argument
    assert "pip install --no-cache-dir --no-index --find-links /wheelhouse" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users == ["${UID}"] and args["UID"] == "1000"
    assert "PATH=/opt/recrl/bin:${PATH}" in text  # `recrl` on the PATH
    # Every --build-arg build.sh passes is declared (a typo would be silently ignored).
    passed = set(re.findall(r'--build-arg "(\w+)=', (DOCKER / "build.sh").read_text()))
    assert passed == {"BASE_IMAGE", "WHEELHOUSE", "TORCH_SPEC", "RECRL_VERSION"}
    assert passed <= set(args)


# --- .dockerignore ------------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is out when the last pattern matching it, or one of its parent
    folders, is not a `!` exception; `*` stays inside one folder, `**` crosses folders."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        if any(regex(pattern).match(prefix) for prefix in prefixes):
            verdict = not negate
    return verdict


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_ignore_matcher_follows_docker_rules():
    assert _ignored("a/b/c.pyc", ["**/*.pyc"]) and _ignored("c.pyc", ["**/*.pyc"])
    assert not _ignored("a/b.txt", ["*.txt"])  # `*` does not cross a folder
    assert _ignored("data/x/y", ["data/"]) and not _ignored("database.py", ["data/"])
    assert not _ignored("data/keep", ["data/", "!data/keep"])


@pytest.mark.parametrize(
    "path",
    [
        "data/rc15/train/part-0.parquet",
        "runs/demo/sasrec_ccql/stability.png",
        "mlruns.db",
        "mlruns/0/meta.yaml",
        "mlruns-test.db",
        "mlartifacts/1/abc/artifacts/model.pt",
        ".venv/bin/python",
        "venv/lib/site.py",
        "pipelines/__pycache__/cli.cpython-311.pyc",
        "recrl.egg-info/PKG-INFO",
        ".git/HEAD",
        "benchmarks/results/train.json",
        "tests/fixtures/tiny.parquet",
    ],
)
def test_dockerignore_keeps_data_stores_and_envs_out(path):
    assert _ignored(path, _dockerignore()), f"{path} would be sent to the docker daemon"


@pytest.mark.parametrize(
    "path",
    [
        "docker/wheelhouse/cpu/recrl-0.1.0-py3-none-any.whl",  # COPY ${WHEELHOUSE}
        "tune_configs/smoke_cpu.yaml",  # COPY tune_configs
        "docker/Dockerfile",
        "pipelines/cli.py",
    ],
)
def test_dockerignore_keeps_what_the_build_copies(path):
    assert not _ignored(path, _dockerignore())


# --- compose.yaml -------------------------------------------------------------------------


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    pytest.skip(
        "neither docker-compose nor the docker compose plugin is installed "
        "(.ci/run installs Debian's docker-compose)"
    )


def _compose_config(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "COMPOSE_"))}
    env.update(extra_env)
    return subprocess.run(
        [*_compose_command(), "--file", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=DOCKER,
        timeout=120,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    result = _compose_config({"RAY_AUTH_TOKEN": "test-token"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_is_valid_and_complete(compose, tags):
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "ray-head", "ray-worker"}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", f"{name} has no health check"
    for name in ("mlflow", "ray-head", "ray-worker"):
        assert services[name]["image"] == tags["cpu"]


def test_compose_wires_mlflow_on_postgres_into_the_ray_nodes(compose):
    services = compose["services"]
    mlflow = dict(arg.split("=", 1) for arg in services["mlflow"]["command"] if "=" in arg)
    assert mlflow["--backend-store-uri"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in mlflow["--backend-store-uri"]
    artifacts = mlflow["--artifacts-destination"]
    assert artifacts in _volume_targets(services["mlflow"])  # kept in a volume
    allowed = mlflow["--allowed-hosts"].split(",")  # MLflow matches them with fnmatch
    for host in ("mlflow:5000", "localhost:5000", "127.0.0.1:5000"):
        assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), host
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ray-head", "ray-worker"):
        env = services[name]["environment"]
        assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow['--port']}"
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == "test-token"


def test_compose_mlflow_workers_get_time_to_import(compose):
    """uvicorn's supervisor kills a worker that does not answer within its health-check
    timeout (5 s by default); importing MLflow takes longer than that on a busy machine, so
    the server respawned its workers forever. The options must parse with the installed
    uvicorn and give at least 30 s."""
    import click
    from uvicorn.main import main as uvicorn_cli  # the click command

    mlflow = dict(
        arg.split("=", 1) for arg in compose["services"]["mlflow"]["command"] if "=" in arg
    )
    assert int(mlflow["--workers"]) >= 1
    args = [*shlex.split(mlflow["--uvicorn-opts"]), "mlflow.server.fastapi_app:app"]
    context = uvicorn_cli.make_context("uvicorn", args)
    assert context.params["timeout_worker_healthcheck"] >= 30
    with pytest.raises(click.UsageError):  # the parse is strict: a typo would fail here
        uvicorn_cli.make_context("uvicorn", ["--timeout-worker-healthchek=60", "a:b"])


def test_compose_ray_cluster_has_a_job_server_and_scalable_workers(compose):
    head = compose["services"]["ray-head"]
    worker = compose["services"]["ray-worker"]
    head_args = dict(arg.split("=", 1) for arg in head["command"] if "=" in arg)
    assert "--head" in head["command"] and head_args["--dashboard-host"] == "0.0.0.0"
    assert _container_ports(head) == [int(head_args["--dashboard-port"])]
    worker_args = dict(arg.split("=", 1) for arg in worker["command"] if "=" in arg)
    assert worker_args["--address"] == f"ray-head:{head_args['--port']}"
    # `--scale ray-worker=N` needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_compose_refuses_to_start_without_a_ray_token():
    result = _compose_config({})
    assert result.returncode != 0
    assert "RAY_AUTH_TOKEN" in result.stderr


def _container_ports(service: dict) -> list[int]:
    """docker-compose 1.x prints `HOST_IP:PUBLISHED:TARGET/PROTO`, compose v2 mappings."""
    return [
        int(p["target"]) if isinstance(p, dict) else int(p.rsplit(":", 1)[-1].split("/")[0])
        for p in service.get("ports", [])
    ]


def _volume_targets(service: dict) -> list[str]:
    """docker-compose 1.x prints `SOURCE:TARGET:MODE`, compose v2 mappings."""
    return [
        v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service.get("volumes", [])
    ]


# --- KubeRay ------------------------------------------------------------------------------


def _load(name: str) -> list[dict]:
    return list(yaml.safe_load_all((KUBERAY / name).read_text()))


@pytest.fixture(scope="module")
def cluster_specs() -> dict[str, dict]:
    (cluster,) = _load("raycluster.yaml")
    (job,) = _load("rayjob.yaml")
    assert cluster["apiVersion"] == job["apiVersion"] == "ray.io/v1"
    assert (cluster["kind"], job["kind"]) == ("RayCluster", "RayJob")
    return {"RayCluster": cluster["spec"], "RayJob": job["spec"]["rayClusterSpec"]}


def _groups(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return groups


def test_kuberay_groups_use_the_built_images_and_shared_settings(cluster_specs, tags):
    config = {d["kind"]: d for d in _load("config.yaml")}
    configmap = config["ConfigMap"]
    assert configmap["data"]["MLFLOW_TRACKING_URI"].startswith("http")
    claim = config["PersistentVolumeClaim"]["metadata"]["name"]
    for kind, spec in cluster_specs.items():
        assert spec["rayVersion"] == version("ray"), kind
        assert spec["authOptions"] == {"mode": "token"}
        names = {name for name, _ in _groups(spec)}
        assert {"head", "cpu", "gpu"} <= names, kind
        for name, group in _groups(spec):
            pod = group["template"]["spec"]
            (container,) = pod["containers"]
            gpus = container["resources"]["limits"].get("nvidia.com/gpu")
            assert container["image"] == tags["gpu" if gpus else "cpu"], (kind, name)
            assert (name == "gpu") == bool(gpus), (kind, name)
            assert container["resources"]["requests"] == container["resources"]["limits"]
            assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in container["envFrom"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 1000
            claims = [
                v["persistentVolumeClaim"]["claimName"]
                for v in pod["volumes"]
                if "persistentVolumeClaim" in v
            ]
            assert claims == [claim]
        assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_rayjob_entrypoint_is_recrl_commands_that_parse_and_fit(cluster_specs):
    (job,) = _load("rayjob.yaml")
    commands = [shlex.split(part) for part in job["spec"]["entrypoint"].split("&&")]
    parser = build_parser()
    parsed = []
    for argv in commands:
        assert argv[0] == "recrl", argv
        parsed.append(parser.parse_args(argv[1:]))  # exits (fails the test) on a bad flag
    assert [a.command for a in parsed] == ["demo", "train"]
    demo, train = parsed
    config = train_config(train)  # the TrainConfig the job runs
    assert config.data == f"{demo.workdir}/prepared"  # trains on what the demo prepared
    spec = cluster_specs["RayJob"]
    mounts = {
        m["mountPath"]
        for _, group in _groups(spec)
        for m in group["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    for path in (str(demo.workdir), config.data, str(train.run_dir)):
        assert any(path.startswith(m + "/") for m in mounts), f"{path} is on no shared volume"
    gpu_group = dict(_groups(spec))["gpu"]
    limits = gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    gpus_per_pod = int(limits["nvidia.com/gpu"])
    needed = config.num_learners * config.num_gpus_per_learner
    assert needed <= gpu_group["maxReplicas"] * gpus_per_pod
    assert needed <= gpu_group["minReplicas"] * gpus_per_pod  # no wait for a scale-up


def test_shell_scripts_parse():
    for script in ("build.sh", "smoke.sh", "debian-base.sh", "smoke/postgres-entrypoint.sh"):
        path = DOCKER / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True, timeout=30)
