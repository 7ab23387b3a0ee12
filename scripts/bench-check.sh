#!/usr/bin/env bash
# A quick look at payq's embedded speed next to its targets, in about three minutes: the store
# engine's timer scenarios at reduced size (`payq bench timers --engine store`) and the order
# path against `payq serve` on SQLite (`payq load`: creation at 64 clients, create + pay +
# channel callback at 32). Prints each figure beside its target (docs/benchmarks.md says
# where they come from). Run it before submitting a change to the store, the engine or the
# HTTP path. It is a benchmark, not a test: it fails only if something does not run.
#
#   scripts/bench-check.sh            (needs a release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
PAYQ=${PAYQ:-target/release/payq}
[ -x "$PAYQ" ] || { echo "FATAL: $PAYQ is not built (cargo build --release)" >&2; exit 1; }
ADMIN=bench-admin-token-0001
PORT=18095
BASE=http://127.0.0.1:$PORT
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

row() { printf '| %-44s | %14s | %14s |\n' "$1" "$2" "$3"; }
field() { # file engine scenario column(1-based among the table's cells)
    awk -F'|' -v e=" $2 " -v s=" $3 " -v c="$4" '$2 == e && $3 == s { gsub(/ /, "", $(c+1)); print $(c+1); exit }' "$1"
}

echo "== machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== store engine: payq bench timers --engine store --burst 50000 --rate 10000 --steady-for 3s --pending 200000 --max-delay 2s"
"$PAYQ" bench timers --engine store --burst 50000 --rate 10000 --steady-for 3s --pending 200000 \
    --max-delay 2s --amqp-url '' >"$work/timers.txt"
grep '^|' "$work/timers.txt"

echo "== order path: payq serve on SQLite, payq load on the same cores"
PAYQ_ADMIN_TOKEN=$ADMIN PAYQ_LOG=warn PAYQ_SIM__CALLBACK_DELAY=50ms \
    "$PAYQ" serve --listen 127.0.0.1:$PORT --database-url "sqlite://$work/payq.db" >"$work/serve.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
"$PAYQ" load --url "$BASE" --admin-token $ADMIN --orders 30000 --concurrency 64 2>/dev/null >"$work/create.txt"
cat "$work/create.txt"
"$PAYQ" load --url "$BASE" --admin-token $ADMIN --orders 10000 --concurrency 32 --pay 2>/dev/null >"$work/pay.txt"
cat "$work/pay.txt"
ended=$(date +%s.%N)
paid=0
for _ in $(seq 1 600); do
    paid=$(curl -sf -H "authorization: Bearer $ADMIN" "$BASE/v1/admin/stats" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["orders_by_status"].get("paid",0))')
    [ "$paid" -ge 10000 ] && break
    sleep 0.1
done
paid_after=$(python3 -c "import time; print(f'{time.time() - $ended:.1f} s')")
# The single writer over both order runs: what each write transaction waited for it, how
# many share a commit, what the commits cost (docs/operations.md, metrics).
curl -sf "$BASE/metrics" | python3 -c '
import sys
m = {}
for line in sys.stdin:
    if line.startswith("payq_store_") and ("_sum " in line or "_count " in line):
        name, value = line.split()
        m[name] = float(value)
def avg(n): return m.get(n + "_sum", 0) / max(m.get(n + "_count", 0), 1)
txs, commits = m.get("payq_store_batch_transactions_sum", 0), m.get("payq_store_commit_seconds_count", 0)
per, commit, wait = avg("payq_store_batch_transactions"), avg("payq_store_commit_seconds"), avg("payq_store_writer_wait_seconds")
print(f"== writer: {txs:.0f} write transactions in {commits:.0f} commits ({per:.0f} per commit), "
      f"commit {1000 * commit:.2f} ms, wait for the writer {1000 * wait:.2f} ms on average")
' || true

rate() { sed -n 's/.*= \([0-9]*\) orders\/s.*/\1/p' "$1"; }
p99() { sed -n 's/.*p99 \([0-9.]*\) ms.*/\1 ms/p' "$1"; }
echo
echo "| figure                                       |       measured |         target |"
echo "|---|---|---|"
row "store engine, mixed: scheduled/s" "$(field "$work/timers.txt" 'store (SQLite)' mixed 4)" "150,000"
row "store engine, mixed: fired/s" "$(field "$work/timers.txt" 'store (SQLite)' mixed 5)" "100,000"
row "store engine, drain: fired/s" "$(field "$work/timers.txt" 'store (SQLite)' drain 5)" "150,000"
row "store engine, steady 10k/s: p99 lateness" "$(field "$work/timers.txt" 'store (SQLite)' steady 7)" "5 ms"
row "store engine, firing among pending: p99" "$(field "$work/timers.txt" 'store (SQLite)' capacity 7)" "10 ms"
row "order creation, 64 clients: orders/s" "$(rate "$work/create.txt")" "10,000"
row "order creation, 64 clients: p99" "$(p99 "$work/create.txt")" "15 ms"
row "create + pay + callback, 32 clients: orders/s" "$(rate "$work/pay.txt")" "2,500"
row "every order paid after the load ended" "$paid_after ($paid)" "1 s"
