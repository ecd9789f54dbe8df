#!/usr/bin/env bash
# Makes a Debian bookworm base image with Debian's python3 (3.11, the wheelhouse's python)
# from a Debian mirror with debootstrap + `docker import`, for machines that can reach a
# Debian mirror but no container registry. Pass it to the build with
#   docker/build.sh --base recrl-base:bookworm
#
# usage: docker/debian-base.sh [IMAGE]        (default recrl-base:bookworm)
# env:   DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER (default docker)
set -euo pipefail

image="${1:-recrl-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker="${DOCKER:-docker}"

if [[ $(id -u) -ne 0 ]]; then
    echo "debian-base.sh: debootstrap needs root (it creates device nodes and chroots)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || {
    echo "debian-base.sh: debootstrap is missing: apt-get install -y debootstrap" >&2
    exit 1
}

rootfs="$(mktemp -d "${TMPDIR:-/var/tmp}/recrl-base.XXXXXX")"
trap 'rm -rf --one-file-system "$rootfs"' EXIT
# mktemp makes the folder 0700, and it becomes the image's `/`: no user but root could
# then reach anything.
chmod 755 "$rootfs"

# minbase: apt + dpkg only; python3-venv brings ensurepip so the Dockerfile can make a venv.
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,tini \
    bookworm "$rootfs" "$mirror"

# Keep the image small: apt lists and caches are not needed to install from a wheelhouse.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | "$docker" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$image"
# A non-root user must be able to run python (the recrl image runs as uid 1000).
"$docker" run --rm --network none --user 65534 "$image" python3 -c 'import venv, ensurepip' \
    || { echo "debian-base.sh: $image does not run python3 as a non-root user" >&2; exit 1; }
echo "debian-base.sh: made $image ($("$docker" image inspect -f '{{.Size}}' "$image") bytes)"
