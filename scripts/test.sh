#!/usr/bin/env bash
# Runs every test of webhook_ext and ends with one summary line:
#   0. formatting and lints                   (cargo fmt --check, cargo clippy -D warnings)
#   1. unit tests of the pure core            (cargo test -p webhook_core)
#   2. the extension's unit tests             (cargo test --lib -p webhook_ext)
#   3. end-to-end tests against real clusters (pytest tests/e2e: real HTTP, real rows),
#      the Debian package (built by scripts/package.sh) and META.json among them
# A formatting or lint finding fails the run like a failed test.
# Installs what is missing first (apt packages, cargo-pgrx, a Python venv, the
# Node.js example's packages, the PGXN META.json validator).
source "$(dirname "$0")/common.sh"
cd "$REPO_ROOT"

ensure_toolchain
VENV="$REPO_ROOT/target/e2e-venv"
if [ ! -x "$VENV/bin/pytest" ] || ! cmp -s tests/e2e/requirements.txt "$VENV/requirements.txt"; then
    say "creating Python venv for the end-to-end tests"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r tests/e2e/requirements.txt
    cp tests/e2e/requirements.txt "$VENV/requirements.txt"
fi
# node-postgres for the Node.js example reader (tests/e2e/test_consumer_examples.py).
if ! cmp -s examples/node/package-lock.json examples/node/node_modules/.installed-lock.json; then
    say "installing the Node.js example's dependencies (npm ci)"
    (cd examples/node && npm ci --no-audit --no-fund --silent &&
        cp package-lock.json node_modules/.installed-lock.json)
fi
# The PGXN maintainers' META.json validator (crates.io), run by test_package.py.
PGXN_META_VERSION=0.7.0
if ! pgxn_meta --version 2>/dev/null | grep -qx "pgxn_meta $PGXN_META_VERSION"; then
    say "installing the META.json validator pgxn_meta $PGXN_META_VERSION (once)"
    cargo install pgxn_meta --version "$PGXN_META_VERSION" --locked
fi

LOGS="$REPO_ROOT/target/test-logs"
mkdir -p "$LOGS"
passed=0 failed=0 status=0

count() { # count LOGFILE: adds the passed/failed counts a runner printed
    local p f
    p=$({ grep -aoE '[0-9]+ passed' "$1" || true; } | awk '{s+=$1} END {print s+0}')
    f=$({ grep -aoE '[0-9]+ failed' "$1" || true; } | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
}

ensure_lint_tools
say "formatting and lints (cargo fmt --check, cargo clippy -D warnings)"
if ! { cargo fmt --all -- --check && cargo clippy --release --all-targets -- -D warnings; } \
        > "$LOGS/lint.log" 2>&1; then
    cat "$LOGS/lint.log"
    echo "lint: FAILED (see above)"
    status=1
fi

say "unit tests (webhook_core)"
if ! cargo test -p webhook_core 2>&1 | tee "$LOGS/unit.log"; then status=1; fi
count "$LOGS/unit.log"

say "unit tests (the extension's own, which need no server)"
if ! cargo test --release --lib -p webhook_ext 2>&1 | tee "$LOGS/unit-extension.log"; then status=1; fi
count "$LOGS/unit-extension.log"

install_extension
# The package reuses the build just installed; test_package.py tests it.
say "building the Debian package (scripts/package.sh)"
if deb=$("$REPO_ROOT/scripts/package.sh"); then
    say "built $deb"
else
    echo "package: FAILED (see above)"
    status=1
fi
say "end-to-end tests (pytest tests/e2e)"
if ! "$VENV/bin/pytest" -q -p no:cacheprovider tests/e2e "$@" 2>&1 | tee "$LOGS/e2e.log"; then status=1; fi
count "$LOGS/e2e.log"

[ "$failed" -eq 0 ] || status=1
echo
echo "total: $passed passed, $failed failed"
exit $status
