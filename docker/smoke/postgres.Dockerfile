# A stand-in for the official `postgres` image, for smoke.sh on machines that reach a Debian
# mirror but no container registry: Debian's PostgreSQL on the local Debian base, with the
# same interface compose.yaml uses (POSTGRES_USER/PASSWORD/DB, data in
# /var/lib/postgresql/data, pg_isready). Build it with the network on:
#   docker build --network host -f docker/smoke/postgres.Dockerfile -t recrl-smoke-postgres \
#       --build-arg BASE_IMAGE=recrl-base:bookworm docker/smoke
ARG BASE_IMAGE=recrl-base:bookworm
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/*
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:${PATH} \
    PGDATA=/var/lib/postgresql/data
EXPOSE 5432
# The entrypoint starts as root to own the volume, then runs the server as `postgres`.
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
