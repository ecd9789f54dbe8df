#!/usr/bin/env bash
# Builds the recrl image: first a wheelhouse (the project's wheel and every dependency,
# pinned to the versions of the local virtualenv, taken from pip's indexes and caches),
# then `docker build` with the repository as context, so the build needs no network.
#
# usage: docker/build.sh [--gpu] [--base IMAGE] [--tag TAG] [--skip-wheels] [--print-tag]
#                        [-- DOCKER_BUILD_ARGS...]
#   --gpu          a CUDA torch instead of the CPU build: PyPI's torch==$TORCH_VERSION (CUDA
#                  13.0), or torch==$TORCH_VERSION+$CUDA_TAG from download.pytorch.org when
#                  CUDA_TAG is set (cu126, cu128, ...); tag recrl:VERSION-gpu
#   --base IMAGE   the base image (default python:3.11-slim; a Debian bookworm image with
#                  python3 + python3-venv works too, see debian-base.sh)
#   --tag TAG      the image tag (default recrl:VERSION[-gpu], VERSION from pyproject.toml)
#   --skip-wheels  reuse the wheelhouse as it is
#   --wheels-only  make the wheelhouse, do not build
#   --print-tag    print the tag and exit
# env: PYTHON (default .venv/bin/python), DOCKER (default docker), TORCH_VERSION (2.13.0),
#      CUDA_TAG (unset), IMAGE_NAME (recrl)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

python="${PYTHON:-.venv/bin/python}"
docker="${DOCKER:-docker}"
torch_version="${TORCH_VERSION:-2.13.0}"
cuda_tag="${CUDA_TAG:-}"
image_name="${IMAGE_NAME:-recrl}"
base="python:3.11-slim"
variant=cpu
tag=""
skip_wheels=0
wheels_only=0
print_tag=0
build_args=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --gpu) variant=gpu ;;
        --base) base="${2:?--base needs an image}"; shift ;;
        --tag) tag="${2:?--tag needs a tag}"; shift ;;
        --skip-wheels) skip_wheels=1 ;;
        --wheels-only) wheels_only=1 ;;
        --print-tag) print_tag=1 ;;
        --) shift; build_args=("$@"); break ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
[[ -n "$version" ]] || { echo "build.sh: no version in pyproject.toml" >&2; exit 1; }
if [[ -z "$tag" ]]; then
    tag="$image_name:$version"
    [[ "$variant" == gpu ]] && tag="$tag-gpu"
fi
if [[ "$print_tag" == 1 ]]; then
    echo "$tag"
    exit 0
fi

pip_env=()
index_args=()
if [[ "$variant" == gpu ]]; then
    if [[ -n "$cuda_tag" ]]; then
        torch_spec="torch==$torch_version+$cuda_tag"
        index_args=(--extra-index-url "https://download.pytorch.org/whl/$cuda_tag")
    else
        # PyPI's Linux torch wheel is the CUDA build (CUDA 13.0 for 2.13, its CUDA
        # libraries as nvidia-*/cuda-* wheels).
        torch_spec="torch==$torch_version"
    fi
    # No local pip configuration: a find-links folder holding torch+cpu would win, as
    # `torch==2.13.0` also matches 2.13.0+cpu.
    pip_env=(env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null)
else
    torch_spec="torch==$torch_version+cpu"
fi
wheelhouse="docker/wheelhouse/$variant"

if [[ "$skip_wheels" == 0 ]]; then
    [[ -x "$python" ]] || {
        echo "build.sh: no python at $python: run \`make install\` or set PYTHON" >&2
        exit 1
    }
    mkdir -p "$wheelhouse"
    # The image gets exactly the versions the local environment was tested with; torch and
    # its CUDA libraries are left to the variant's own index.
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    "$python" -m pip freeze --exclude-editable \
        | grep -v -E '^(recrl|torch|triton|nvidia-[a-z0-9-]+)(==| @)' >"$constraints"
    # psycopg: the MLflow server of compose.yaml keeps its runs in PostgreSQL.
    # --find-links on the wheelhouse itself: a second run reuses what the first fetched.
    "${pip_env[@]}" "$python" -m pip wheel --no-build-isolation --wheel-dir "$wheelhouse" \
        --find-links "$wheelhouse" "${index_args[@]}" --constraint "$constraints" \
        . "$torch_spec" "psycopg[binary]"
    echo "build.sh: wheelhouse $wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels," \
        "$(du -sh "$wheelhouse" | cut -f1)"
fi
[[ "$wheels_only" == 1 ]] && exit 0

"$docker" build \
    --file docker/Dockerfile \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "WHEELHOUSE=$wheelhouse" \
    --build-arg "TORCH_SPEC=$torch_spec" \
    --build-arg "RECRL_VERSION=$version" \
    --tag "$tag" \
    "${build_args[@]}" \
    .
echo "build.sh: built $tag"
