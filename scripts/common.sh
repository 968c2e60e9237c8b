# Shared by scripts/run.sh, scripts/test.sh and bench/run.sh: installs what is
# missing and builds/installs the extension. Source it; do not run it.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
PG_BIN=/usr/lib/postgresql/15/bin
PGRX_VERSION=0.18.1
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_packages() {
    # pg_auto_failover and HAProxy: the failover test runs its own (the
    # haproxy package's service, where it starts, has no listener of ours).
    local wanted=(postgresql-15 postgresql-server-dev-15 clang libclang-dev pkg-config sudo
                  python3-venv python3-pip openssl curl postgresql-15-auto-failover haproxy)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    # Node.js and npm for the node-postgres example (examples/node): Debian's
    # packages, unless a node with its own npm is there already.
    if ! command -v npm >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_cargo_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION (takes a few minutes, once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs '^pg15 = ' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
    fi
}

ensure_toolchain() {
    ensure_packages
    ensure_cargo_pgrx
}

# The test command checks formatting and lints: rustup installs both tools
# with the toolchain, unless the minimal profile left them out.
ensure_lint_tools() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        say "installing rustfmt and clippy"
        rustup component add rustfmt clippy
    fi
}

# Builds the extension in release mode and installs it into PostgreSQL's directories.
# SKIP_INSTALL=1: use the extension already installed (e.g. while another
# checkout installs its own build under a lock).
install_extension() {
    if [ "${SKIP_INSTALL:-0}" = 1 ]; then
        say "SKIP_INSTALL=1: using the installed webhook_ext"
        return
    fi
    say "building and installing webhook_ext (release)"
    (cd "$REPO_ROOT" && as_root env "PATH=$PATH" cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null)
    # cargo pgrx writes the current version's install script only: the
    # released versions' frozen scripts and the upgrade scripts between them
    # go next to it, so that CREATE EXTENSION … VERSION and ALTER EXTENSION
    # … UPDATE find them.
    as_root install -m 644 "$REPO_ROOT"/sql/versions/*.sql "$REPO_ROOT"/sql/upgrade/*.sql \
        "$("$PG_CONFIG" --sharedir)/extension/"
}

# Runs a command as the postgres OS user when we are root (PostgreSQL refuses root).
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_cluster DATADIR PG_PORT HTTP_PORT [SETTINGS]: a private cluster with
# the listener; SETTINGS (postgresql.conf lines) come after the defaults.
start_cluster() {
    local datadir=$1 pg_port=$2 http_port=$3 settings=${4:-}
    if [ ! -s "$datadir/PG_VERSION" ]; then
        say "creating cluster in $datadir"
        mkdir -p "$datadir"
        [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$datadir"
        chmod 700 "$datadir"
        as_postgres "$PG_BIN/initdb" -D "$datadir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    cat > "$datadir/webhook_ext.conf" <<CONF
port = $pg_port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$datadir'
shared_preload_libraries = 'webhook_ext'
webhook.database = 'postgres'
webhook.port = $http_port
# Executors (one per workflow owner running handlers) are background workers.
max_worker_processes = 32
webhook.max_executors = 8
$settings
CONF
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$datadir/webhook_ext.conf"
    grep -q "^include_if_exists = 'webhook_ext.conf'" "$datadir/postgresql.conf" ||
        echo "include_if_exists = 'webhook_ext.conf'" >> "$datadir/postgresql.conf"
    if as_postgres "$PG_BIN/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
        say "restarting cluster on port $pg_port"
        as_postgres "$PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -m fast restart >/dev/null
    else
        say "starting cluster on port $pg_port"
        as_postgres "$PG_BIN/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w start >/dev/null
    fi
}

# start_fresh_cluster DATADIR PG_PORT HTTP_PORT [SETTINGS]: start_cluster on a
# new data directory (an old one is stopped and removed), for benchmarks.
start_fresh_cluster() {
    if [ -d "$1" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$1" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$1"
    fi
    start_cluster "$@"
}

# For the benchmarks: builds bench/loadgen and sets LOADGEN to it.
build_loadgen() {
    say "building the load generator"
    cargo build --release -q -p loadgen
    LOADGEN="$REPO_ROOT/target/release/loadgen"
}

# psql on the cluster of DATA and PG_PORT (as set by the calling script), as
# ROLE if set, else postgres; stops at the first error.
bench_psql() {
    as_postgres "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PG_PORT" -U "${ROLE:-postgres}" -d postgres "$@"
}
