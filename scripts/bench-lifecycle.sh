#!/usr/bin/env bash
# Order lifecycle throughput, embedded against distributed, in one run on one machine:
# `payq load --pay --webhook` (create → pay → the simulated channel's callback → the
# merchant's `payment.succeeded` webhook, received by the load generator; SPEC §9) against (1) `payq serve` on SQLite and (2) one `--role api` and N (default 2)
# `--role worker` processes on PostgreSQL + RabbitMQ. Reports the load generator's figures,
# how long until every order is paid, and the cost per order, which does not depend on how
# many cores there are (SPEC §9): CPU ms of each payq process, of PostgreSQL (every backend,
# ended ones through the postmaster) and of RabbitMQ, read from /proc/<pid>/stat from just
# before the load until every order is paid; PostgreSQL transactions (pg_stat_database) and
# round trips (statements, BEGIN and COMMIT, counted by payq); AMQP publishes and
# deliveries (counted by payq); SQLite write transactions and commits (payq's own metrics).
# Where PostgreSQL's share goes: with pg_stat_statements loaded (shared_preload_libraries),
# it also lists each statement's calls, rows and execution ms per order.
#
#   scripts/bench-lifecycle.sh [orders] [concurrency] [workers]
#
# Needs a release build (cargo build --release), PostgreSQL on 127.0.0.1:5432 and RabbitMQ on
# 127.0.0.1:5672.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-5000}
CONC=${2:-64}
WORKERS=${3:-2}
PAYQ=${PAYQ:-target/release/payq}
# The load generator (another build's, to measure an older server with today's load).
LOAD=${LOAD:-$PAYQ}
ADMIN=bench-admin-token-0001
PG=postgres://postgres@127.0.0.1:5432
DB=payq_bench_lifecycle
PREFIX=payqbench$$
# Every process signs and checks the simulated channel's callbacks with the same secret.
# The webhook endpoint is the load generator's, on loopback.
export PAYQ_ADMIN_TOKEN=$ADMIN PAYQ_LOG=warn PAYQ_SIM__CALLBACK_DELAY=50ms PAYQ_SIM_SECRET=bench-sim-secret \
    PAYQ_WEBHOOK__ALLOW_PRIVATE=true
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { for _ in $(seq 1 100); do curl -sf "$1/healthz" >/dev/null && return; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

wait_paid() { # base; gives up after 120 s and says how the orders ended
    local start=$SECONDS stats
    while :; do
        stats=$(curl -sf -H "authorization: Bearer $ADMIN" "$1/v1/admin/stats")
        paid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["orders_by_status"].get("paid",0))' <<<"$stats")
        [ "$paid" -ge "$ORDERS" ] && break
        if [ $((SECONDS - start)) -ge 120 ]; then
            echo "only $paid of $ORDERS orders paid 120 s after the load ended: $(python3 -c 'import json,sys; print(json.load(sys.stdin)["orders_by_status"])' <<<"$stats")"
            return
        fi
        sleep 0.2
    done
    echo "all $ORDERS orders paid $((SECONDS - start)) s after the load ended"
}

# CPU seconds * 100 (clock ticks) spent by the processes named, their reaped children's included.
ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15+$16+$17}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
per_order() { python3 -c "print(f'{($2 - $1) * 1000 / $hz / $ORDERS:.2f}')"; }
ratio() { python3 -c "print(f'{($2 - $1) / $ORDERS:.2f}')"; }
metric() { curl -sf "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }' | head -1; }
# The sum of a counter over the processes listening on the ports given.
metric_sum() { local n=$1 t=0 v p; shift; for p in "$@"; do v=$(metric "http://127.0.0.1:$p" "$n"); t=$(python3 -c "print(${t} + ${v:-0})"); done; echo "$t"; }
costs=()

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "== embedded (SQLite), orders $ORDERS, concurrency $CONC"
dir=$(mktemp -d)
PAYQ_DATABASE_URL="sqlite://$dir/payq.db" $PAYQ serve --listen 127.0.0.1:18090 >/dev/null 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:18090
serve0=$(ticks "${pids[@]}")
tx0=$(metric http://127.0.0.1:18090 payq_store_batch_transactions_sum); c0=$(metric http://127.0.0.1:18090 payq_store_commit_seconds_count)
$LOAD load --url http://127.0.0.1:18090 --admin-token $ADMIN --orders "$ORDERS" --concurrency "$CONC" --pay --webhook 2>/dev/null | tail -3
wait_paid http://127.0.0.1:18090
serve1=$(ticks "${pids[@]}")
tx1=$(metric http://127.0.0.1:18090 payq_store_batch_transactions_sum); c1=$(metric http://127.0.0.1:18090 payq_store_commit_seconds_count)
costs+=("| embedded | payq serve CPU ms | $(per_order "$serve0" "$serve1") |")
costs+=("| embedded | SQLite write transactions / commits | $(ratio "${tx0:-0}" "${tx1:-0}") / $(ratio "${c0:-0}" "${c1:-0}") |")
cleanup; pids=()

echo "== distributed (PostgreSQL + RabbitMQ, 1 api + $WORKERS workers), orders $ORDERS, concurrency $CONC"
psql "$PG/test" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export PAYQ_DATABASE_URL="$PG/$DB" PAYQ_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f PAYQ_RABBITMQ__PREFIX=$PREFIX
$PAYQ serve --role api --listen 127.0.0.1:18091 >/dev/null 2>&1 &
pids+=($!)
wait_up http://127.0.0.1:18091
for port in $(seq 18092 $((18091 + WORKERS))); do
    PAYQ_SIM__CALLBACK_URL=http://127.0.0.1:18091 $PAYQ serve --role worker --listen 127.0.0.1:$port >/dev/null 2>&1 &
    pids+=($!)
done
for port in $(seq 18092 $((18091 + WORKERS))); do wait_up "http://127.0.0.1:$port"; done
# Every PostgreSQL process alive at each end (backends opened meanwhile start from zero).
xacts() { psql "$PG/test" -Atc "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$DB'"; }
ports=$(seq 18091 $((18091 + WORKERS)))
counters() { echo "$(metric_sum payq_store_pg_round_trips_total $ports) $(metric_sum payq_amqp_published_total $ports) $(metric_sum payq_amqp_delivered_total $ports)"; }
# Where PostgreSQL's calls go, when pg_stat_statements is loaded (shared_preload_libraries).
statements=$(psql "$PG/$DB" -Atc "SELECT 1 FROM pg_settings WHERE name = 'shared_preload_libraries' AND setting LIKE '%pg_stat_statements%'")
if [ -n "$statements" ]; then
    psql "$PG/$DB" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
fi
api0=$(ticks "${pids[0]}") workers0=$(ticks "${pids[@]:1}") pg0=$(ticks $(pgrep -x postgres)) mq0=$(ticks $(pgrep beam.smp)) x0=$(xacts)
read -r rt0 pub0 del0 <<<"$(counters)"
$LOAD load --url http://127.0.0.1:18091 --admin-token $ADMIN --orders "$ORDERS" --concurrency "$CONC" --pay --webhook 2>/dev/null | tail -3
wait_paid http://127.0.0.1:18091
api1=$(ticks "${pids[0]}") workers1=$(ticks "${pids[@]:1}") pg1=$(ticks $(pgrep -x postgres)) mq1=$(ticks $(pgrep beam.smp)) x1=$(xacts)
read -r rt1 pub1 del1 <<<"$(counters)"
costs+=("| distributed | payq api CPU ms | $(per_order "$api0" "$api1") |")
costs+=("| distributed | payq workers CPU ms (all $WORKERS) | $(per_order "$workers0" "$workers1") |")
costs+=("| distributed | PostgreSQL CPU ms | $(per_order "$pg0" "$pg1") |")
costs+=("| distributed | RabbitMQ CPU ms | $(per_order "$mq0" "$mq1") |")
costs+=("| distributed | PostgreSQL transactions / round trips | $(ratio "$x0" "$x1") / $(ratio "$rt0" "$rt1") |")
costs+=("| distributed | AMQP publishes / deliveries | $(ratio "$pub0" "$pub1") / $(ratio "$del0" "$del1") |")
if [ -n "$statements" ]; then
    echo "== PostgreSQL statements per order (pg_stat_statements, the whole run: calls, rows and ms per order, the longest call's ms)"
    psql "$PG/$DB" -Atc "SELECT to_char(calls::float / $ORDERS, 'FM990.00') || ' | ' || to_char(rows::float / $ORDERS, 'FM990.00')
        || ' | ' || to_char(total_exec_time / $ORDERS, 'FM990.000') || ' | ' || to_char(max_exec_time, 'FM99990.0') || ' | ' || regexp_replace(left(query, 110), '\\s+', ' ', 'g')
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$DB') ORDER BY calls DESC LIMIT 30"
fi
cleanup; pids=()
psql "$PG/test" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
$PAYQ topology delete --yes >/dev/null

echo "== cost per order (create → pay → callback → webhook; from just before the load until every order is paid and its webhook received)"
echo "| mode | figure | per order |"
echo "|---|---|---|"
printf '%s\n' "${costs[@]}"
