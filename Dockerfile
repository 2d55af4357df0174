# syntax=docker/dockerfile:1
# The keyshift image of docker-compose.yml: a release build with the `s3`
# feature (Delta tables on S3-compatible object stores), run as a non-root
# user with `keyshift` as the entrypoint (`docker run IMAGE ingest --brokers …`).
# curl is there for the health checks (GET /healthz).
#
#   docker build -t keyshift:local .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches speed up rebuilds (BuildKit); the binary is
# copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features s3 --bin keyshift \
    && install -m 0755 target/release/keyshift /usr/local/bin/keyshift

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 keyshift \
    && useradd --system --uid 10001 --gid keyshift --home-dir /var/lib/keyshift \
        --no-create-home --shell /usr/sbin/nologin keyshift \
    && install -d -o keyshift -g keyshift -m 0750 /var/lib/keyshift
COPY --from=build /usr/local/bin/keyshift /usr/local/bin/keyshift
USER keyshift:keyshift
WORKDIR /var/lib/keyshift
# Data dir (controller lock, default secret); tables go where store.uri says.
ENV KEYSHIFT__SERVER__DATA_DIR=/var/lib/keyshift
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/keyshift"]
CMD ["--help"]
