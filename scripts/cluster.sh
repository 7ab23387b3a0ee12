#!/usr/bin/env bash
# Clustered services on one machine, for payq's clustered tests and for trying payq against
# them by hand (docs/operations.md, "Clustered services"):
#   - a RabbitMQ cluster of three nodes (payq-a, payq-b, payq-c @localhost) on 127.0.0.1
#     ports 5701, 5702, 5703, each with its own data directory, one shared Erlang cookie;
#   - a PostgreSQL primary (127.0.0.1:5441) with a streaming standby (127.0.0.1:5442) that
#     confirms every commit before the primary answers (synchronous_standby_names), so a
#     promotion loses nothing that was acknowledged.
# Everything lives under $PAYQ_CLUSTER_DIR (default /tmp/payq-cluster). It uses the machine's
# rabbitmq-server and PostgreSQL binaries (Debian's rabbitmq-server and postgresql packages).
#
#   scripts/cluster.sh start            start what is not running; rebuild a broken PostgreSQL pair
#   scripts/cluster.sh stop             stop everything and remove its data
#   scripts/cluster.sh env              the URLs to give payq (PAYQ_AMQP_URL, PAYQ_DATABASE_URL form)
#   scripts/cluster.sh status           what runs
#   scripts/cluster.sh rabbit-stop N    stop RabbitMQ node N (a, b or c); rabbit-start N starts it again
#   scripts/cluster.sh rabbit-queues    every queue of the cluster and its type
#   scripts/cluster.sh pg-kill-primary  the primary dies (immediate shutdown, like a lost machine)
#   scripts/cluster.sh pg-promote       the standby becomes the primary
#   scripts/cluster.sh pg-start         the PostgreSQL pair only (rebuilt if broken, as start does)
#   scripts/cluster.sh pg-reset         a fresh primary and standby
set -euo pipefail

DIR=${PAYQ_CLUSTER_DIR:-/tmp/payq-cluster}
NODES=(a b c)
RABBIT_BIN=${RABBIT_BIN:-/usr/lib/rabbitmq/bin}
PG_BIN=${PG_BIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
PG_PRIMARY_PORT=5441
PG_STANDBY_PORT=5442
COOKIE=payqclustercookie

rabbit_port() { case $1 in a) echo 5701 ;; b) echo 5702 ;; c) echo 5703 ;; *) echo "unknown node $1" >&2; exit 2 ;; esac; }

# The environment of node $1 (rabbitmq-server and rabbitmqctl read the same).
rabbit_env() {
    local node=$1 port
    port=$(rabbit_port "$node")
    local home=$DIR/rabbit-$node
    echo "HOME=$home RABBITMQ_NODENAME=payq-$node@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
        "RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$((port + 20000)) RABBITMQ_MNESIA_BASE=$home/mnesia" \
        "RABBITMQ_LOG_BASE=$home/log RABBITMQ_PID_FILE=$home/pid RABBITMQ_CONFIG_FILE=$home/rabbitmq" \
        "RABBITMQ_ADVANCED_CONFIG_FILE=$home/advanced.config RABBITMQ_CONF_ENV_FILE=$home/rabbitmq-env.conf" \
        "RABBITMQ_ENABLED_PLUGINS_FILE=$home/enabled_plugins ERL_EPMD_ADDRESS=127.0.0.1"
}

rabbitctl() { # node args...
    local node=$1
    shift
    env $(rabbit_env "$node") "$RABBIT_BIN/rabbitmqctl" -n "payq-$node@localhost" "$@"
}

rabbit_running() { rabbitctl "$1" ping >/dev/null 2>&1; }

rabbit_start() {
    local node=$1 home=$DIR/rabbit-$1
    if rabbit_running "$node"; then return; fi
    mkdir -p "$home/log"
    if [ ! -f "$home/.erlang.cookie" ]; then
        echo "$COOKIE" >"$home/.erlang.cookie"
        chmod 400 "$home/.erlang.cookie"
    fi
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$(rabbit_port "$node")" >"$home/rabbitmq.conf"
    echo '[].' >"$home/advanced.config"
    echo '[].' >"$home/enabled_plugins"
    : >"$home/rabbitmq-env.conf"
    rm -f "$home/pid"
    (cd "$home" && env $(rabbit_env "$node") "$RABBIT_BIN/rabbitmq-server" -detached >"$home/log/startup.log" 2>&1)
    # (-detached returns at once; wait reads the pid file the node writes and waits for it)
    rabbitctl "$node" wait --timeout 60 "$home/pid" >>"$home/log/startup.log" 2>&1 || {
        tail -20 "$home/log/startup.log" >&2
        exit 1
    }
}

rabbit_stop() {
    local node=$1
    if rabbit_running "$node"; then rabbitctl "$node" stop >/dev/null 2>&1; fi
}

rabbit_cluster_start() {
    local first=${NODES[0]}
    for node in "${NODES[@]}"; do rabbit_start "$node"; done
    for node in "${NODES[@]:1}"; do
        if rabbitctl "$node" cluster_status 2>/dev/null | grep -q "payq-$first@localhost"; then continue; fi
        {
            rabbitctl "$node" stop_app
            rabbitctl "$node" reset
            rabbitctl "$node" join_cluster "payq-$first@localhost"
            rabbitctl "$node" start_app
        } >>"$DIR/rabbit-$node/log/join.log" 2>&1 || {
            cat "$DIR/rabbit-$node/log/join.log" >&2
            exit 1
        }
    done
    echo "RabbitMQ cluster: payq-a, payq-b, payq-c on 127.0.0.1:5701-5703"
}

# PostgreSQL runs as the postgres user when started by root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_dir() { echo "$DIR/pg-$1"; }

pg_answers() { # port
    "$PG_BIN/psql" -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atqc "SELECT pg_is_in_recovery()" 2>/dev/null
}

pg_stop_all() {
    for role in primary standby; do
        if [ -f "$(pg_dir $role)/postmaster.pid" ]; then
            as_pg "$PG_BIN/pg_ctl" -D "$(pg_dir $role)" -m immediate stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$(pg_dir primary)" "$(pg_dir standby)" "$DIR/pg-logs"
}

pg_reset() {
    pg_stop_all
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    local primary standby
    primary=$(pg_dir primary)
    standby=$(pg_dir standby)
    local logs=$DIR/pg-logs
    mkdir -p "$primary" "$standby" "$logs"
    chmod 700 "$primary" "$standby"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$primary" "$standby" "$logs"
    as_pg "$PG_BIN/initdb" -D "$primary" -U postgres --auth=trust >"$logs/initdb.log"
    cat >>"$primary/postgresql.conf" <<EOF
port = $PG_PRIMARY_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
wal_level = replica
max_wal_senders = 5
hot_standby = on
synchronous_commit = on
synchronous_standby_names = '*'
EOF
    as_pg "$PG_BIN/pg_ctl" -D "$primary" -l "$logs/primary.log" -w start >/dev/null
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -D "$standby" -R -X stream \
        >"$logs/basebackup.log" 2>&1
    # The standby, once promoted, has no standby of its own: it must not wait for one.
    printf "port = %s\nsynchronous_standby_names = ''\n" "$PG_STANDBY_PORT" | as_pg tee -a "$standby/postgresql.auto.conf" >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$standby" -l "$logs/standby.log" -w start >/dev/null
    for _ in $(seq 1 50); do
        if [ "$(pg_answers $PG_STANDBY_PORT)" = t ]; then break; fi
        sleep 0.2
    done
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -d postgres -qc "CREATE DATABASE test" >/dev/null
    echo "PostgreSQL: primary 127.0.0.1:$PG_PRIMARY_PORT, synchronous standby 127.0.0.1:$PG_STANDBY_PORT"
}

pg_start() {
    if [ "$(pg_answers $PG_PRIMARY_PORT)" = f ] && [ "$(pg_answers $PG_STANDBY_PORT)" = t ]; then
        echo "PostgreSQL: primary 127.0.0.1:$PG_PRIMARY_PORT, synchronous standby 127.0.0.1:$PG_STANDBY_PORT"
        return
    fi
    pg_reset
}

env_lines() {
    local urls=() node
    for node in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(rabbit_port "$node")/%2f"); done
    (
        IFS=,
        echo "PAYQ_CLUSTER_AMQP_URL=${urls[*]}"
    )
    echo "PAYQ_CLUSTER_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT,127.0.0.1:$PG_STANDBY_PORT/test?target_session_attrs=read-write"
}

case ${1:-} in
    start)
        mkdir -p "$DIR"
        rabbit_cluster_start
        pg_start
        ;;
    stop)
        for node in "${NODES[@]}"; do rabbit_stop "$node" || true; done
        pg_stop_all
        rm -rf "$DIR"
        ;;
    env) env_lines ;;
    status)
        for node in "${NODES[@]}"; do
            if rabbit_running "$node"; then echo "rabbit $node: running"; else echo "rabbit $node: stopped"; fi
        done
        echo "postgres primary: in recovery=$(pg_answers $PG_PRIMARY_PORT || true)"
        echo "postgres standby: in recovery=$(pg_answers $PG_STANDBY_PORT || true)"
        ;;
    rabbit-queues)
        for node in "${NODES[@]}"; do
            if rabbit_running "$node"; then
                rabbitctl "$node" list_queues -q --no-table-headers name type 2>/dev/null
                exit 0
            fi
        done
        echo "no RabbitMQ node of the cluster runs" >&2
        exit 1
        ;;
    rabbit-stop) rabbit_stop "${2:?node a, b or c}" ;;
    rabbit-start) rabbit_start "${2:?node a, b or c}" ;;
    pg-kill-primary) as_pg "$PG_BIN/pg_ctl" -D "$(pg_dir primary)" -m immediate stop >/dev/null ;;
    pg-promote) as_pg "$PG_BIN/pg_ctl" -D "$(pg_dir standby)" -w promote >/dev/null ;;
    pg-start) mkdir -p "$DIR" && pg_start ;;
    pg-reset) pg_reset ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
