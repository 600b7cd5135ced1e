# syntax=docker/dockerfile:1
#
# Chorus in a container: a release build, then a slim Debian runtime that runs as an
# unprivileged user. The stack around it (two nodes, HAProxy, Redis, PostgreSQL, Prometheus,
# Grafana) is docker-compose.yml; why it is shaped this way: docs/adr/0065-compose-stack-and-load-balancer.md.
#
#   docker build -t chorus .
#   docker run --rm -p 8080:8080 -p 7882-7885:7882-7885/udp -p 7882:7882/tcp \
#     -e CHORUS_AUTH_SECRET=$(openssl rand -hex 32) -e CHORUS_SFU_PUBLIC_IPS=203.0.113.7 chorus
#
# The SFU runs one media worker per core on consecutive UDP ports from 7882; the image fixes
# them at four (sfu.workers in deploy/chorus/chorus.toml) so that the published range is known.
#
# Needs BuildKit (the default builder since Docker 23 and in `docker compose`; with the old
# Python docker-compose 1.x set DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1) for the cache
# mounts below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The crates.io registry and the target directory live in cache mounts: a rebuild after a source
# change recompiles only the workspace crates, not the ~400 dependencies. A cache mount is not
# part of the image, so the binary is copied out in the same step.
RUN --mount=type=cache,id=chorus-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=chorus-target,target=/src/target \
    cargo build --release --locked --bin chorus \
    && cp target/release/chorus /usr/local/bin/chorus

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# curl serves the HEALTHCHECK; ca-certificates lets rediss:// and TLS PostgreSQL URLs verify
# their servers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 chorus \
    && useradd --system --uid 10001 --gid chorus --home-dir /var/lib/chorus --shell /usr/sbin/nologin chorus \
    && install -d -o chorus -g chorus -m 0750 /var/lib/chorus
COPY --from=build /usr/local/bin/chorus /usr/local/bin/chorus
# Container defaults: listen on every interface, data under /var/lib/chorus, JSON logs.
# Secrets and per-node settings come from CHORUS_<SECTION>_<KEY> variables.
COPY deploy/chorus/chorus.toml /etc/chorus/chorus.toml

USER chorus
WORKDIR /var/lib/chorus
VOLUME ["/var/lib/chorus"]

# HTTP (/ws, /socket.io/, REST, /metrics, /health, /ready), SFU media (one UDP port per media
# worker, ICE-TCP on the first number), TURN/STUN (UDP+TCP, TLS only with a certificate).
# TURN relay ports (turn.relay_port_min..max, 49152-65535 by default) must be published too
# when TURN is used; see docker-compose.yml for a narrowed range.
EXPOSE 8080/tcp 7882-7885/udp 7882/tcp 3478/udp 3478/tcp 5349/tcp

# Liveness only: /health never depends on Redis or PostgreSQL (ADR 0060). A load balancer uses
# /ready instead, which turns 503 while the node drains.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["chorus"]
CMD ["serve", "--config", "/etc/chorus/chorus.toml"]
