#!/usr/bin/env bash
# Notifications end to end (issue: notifications on RabbitMQ): a private RabbitMQ node, Vela
# with driver = "messagingv2", and a consumer written with oslo.messaging from PyPI
# (e2e/notifications/check.py) that checks event types, order, payloads, a broker outage and
# a kill -9 of Vela while the outbox is not empty.
#
# Environment:
#   VELA_BIN          server binary (default: $REPO/target/release/vela)
#   VELA_NOTIFY_VENV  venv with oslo.messaging (default: $REPO/.venv-notify; created if missing)
#   VELA_E2E_KEEP=1   keep the work dir (server and broker logs)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VELA_BIN="${VELA_BIN:-$REPO/target/release/vela}"
VENV="${VELA_NOTIFY_VENV:-$REPO/.venv-notify}"
RABBIT_BIN=/usr/lib/rabbitmq/bin
WORK="$(mktemp -d "${TMPDIR:-/tmp}/vela-notify.XXXXXX")"
AMQP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RABBIT_NODE="vela-notify-$AMQP_PORT@localhost"

cleanup() {
  "$RABBIT_BIN/rabbitmqctl" -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true
  if [ "${VELA_E2E_KEEP:-0}" = 1 ]; then echo "# kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x "$RABBIT_BIN/rabbitmq-server" ] || { echo "RabbitMQ is not installed ($RABBIT_BIN)" >&2; exit 1; }
T0=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'oslo.messaging>=14' requests prometheus-client
fi
echo "# consumer venv ready after $((SECONDS - T0)) s"

# A broker of its own: the test stops and starts it, which the machine's RabbitMQ (used by
# Cinder in the same run) must not see.
mkdir -p "$WORK/rabbit"
echo '[].' >"$WORK/rabbit/enabled_plugins"
(
  cd "$WORK/rabbit"
  RABBITMQ_NODENAME="$RABBIT_NODE" RABBITMQ_NODE_PORT="$AMQP_PORT" \
  RABBITMQ_DIST_PORT=$((AMQP_PORT % 20000 + 30000)) RABBITMQ_MNESIA_BASE="$WORK/rabbit/mnesia" \
  RABBITMQ_LOG_BASE="$WORK/rabbit/log" RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbit/enabled_plugins" \
  RABBITMQ_PID_FILE="$WORK/rabbit/pid" RABBITMQ_CONFIG_FILE="$WORK/rabbit/none" \
    exec "$RABBIT_BIN/rabbitmq-server" >"$WORK/rabbit/out" 2>&1
) &
for _ in $(seq 100); do [ -s "$WORK/rabbit/pid" ] && break; sleep 0.2; done
"$RABBIT_BIN/rabbitmqctl" -n "$RABBIT_NODE" wait "$WORK/rabbit/pid" --timeout 90 >/dev/null
echo "# RabbitMQ node $RABBIT_NODE ready after $((SECONDS - T0)) s"

WORK="$WORK" VELA_BIN="$VELA_BIN" AMQP_PORT="$AMQP_PORT" RABBIT_NODE="$RABBIT_NODE" \
  RABBITMQCTL="$RABBIT_BIN/rabbitmqctl" "$VENV/bin/python" "$REPO/e2e/notifications/check.py" ||
  { tail -30 "$WORK/vela.log" >&2; exit 1; }
echo "# notifications suite took $((SECONDS - T0)) s"
