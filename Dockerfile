# syntax=docker/dockerfile:1
#
# loopgate in a container: one binary on Debian slim, running as an unprivileged
# user, with its SQLite database and reflection artifacts in the /data volume.
#
#   docker build -t loopgate .
#   docker run -d --init -p 8787:8787 -v loopgate-data:/data \
#     -e LOOPGATE_API_TOKEN="$(openssl rand -hex 32)" loopgate
#
# Configuration is the defaults plus LOOPGATE_<SECTION>__<KEY> environment variables (see
# config/loopgate.example.toml); for a file, mount it and pass `--config PATH` or set
# LOOPGATE_CONFIG=PATH. Secrets are environment variables named by the config's *_env
# keys (or files named by *_file keys, e.g. Docker secrets under /run/secrets).
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# Manifests first: the dependencies are built in their own layer, which stays cached
# until a Cargo.toml or Cargo.lock changes. Cargo refuses a manifest whose targets have no
# source file, so every library, the binary and each declared [[bench]]/[[test]] gets an
# empty stand-in, found by reading the manifests (a new bench needs no change here).
COPY Cargo.toml Cargo.lock ./
COPY policies/Cargo.toml policies/
COPY engine/Cargo.toml engine/
COPY channels/Cargo.toml channels/
COPY gateway/Cargo.toml gateway/
RUN <<'EOF'
set -eu
for manifest in */Cargo.toml; do
    crate=${manifest%/Cargo.toml}
    mkdir -p "$crate/src" && : > "$crate/src/lib.rs"
    awk -v crate="$crate" '
        function flush() {
            if (kind != "") print crate "/" (path != "" ? path : (kind == "bench" ? "benches/" : "tests/") name ".rs")
            kind = ""
        }
        /^\[/ { flush() }
        /^\[\[bench\]\]/ { kind = "bench"; name = ""; path = "" }
        /^\[\[test\]\]/ { kind = "test"; name = ""; path = "" }
        kind != "" && /^name *=/ { name = $0; sub(/^name *= *"/, "", name); sub(/".*/, "", name) }
        kind != "" && /^path *=/ { path = $0; sub(/^path *= *"/, "", path); sub(/".*/, "", path) }
        END { flush() }
    ' "$manifest" | while read -r stub; do mkdir -p "$(dirname "$stub")" && : > "$stub"; done
done
echo 'fn main() {}' > gateway/src/main.rs
EOF
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked -p loopgate

# The real sources: only what the binary is built from (the migrations are compiled in),
# so a change to tests or benches does not rebuild the image. COPY keeps the files' own
# modification times, which can be older than the stand-ins built above; touching them
# makes cargo rebuild loopgate's crates (and only those) instead of keeping the empty ones.
COPY policies/src policies/src
COPY engine/src engine/src
COPY channels/src channels/src
COPY gateway/src gateway/src
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    find policies engine channels gateway -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p loopgate \
    && install -D -m 0755 target/release/loopgate /out/loopgate \
    && /out/loopgate --version

# --- run -----------------------------------------------------------------------------
# Debian slim rather than distroless: the health check below needs bash (already part of
# the base image), and the binary needs nothing else — TLS roots (webpki-roots), time zones
# (chrono-tz) and SQLite are compiled in, so not even ca-certificates or tzdata is added.
FROM debian:${DEBIAN_RELEASE}-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin loopgate \
    && install -d -o loopgate -g loopgate -m 0700 /data
COPY --from=builder /out/loopgate /usr/local/bin/loopgate

# Listening beyond loopback requires an API token (config.rs refuses to start without one,
# naming the fix), so the image names the variable that holds it: pass LOOPGATE_API_TOKEN
# (at least 16 characters) at `docker run`. api_token_file cannot be set beside
# api_token_env (both is a configuration error), so reading the token from a file takes an
# image built without LOOPGATE_SERVER__API_TOKEN_ENV.
ENV LOOPGATE_SERVER__LISTEN=0.0.0.0:8787 \
    LOOPGATE_SERVER__API_TOKEN_ENV=LOOPGATE_API_TOKEN \
    LOOPGATE_STORAGE__URL=sqlite:///data/loopgate.db \
    LOOPGATE_STORAGE__DATA_DIR=/data

USER loopgate:loopgate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8787

# Ready means the database answers, every channel receives and no worker is down (the
# body says which). The binary has no HTTP client subcommand, so bash's /dev/tcp sends the
# request: nothing is installed for it. It asks the port of LOOPGATE_SERVER__LISTEN on
# 127.0.0.1, so a listen address that is neither loopback nor 0.0.0.0/[::] needs its own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/bin/bash", "-c", "port=${LOOPGATE_SERVER__LISTEN##*:}; exec 3<>/dev/tcp/127.0.0.1/${port:-8787} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 4 _ status _ <&3 && [ \"$status\" = 200 ]"]

# SIGTERM is a graceful shutdown: requests in flight get server.shutdown_grace (10 s by
# default), so give `docker stop` a little more (`--stop-timeout 15` / stop_grace_period).
# `--init` reaps the children of [[command]] actions, which PID 1 would otherwise inherit.
ENTRYPOINT ["/usr/local/bin/loopgate"]
CMD ["serve"]
