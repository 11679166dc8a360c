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

# A real mail system on loopback for the email tests: Dovecot (IMAP with IDLE, and LMTP)
# and OpenSMTPD (SMTP) delivering into Dovecot's Maildirs. Users are listed explicitly
# (loopgate, owner, stranger; password "secret"); `user+detail@test.local` is delivered
# into the folder "detail" of `user`, created on first delivery, so every test has
# mailboxes of its own on one server.
start_mail() {
    if ! command -v dovecot >/dev/null 2>&1 || ! command -v smtpd >/dev/null 2>&1; then
        echo "installing Dovecot and OpenSMTPD (Debian packages dovecot-imapd dovecot-lmtpd opensmtpd)…" >&2
        apt_install dovecot-imapd dovecot-lmtpd opensmtpd
    fi
    # Dovecot refuses to deliver mail as root.
    if ! id loopgate-mail >/dev/null 2>&1; then
        as_root useradd --system --no-create-home --shell /usr/sbin/nologin loopgate-mail
    fi
    local dir="$services_dir/mail" imap_port lmtp_port smtp_port uid gid user
    mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"
    chmod 755 "$services_dir" "$dir"
    imap_port=$(free_port)
    lmtp_port=$(free_port)
    smtp_port=$(free_port)
    uid=$(id -u loopgate-mail)
    gid=$(id -g loopgate-mail)
    : >"$dir/users"
    for user in loopgate owner stranger; do
        echo "$user:{PLAIN}secret:$uid:$gid::$dir/home/$user::userdb_mail=maildir:$dir/mail/$user" >>"$dir/users"
    done
    as_root chown -R "$uid:$gid" "$dir/mail" "$dir/home"
    cat >"$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = $uid
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
lda_mailbox_autocreate = yes
mail_location = maildir:$dir/mail/%n
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%n $dir/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
CONF
    cat >"$dir/smtpd.conf" <<CONF
table recipients { "loopgate@test.local" = "loopgate-mail", "owner@test.local" = "loopgate-mail", "stranger@test.local" = "loopgate-mail" }
listen on 127.0.0.1 port $smtp_port
action "dovecot" lmtp "127.0.0.1:$lmtp_port" rcpt-to virtual <recipients>
match from any for domain "test.local" action "dovecot"
CONF
    chmod 644 "$dir/smtpd.conf"
    # Dovecot's master keeps the caller's stderr open: its output goes to a file.
    as_root dovecot -c "$dir/dovecot.conf" >"$dir/dovecot.out" 2>&1 || { cat "$dir/dovecot.out" "$dir/dovecot.log" >&2; return 1; }
    stop_hooks+=("as_root dovecot -c '$dir/dovecot.conf' stop >/dev/null 2>&1")
    as_root smtpd -d -f "$dir/smtpd.conf" >"$dir/smtpd.log" 2>&1 &
    stop_hooks+=("as_root pkill -f 'smtpd -d -f $dir/smtpd.conf' >/dev/null 2>&1")
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$imap_port") 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then cat "$dir/smtpd.log" "$dir/dovecot.log" >&2; return 1; fi
        sleep 0.1
    done
    export LOOPGATE_TEST_IMAP_PORT=$imap_port LOOPGATE_TEST_SMTP_PORT=$smtp_port
    export LOOPGATE_TEST_DOVECOT_CONF="$dir/dovecot.conf"
    echo "Dovecot $(dovecot --version | awk '{print $1}') IMAP on 127.0.0.1:$imap_port, OpenSMTPD on 127.0.0.1:$smtp_port" >&2
}
