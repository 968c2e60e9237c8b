#!/usr/bin/env bash
# What verifying senders costs: acknowledgements per second at 16 connections
# (bench/loadgen, the ~300-byte JSON of bench/run.sh) to three workflows on
# one cluster, in rounds that alternate between them:
#
# * none: no verification;
# * hmac: GitHub's scheme (HMAC-SHA256 of the body, `X-Hub-Signature-256`);
# * ed25519: a custom scheme, Ed25519 over the body (`X-Sig`, hex), with the
#   public key as PEM.
#
# Signatures are computed once with openssl (the body does not change), so
# the load generator costs the same for all three. Reports each round's ack/s,
# the medians, and the ratio of each to `none` (goal for hmac: at least 0.95).
#
#   SECONDS_PER_RUN (default 10)  ROUNDS (default 5)  CONNECTIONS (default 16)
source "$(dirname "$0")/../scripts/common.sh"
cd "$REPO_ROOT"

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-16}
PG_PORT=${BENCH_PG_PORT:-5499}
HTTP_PORT=${BENCH_HTTP_PORT:-8799}
DATA="$REPO_ROOT/target/bench-data"
OUT="$REPO_ROOT/bench/results"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

ensure_toolchain
install_extension
build_loadgen

start_fresh_cluster "$DATA" "$PG_PORT" "$HTTP_PORT" "webhook.workers = 1
shared_buffers = '512MB'
max_connections = 200"
psql_b() { bench_psql "$@"; }

BODY="$WORK/body.json"
printf '%s' '{"order_id":"A-1001","amount":19.99,"currency":"EUR","customer":{"email":"ann@example.com","name":"Ann Lee","tier":"gold"},"items":[{"sku":"X-100","qty":2,"price":4.5},{"sku":"Y-200","qty":1,"price":10.99}],"note":"leave at the door","created_at":"2026-11-28T10:00:00Z"}' > "$BODY"
SECRET="bench-signing-secret"
HMAC_SIG=$(openssl dgst -sha256 -hmac "$SECRET" -r "$BODY" | cut -d' ' -f1)
openssl genpkey -algorithm ed25519 -out "$WORK/ed25519.key" 2>/dev/null
openssl pkey -in "$WORK/ed25519.key" -pubout -out "$WORK/ed25519.pub"
openssl pkeyutl -sign -inkey "$WORK/ed25519.key" -rawin -in "$BODY" -out "$WORK/ed25519.sig"
ED_SIG=$(od -An -v -tx1 "$WORK/ed25519.sig" | tr -d ' \n')
ED_PUBLIC=$(cat "$WORK/ed25519.pub")

psql_b -v secret="$SECRET" -v public="$ED_PUBLIC" >/dev/null <<'SQL'
CREATE EXTENSION webhook_ext;
CREATE FUNCTION bench_noop(e webhook.events) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT id FROM webhook_create_workflow('none', 'bench_noop');
SELECT id FROM webhook_create_workflow('hmac', 'bench_noop');
SELECT id FROM webhook_create_workflow('ed25519', 'bench_noop');
SELECT webhook_set_verification(id, 'github', secret => :'secret') FROM webhook.workflows WHERE name = 'hmac';
SELECT webhook_set_verification(id, 'custom', secret => :'public', definition =>
         '{"algorithm": "ed25519", "signed": "{body}", "signature": "header:x-sig"}')
  FROM webhook.workflows WHERE name = 'ed25519';
SQL
url_of() { echo "http://127.0.0.1:$HTTP_PORT/hooks/$(psql_b -At -c "SELECT id FROM webhook.workflows WHERE name = '$1'")"; }
declare -A URLS=([none]=$(url_of none) [hmac]=$(url_of hmac) [ed25519]=$(url_of ed25519))
declare -A HEADERS=([none]="x-none:1" [hmac]="x-hub-signature-256:sha256=$HMAC_SIG" [ed25519]="x-sig:$ED_SIG")
field() { python3 -c "import json,sys; print('%.${2:-0}f' % json.load(sys.stdin)['$1'])"; }

say "warm-up"
for kind in none hmac ed25519; do
    json=$("$LOADGEN" "${URLS[$kind]}" "$CONNECTIONS" 2 "$BODY" "${HEADERS[$kind]}")
    [ "$(echo "$json" | field non_2xx)" = 0 ] || { echo "$kind: not every request was accepted: $json"; exit 1; }
done

RESULTS="$OUT/verify-$(date +%Y%m%d-%H%M%S).txt"
echo "ack/s at $CONNECTIONS connections, $ROUNDS rounds of $SECONDS_PER_RUN s per workflow, alternating" | tee "$RESULTS"
printf '%-6s %9s %9s %9s\n' round none hmac ed25519 | tee -a "$RESULTS"
ROWS="$WORK/rows"
for r in $(seq "$ROUNDS"); do
    line="$r"
    for kind in none hmac ed25519; do
        json=$("$LOADGEN" "${URLS[$kind]}" "$CONNECTIONS" "$SECONDS_PER_RUN" "$BODY" "${HEADERS[$kind]}")
        [ "$(echo "$json" | field non_2xx)" = 0 ] || { echo "$kind: refused requests: $json"; exit 1; }
        line="$line $(echo "$json" | field rps)"
    done
    echo "$line" >> "$ROWS"
    printf '%-6s %9s %9s %9s\n' $line | tee -a "$RESULTS"
done
python3 - "$ROWS" <<'PY' | tee -a "$RESULTS"
import statistics, sys
rows = [list(map(float, line.split()[1:])) for line in open(sys.argv[1])]
med = [statistics.median(col) for col in zip(*rows)]
ratios = lambda i: [row[i] / row[0] for row in rows]
print("median %9.0f %9.0f %9.0f" % tuple(med))
for name, i in (("hmac", 1), ("ed25519", 2)):
    r = ratios(i)
    print("%s / none: %.2f (rounds %.2f-%.2f)" % (name, statistics.median(r), min(r), max(r)))
PY
say "results in $RESULTS; stopping the benchmark cluster"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null
