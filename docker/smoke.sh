#!/usr/bin/env bash
# Builds the recrl image and runs it for real, on a machine that reaches no container
# registry: a Docker daemon on a private socket (started here when none answers there), a
# Debian base made with debootstrap (debian-base.sh) passed through the BASE_IMAGE build
# argument, then inside the image
#   1. `recrl --help`,
#   2. the README's main job, `recrl demo`,
#   3. a Ray head (host network, free ports, token auth) to which a training job is submitted
#      from outside with the host's `ray job submit`, polled until SUCCEEDED.
# Every container it starts is removed at the end, and the daemon stopped if it started it,
# also on failure.
#
# usage: docker/smoke.sh            (as root: dockerd, debootstrap)
# env:   SMOKE_STATE (/var/tmp/recrl-docker: the daemon's socket, data and log),
#        BASE_IMAGE (recrl-base:bookworm; made when absent), SMOKE_SKIP_WHEELS=1 (reuse
#        docker/wheelhouse/cpu), SMOKE_DEMO_STEPS (400, the demo's default),
#        SMOKE_TRAIN_STEPS (60), SMOKE_JOB_TIMEOUT_S (1200), SMOKE_COMPOSE=0 (skip the
#        compose stack), SMOKE_STEPS (build,help,demo,job,compose: the steps to run; without
#        `build` the image must exist, e.g. SMOKE_STEPS=compose to recheck the stack alone),
#        SMOKE_KEEP_CACHE=1 (keep the build cache), RAY (.venv/bin/ray)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

state="${SMOKE_STATE:-/var/tmp/recrl-docker}"
base="${BASE_IMAGE:-recrl-base:bookworm}"
demo_steps="${SMOKE_DEMO_STEPS:-400}"
train_steps="${SMOKE_TRAIN_STEPS:-60}"
job_timeout_s="${SMOKE_JOB_TIMEOUT_S:-1200}"
ray_cli="${RAY:-$repo/.venv/bin/ray}"
python="${PYTHON:-$repo/.venv/bin/python}"
export DOCKER_HOST="unix://$state/docker.sock"
# With vfs every container is a full copy of the 2 GB image: on a loaded machine, creating
# (and removing) the compose stack's containers outlasts docker-compose's 60 s client timeout.
export COMPOSE_HTTP_TIMEOUT="${COMPOSE_HTTP_TIMEOUT:-900}"

run_id="smoke-$$"
volume="recrl-$run_id"
containers=()
compose_project=""
started_daemon=0
t0=$(date +%s)
steps=",${SMOKE_STEPS:-build,help,demo,job,compose},"
[[ "${SMOKE_COMPOSE:-1}" == 1 ]] || steps="${steps/,compose,/,}"
step() { [[ "$steps" == *",$1,"* ]]; }
build_s=skipped demo_s=skipped job_s=skipped compose_s=skipped

log() { echo "smoke.sh [$(($(date +%s) - t0))s] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

cleanup() {
    local rc=$?
    set +e
    for c in "${containers[@]}"; do
        docker rm -f "$c" >/dev/null 2>&1
    done
    docker volume rm -f "$volume" >/dev/null 2>&1
    if [[ -n "$compose_project" ]]; then
        "${compose[@]}" down --volumes --timeout 20 >/dev/null 2>&1
    fi
    # Dangling images (earlier builds of the tag, the install stage): vfs stores each one
    # as a full copy. SMOKE_KEEP_CACHE=1 keeps them, so that a rerun skips the install.
    if [[ "${SMOKE_KEEP_CACHE:-0}" != 1 ]]; then
        docker image prune -f >/dev/null 2>&1
    fi
    if [[ "$started_daemon" == 1 ]]; then
        local pid
        pid="$(cat "$state/dockerd.pid" 2>/dev/null)"
        if [[ -n "$pid" ]]; then
            kill "$pid" 2>/dev/null
            for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        fi
        log "stopped the daemon it started (pid $pid)"
    fi
    if [[ $rc == 0 ]]; then log "PASSED in $(($(date +%s) - t0)) s"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. the daemon -----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null || die "no dockerd: apt-get install -y docker.io"
    mkdir -p "$state"
    log "starting dockerd on $DOCKER_HOST (vfs, no bridge, no iptables)"
    # vfs: works on any filesystem (no overlay mounts in this sandbox); --bridge=none and
    # --iptables=false: no network setup is allowed here, so containers use host or none.
    setsid dockerd --storage-driver vfs --iptables=false --bridge=none \
        --data-root "$state/root" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
        -H "$DOCKER_HOST" >"$state/dockerd.log" 2>&1 &
    started_daemon=1
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not answer in 60 s; see $state/dockerd.log"
fi
# A client without buildx cannot use BuildKit; the classic builder reads the context-root
# .dockerignore just the same.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

# --- 2. base and image -------------------------------------------------------------------
if ! docker image inspect "$base" >/dev/null 2>&1; then
    log "making the base image $base with debootstrap"
    DOCKER=docker docker/debian-base.sh "$base"
fi
tag="$(docker/build.sh --print-tag)"
if step build; then
    build_flags=(--base "$base")
    [[ "${SMOKE_SKIP_WHEELS:-0}" == 1 ]] && build_flags+=(--skip-wheels)
    log "building $tag on $base"
    tb=$(date +%s)
    # --network none: the build must not need the network.
    docker/build.sh "${build_flags[@]}" -- --network none
    build_s=$(($(date +%s) - tb))
    log "built $tag in ${build_s}s"
else
    docker image inspect "$tag" >/dev/null 2>&1 || die "no image $tag, and SMOKE_STEPS has no build"
    log "using the existing $tag, built $(docker image inspect -f '{{.Created}}' "$tag")"
fi
size=$(docker image inspect -f '{{.Size}}' "$tag")
log "image $tag: $((size / 1000000)) MB"
token="$("$python" -c 'import secrets; print(secrets.token_hex(16))')"
docker volume create "$volume" >/dev/null

job_status() {
    # Ray's SDK rather than `ray job status`, whose wording differs per status.
    "$python" - "$address" "$job_id" 2>/dev/null <<'PY' || echo UNREACHABLE
import sys
from ray.job_submission import JobSubmissionClient

print(JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)
PY
}
# Poll job $job_id at $address until it succeeds; print its log tail and die otherwise.
wait_for_job() {
    local label=$1 started status
    started=$(date +%s)
    while true; do
        status="$(job_status)"
        case "$status" in
            SUCCEEDED) return 0 ;;
            FAILED|STOPPED)
                "$ray_cli" job logs --address "$address" "$job_id" | tail -40
                die "the $label ended $status" ;;
        esac
        (($(date +%s) - started < job_timeout_s)) \
            || die "the $label is still '$status' after ${job_timeout_s}s"
        sleep 5
    done
}

# --- 3. recrl --help ---------------------------------------------------------------------
if step help; then
    # One container for both (with vfs each container is a full copy of the image).
    help_out="$(docker run --rm --network none "$tag" sh -c 'id -u && recrl --help')"
    for cmd in generate prepare train demo tune submit; do
        grep -q "^  *$cmd " <<<"$help_out" || die "recrl --help in the image does not list '$cmd'"
    done
    user="$(head -n 1 <<<"$help_out")"
    [[ "$user" =~ ^[0-9]+$ && "$user" != 0 ]] || die "the image runs as '$user', not a plain user"
    log "recrl --help lists its subcommands; the image runs as uid $user"
fi

# --- 4. the README's main job ------------------------------------------------------------
if step demo; then
    demo_name="recrl-demo-$run_id"
    containers+=("$demo_name")
    td=$(date +%s)
    # --network none: the demo needs nothing outside the container (local Ray, sqlite MLflow).
    docker run --name "$demo_name" --network none --shm-size 1g \
        -v "$volume:/home/ray/data" "$tag" \
        recrl demo --workdir /home/ray/data/demo --steps "$demo_steps" | tee "$state/demo.log"
    demo_s=$(($(date +%s) - td))
    grep -q "sasrec_ccql after $demo_steps updates - test split:" "$state/demo.log" \
        || die "recrl demo printed no test metrics"
    grep -q "^rows: .* input = .* kept + .* dropped" "$state/demo.log" \
        || die "recrl demo printed no dataset statistics"
    docker rm "$demo_name" >/dev/null
    log "recrl demo passed in ${demo_s}s"
fi

# --- 5. a Ray head in a container, a job submitted from outside --------------------------
if step job; then
    step demo || die "the job step trains on the demo step's data: add demo to SMOKE_STEPS"
    gcs_port=$(free_port)
    dash_port=$(free_port)
    head_name="recrl-head-$run_id"
    containers+=("$head_name")
    # Host network (no bridge here): every port Ray would take by default is chosen free, as
    # other Ray clusters may run on this machine.
    docker run -d --init --name "$head_name" --network host --shm-size 1g \
        -v "$volume:/home/ray/data" \
        -e RAY_AUTH_MODE=token -e RAY_AUTH_TOKEN="$token" \
        -e MLFLOW_TRACKING_URI=sqlite:////home/ray/data/mlruns.db \
        "$tag" \
        ray start --head --block --node-ip-address 127.0.0.1 --num-cpus 4 \
        --port "$gcs_port" --dashboard-host 127.0.0.1 --dashboard-port "$dash_port" \
        --node-manager-port "$(free_port)" --object-manager-port "$(free_port)" \
        --metrics-export-port "$(free_port)" --dashboard-agent-listen-port "$(free_port)" \
        --dashboard-agent-grpc-port "$(free_port)" --runtime-env-agent-port "$(free_port)" \
        --ray-client-server-port "$(free_port)" >/dev/null
    address="http://127.0.0.1:$dash_port"
    log "Ray head in $head_name, job server $address"
    for _ in $(seq 120); do
        "$python" -c "import urllib.request as u; u.urlopen('$address/api/gcs_healthz', timeout=5)" \
            >/dev/null 2>&1 && break
        docker inspect -f '{{.State.Running}}' "$head_name" | grep -q true \
            || { docker logs "$head_name" | tail -30; die "the Ray head exited"; }
        sleep 2
    done

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token"
    job_id="recrl-$run_id"
    tj=$(date +%s)
    "$ray_cli" job submit --address "$address" --submission-id "$job_id" --no-wait -- \
        recrl train --variant sasrec_ccql --data /home/ray/data/demo/prepared \
        --steps "$train_steps" --eval-interval "$((train_steps / 2))" --num-learners 1 \
        --run-dir /home/ray/data/runs/job
    wait_for_job job
    job_s=$(($(date +%s) - tj))
    "$ray_cli" job logs --address "$address" "$job_id" >"$state/job.log"
    grep -q "sasrec_ccql after $train_steps updates - test split:" "$state/job.log" \
        || die "the job's logs hold no test metrics"
    docker exec "$head_name" test -s /home/ray/data/runs/job/stability.png \
        || die "the job wrote no stability figure"
    log "job $job_id SUCCEEDED in ${job_s}s"

    docker rm -f "$head_name" >/dev/null
fi

# --- 6. docker/compose.yaml: head, two workers, MLflow on PostgreSQL -----------------------
if step compose; then
    command -v docker-compose >/dev/null || die "no docker-compose: apt-get install docker-compose"
    pg_image="${POSTGRES_IMAGE:-recrl-smoke-postgres}"
    if ! docker image inspect "$pg_image" >/dev/null 2>&1; then
        log "building $pg_image (Debian's PostgreSQL; no registry to pull postgres from)"
        docker build --network host -f docker/smoke/postgres.Dockerfile -t "$pg_image" \
            --build-arg BASE_IMAGE="$base" docker/smoke
    fi
    tc=$(date +%s)
    mlflow_port=$(free_port)
    compose=(env RECRL_IMAGE="$tag" POSTGRES_IMAGE="$pg_image" RAY_AUTH_TOKEN="$token"
        DASHBOARD_PORT="$(free_port)" MLFLOW_PORT="$mlflow_port"
        docker-compose --project-name "recrl-$run_id" --file docker/compose.yaml)
    compose_project="recrl-$run_id"  # from here on, cleanup takes the stack down
    dash="$("${compose[@]}" config | sed -n 's/.*127.0.0.1:\([0-9]*\):8265.*/\1/p')"
    "${compose[@]}" up -d --scale ray-worker=2 || die "docker-compose up failed"
    ids=($("${compose[@]}" ps -q))
    ((${#ids[@]} == 5)) || die "compose started ${#ids[@]} containers, not 5"
    health() { docker inspect -f '{{.State.Health.Status}}' "${ids[@]}" | sort | uniq -c; }
    for _ in $(seq 150); do
        [[ "$(health)" =~ ^\ *5\ healthy$ ]] && break
        sleep 4
    done
    [[ "$(health)" =~ ^\ *5\ healthy$ ]] || { "${compose[@]}" ps; die "not healthy: $(health)"; }
    log "compose: 5 containers healthy after $(($(date +%s) - tc))s"
    address="http://127.0.0.1:$dash"
    job_id="recrl-compose-$run_id"
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$token"
    "$ray_cli" job submit --address "$address" --submission-id "$job_id" --no-wait -- \
        recrl demo --workdir /home/ray/data/demo --steps "$train_steps"
    wait_for_job "compose job"
    # The run is in PostgreSQL behind the MLflow server, with its metric history.
    "$python" - "http://127.0.0.1:$mlflow_port" <<'PY' || die "the run is not on the MLflow server"
import sys

from mlflow.tracking import MlflowClient

client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("recrl")
runs = client.search_runs([experiment.experiment_id])
assert len(runs) == 1 and runs[0].info.status == "FINISHED", runs
history = client.get_metric_history(runs[0].info.run_id, "loss/total")
assert history, f"no loss/total in {sorted(runs[0].data.metrics)}"
artifacts = [a.path for a in client.list_artifacts(runs[0].info.run_id)]
assert "stability.png" in artifacts, artifacts  # uploaded through the server to its volume
print(f"MLflow run {runs[0].info.run_id}: {len(history)} loss/total points, {artifacts}")
PY
    nodes="$("${compose[@]}" exec -T ray-head python3 -c \
        'import ray; ray.init(logging_level="ERROR"); print(sum(n["Alive"] for n in ray.nodes()))')"
    [[ "$(tr -d '[:space:]' <<<"$nodes")" == 3 ]] || die "the compose cluster has $nodes nodes, not 3"
    compose_s=$(($(date +%s) - tc))
    log "compose: job $job_id SUCCEEDED on 3 nodes, run on MLflow/PostgreSQL (${compose_s}s)"
fi

secs() { if [[ $1 == skipped ]]; then echo skipped; else echo "${1}s"; fi; }
log "summary: image $tag $((size / 1000000)) MB, build $(secs "$build_s"), demo $(secs "$demo_s")," \
    "job $(secs "$job_s"), compose $(secs "$compose_s")"
