#!/bin/bash
# Start or stop a throw-away RabbitMQ on loopback for tests (no systemd needed).
#   tools/rabbitmq.sh start   -> prints the transport URL on stdout
#   tools/rabbitmq.sh stop
#   tools/rabbitmq.sh add-vhost NAME    (guest may do anything there)
#   tools/rabbitmq.sh delete-vhost NAME
# GC_RABBIT_DIR (default /tmp/gc-rabbit) and GC_RABBIT_PORT (default 5672).
set -euo pipefail
R=${GC_RABBIT_DIR:-/tmp/gc-rabbit}
PORT=${GC_RABBIT_PORT:-5672}
SBIN=/usr/lib/rabbitmq/bin
export HOME=$R RABBITMQ_CONF_ENV_FILE=$R/rabbitmq-env.conf RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$PORT \
    RABBITMQ_DIST_PORT=$((PORT + 20000)) RABBITMQ_CONFIG_FILE=$R/rabbitmq \
    RABBITMQ_ENABLED_PLUGINS_FILE=$R/enabled_plugins RABBITMQ_MNESIA_BASE=$R/mnesia \
    RABBITMQ_LOG_BASE=$R/log RABBITMQ_PID_FILE=$R/rabbit.pid ERL_EPMD_ADDRESS=127.0.0.1
URL="rabbit://guest:guest@127.0.0.1:$PORT/"

case "${1:-}" in
start)
    if [ -f "$R/rabbit.pid" ] && kill -0 "$(cat "$R/rabbit.pid")" 2>/dev/null; then
        echo "$URL"; exit 0
    fi
    rm -rf "$R"; mkdir -p "$R/mnesia" "$R/log"
    echo '[].' > "$R/enabled_plugins"; touch "$R/rabbitmq-env.conf"
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$PORT" > "$R/rabbitmq.conf"
    setsid nohup "$SBIN/rabbitmq-server" > "$R/log/stdout.log" 2>&1 < /dev/null &
    "$SBIN/rabbitmqctl" -q --timeout 90 wait "$R/rabbit.pid" >/dev/null
    "$SBIN/rabbitmqctl" -q --timeout 90 await_startup >/dev/null
    echo "$URL"
    ;;
stop)
    if [ -f "$R/rabbit.pid" ]; then
        "$SBIN/rabbitmqctl" -q stop "$R/rabbit.pid" >/dev/null 2>&1 || true
    fi
    # rabbitmq-server leaves epmd behind; end only the one bound to loopback for us.
    pkill -f 'epmd.*-address 127.0.0.1' 2>/dev/null || pkill -x epmd 2>/dev/null || true
    rm -rf "$R"
    ;;
add-vhost)
    "$SBIN/rabbitmqctl" -q add_vhost "${2:?vhost name}"
    "$SBIN/rabbitmqctl" -q set_permissions -p "$2" guest '.*' '.*' '.*'
    ;;
delete-vhost)
    "$SBIN/rabbitmqctl" -q delete_vhost "${2:?vhost name}"
    ;;
*)
    echo "usage: $0 start|stop|add-vhost NAME|delete-vhost NAME" >&2; exit 2 ;;
esac
