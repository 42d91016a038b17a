# shardgate container image: build in the Rust image, run in a slim Debian as a non-root user.
#
#   docker build -t shardgate .
#   docker run -p 6432:6432 -p 9930:9930 \
#     -v "$PWD/config/compose.yaml:/etc/shardgate/shardgate.yaml:ro" shardgate
#
# No config is baked in: mount yours at /etc/shardgate/shardgate.yaml. Listen on 0.0.0.0
# inside the container (`listen: 0.0.0.0:6432`, `metrics_listen: 0.0.0.0:9930`), or the
# published ports reach nothing. SIGHUP (`docker kill -s HUP`) reloads the mounted file.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them: build against a stub
# main, then replace it with the real sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Make cargo see the real sources as newer than the stub's build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin shardgate \
    && strip target/release/shardgate

FROM debian:bookworm-slim
# ca-certificates: shards and catalogs reached with sslmode=require use TLS. Not pinned
# (DL3008): bookworm's version moves with security updates, which are wanted here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin shardgate \
    && mkdir -p /etc/shardgate
COPY --from=build /src/target/release/shardgate /usr/local/bin/shardgate
# Numeric, so that the host and Kubernetes (runAsNonRoot) can check it is not root.
USER 10001:10001
EXPOSE 6432 9930
ENTRYPOINT ["shardgate", "serve", "-c", "/etc/shardgate/shardgate.yaml"]
