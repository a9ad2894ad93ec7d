# bluetick, one binary for every role (ingest, sink, migrate, retention, erase, export).
#   docker build -t bluetick:local .
# Build stage: the bundled librdkafka and lz4/zstd need only a C toolchain, which the Rust image has.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY schemas schemas
COPY benches benches
COPY loadtest loadtest
COPY tests/fixtures tests/fixtures
RUN cargo build --release --locked --bin bluetick \
 && strip target/release/bluetick

# Runtime stage: no shell tools beyond Debian's base, an unprivileged user, the binary.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/bluetick /usr/local/bin/bluetick
USER 10001:10001
# 8080: ingest (webhook, /metrics, /healthz, /readyz); 9091: sink (/metrics, /healthz).
EXPOSE 8080 9091
ENTRYPOINT ["bluetick"]
CMD ["ingest"]
