# bluetick, one binary for every role (ingest, sink, migrate, retention, erase, export, audit).
#   docker build -t bluetick:local .
# Build stage: the bundled librdkafka (with TLS and SASL/SCRAM through OpenSSL) and lz4/zstd
# need a C toolchain, which the Rust image has, and OpenSSL's headers.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
COPY benches benches
COPY loadtest loadtest
COPY tests/fixtures tests/fixtures
RUN cargo build --release --locked --bin bluetick \
 && strip target/release/bluetick

# Runtime stage: no shell tools beyond Debian's base, an unprivileged user, the binary, and
# OpenSSL's library and the system's CA roots for TLS to Kafka (ClickHouse TLS is rustls).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bluetick /usr/local/bin/bluetick
USER 10001:10001
# 8080: ingest (webhook, /healthz, /readyz); 9090: ingest's /metrics (ingest.metrics_listen);
# 9091: sink (/metrics, /healthz); 9094: the scheduled audit (/metrics).
EXPOSE 8080 9090 9091 9094
ENTRYPOINT ["bluetick"]
CMD ["ingest"]
