# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian with only the TLS
# library and CA roots the PostgreSQL connection needs.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them. vendor/ holds the
# patched tiny_http that Cargo.toml's [patch] points at; the empty test file satisfies the
# manifest's [[test]] entry.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
RUN mkdir -p src tests/api && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/api/main.rs \
    && cargo build --release --locked && rm -rf src
COPY schema.sql ./
COPY docs ./docs
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home todo
COPY --from=build /src/target/release/todo-api /usr/local/bin/todo-api
USER todo
WORKDIR /data
ENV HOST=0.0.0.0 \
    PORT=8000 \
    RUST_LOG=info
EXPOSE 8000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/todo-api"]
