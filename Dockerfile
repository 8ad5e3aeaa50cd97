# syntax=docker/dockerfile:1
# One multi-stage build for the Feige container binaries: `local-runtime` (the API with
# FEIGE_ROLE=api, or everything with FEIGE_ROLE=all) and `push-tier`. The runtime image holds
# both; compose / Kubernetes / ECS pick one per service with `command` (default: local-runtime).
#
#   docker build -t feige .
#   docker run --rm -p 8080:8080 feige                      # all-in-one on embedded backends
#   docker run --rm -p 8090:8080 -e FEIGE_BUS_URL=… feige push-tier
#
# The Lambda functions (functions/) are not built here: see docs/deploy.md (cargo lambda).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# rdkafka builds its bundled librdkafka with cmake; libcurl's headers work around an upstream
# header bug (see DEVELOPERS.md). build-essential is in the rust image already, listed anyway.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binaries are copied
# out of the cached target dir, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p local-runtime -p push-tier \
    && mkdir -p /out \
    && cp target/release/local-runtime target/release/push-tier /out/

FROM ${RUNTIME_IMAGE}
# ca-certificates: TLS to managed backends (DocumentDB/Atlas, MSK); curl: container health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin feige \
    && mkdir -p /data \
    && chown feige:feige /data
# Amazon's RDS/DocumentDB CA bundle, for DocumentDB timelines (…&tls=true&tlsCAFile=/etc/ssl/certs/rds-global-bundle.pem).
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=build /out/local-runtime /out/push-tier /usr/local/bin/
USER 10001:10001
WORKDIR /data
ENV FEIGE_LISTEN=0.0.0.0:8080 \
    FEIGE_DATA_DIR=/data \
    RUST_LOG=info,sqlx=warn
# 8080: HTTP API / WebSocket (+ /healthz, /readyz, /metrics); 8081: push-tier node-to-node
# forwarding (FEIGE_INTERNAL_LISTEN, issue 5).
EXPOSE 8080 8081
# Both binaries stop gracefully on SIGTERM (the default stop signal) or SIGINT: sockets get
# 1012 "reconnect", in-flight requests finish.
CMD ["local-runtime"]
