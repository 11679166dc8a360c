# Throwaway servers for the test suites, each on loopback, in a temporary folder, gone
# when the tests end. Sourced by scripts/test (and by scripts/bench for PostgreSQL).

services_dir=$(mktemp -d "${TMPDIR:-/tmp}/loopgate-services.XXXXXX")
stop_hooks=()

stop_services() {
    local hook
    for hook in "${stop_hooks[@]}"; do eval "$hook" || true; done
    rm -rf "$services_dir"
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages without letting them start their own daemons on the
# standard ports (policy-rc.d exiting 101 forbids it).
apt_install() {
    local guard=/usr/sbin/policy-rc.d created=
    if [ ! -e "$guard" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
        as_root chmod +x "$guard"
        created=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    if [ -n "$created" ]; then as_root rm -f "$guard"; fi
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        echo $((20000 + RANDOM % 20000))
    fi
}

# PostgreSQL refuses to run as root, so as root it runs as the package's `postgres` user.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        echo "installing PostgreSQL (Debian package postgresql)…" >&2
        apt_install postgresql
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local dir="$services_dir/postgres" port
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; chmod 755 "$services_dir"; fi
    port=$(free_port)
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    # Durability settings are off: these databases are thrown away, and crash safety is
    # proven on SQLite, whose settings are the product's own.
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null 2>&1 || { cat "$dir/server.log" >&2; return 1; }
    stop_hooks+=("as_postgres '$bin/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null 2>&1")
    export LOOPGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
}
