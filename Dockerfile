# One multi-stage build for every Feige binary; the runtime image is small (debian slim +
# the binaries). Build: docker build -t feige .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p local-runtime -p push-tier -p feige-functions

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 feige
COPY --from=build /src/target/release/local-runtime /src/target/release/push-tier /usr/local/bin/
USER feige
ENV FEIGE_LISTEN=0.0.0.0:8080 FEIGE_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/local-runtime"]
