#!/usr/bin/env bash
# Installs, starts and stops the real services bluetick's tests and demo run against, on
# loopback: a Kafka-protocol broker (tansu, from crates.io, sqlite storage) and ClickHouse
# (Debian's clickhouse-server). State, logs and PID files live in .run/; the tansu build is
# cached outside the clone ($BLUETICK_CACHE, default ~/.cache/bluetick) because it takes
# ~15 minutes on two cores; chdb-core (current ClickHouse, for schema checks) goes there too.
# `stop` ends only the processes `start` started; `start` gives tansu an empty store.
#
#   scripts/services.sh install | start | stop | status
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/.run"
CACHE="${BLUETICK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bluetick}"
TANSU_VERSION=0.6.0
TANSU="$CACHE/tansu-$TANSU_VERSION/bin/tansu"
# Current ClickHouse, embedded in PyPI's chdb-core: tests check the schema and queries on it too.
CHDB_VENV="$CACHE/chdb-venv"
# The deploy files' validator (scripts/check-deploy.sh).
DEPLOY_VENV="$CACHE/deploy-venv"
KAFKA_ADDR=127.0.0.1:9092
CH_HTTP=http://127.0.0.1:8123

log() { printf '[services] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up within ${secs}s; its log is in $RUN/"
  return 1
}

install() {
  if [ ! -x "$TANSU" ]; then
    log "building tansu $TANSU_VERSION into $CACHE (once; ~15 min on 2 cores)"
    cargo install tansu --version "$TANSU_VERSION" --features libsql \
      --root "$CACHE/tansu-$TANSU_VERSION" --quiet
  fi
  # ClickHouse; OpenSSL's headers for librdkafka's TLS and SASL/SCRAM; stunnel and the
  # openssl CLI for the TLS tests; Prometheus' promtool for the alert rules' tests.
  local need=()
  command -v clickhouse-server >/dev/null || need+=(clickhouse-server clickhouse-client)
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev pkg-config)
  command -v stunnel4 >/dev/null || need+=(stunnel4)
  command -v openssl >/dev/null || need+=(openssl)
  command -v promtool >/dev/null || need+=(prometheus)
  # Alertmanager's amtool (config check) and the Pushgateway the jobs' tests push to.
  command -v amtool >/dev/null || need+=(prometheus-alertmanager)
  command -v prometheus-pushgateway >/dev/null || need+=(prometheus-pushgateway)
  # ZooKeeper (on the machine's Java) for the replicated ClickHouse cluster of tests/cluster.rs.
  [ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing from Debian's packages: ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ ! -x "$DEPLOY_VENV/bin/kubernetes-validate" ]; then
    log "installing kubernetes-validate (the Kubernetes schemas) into $DEPLOY_VENV"
    python3 -m venv "$DEPLOY_VENV"
    "$DEPLOY_VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
  fi
  if ! "$CHDB_VENV/bin/python" -c 'import chdb' 2>/dev/null; then
    log "installing chdb-core (current ClickHouse, embedded) into $CHDB_VENV"
    python3 -m venv "$CHDB_VENV"
    "$CHDB_VENV/bin/pip" install --quiet --disable-pip-version-check chdb-core
  fi
  if ! "$CHDB_VENV/bin/python" -c 'import grpc_tools, google.protobuf' 2>/dev/null; then
    log "installing protoc and Google's protobuf runtime (grpcio-tools) into $CHDB_VENV"
    "$CHDB_VENV/bin/pip" install --quiet --disable-pip-version-check grpcio-tools protobuf
  fi
}

start_tansu() {
  if port_open "$KAFKA_ADDR"; then log "a broker already listens on $KAFKA_ADDR; using it"; return; fi
  mkdir -p "$RUN/tansu"
  # Each start begins from an empty store. It only ever holds test, demo and benchmark
  # traffic, and tansu's sqlite storage slows as the file grows: at 8 GB, one fetch took over
  # a minute, and 200k-row sink drains used about a quarter more CPU per row than on a fresh one.
  rm -f "$RUN/tansu/tansu.db" "$RUN/tansu/tansu.db-wal" "$RUN/tansu/tansu.db-shm"
  # tansu reads the sqlite path relative to its working directory.
  (cd "$RUN/tansu" && exec "$TANSU" broker --listener-url "tcp://$KAFKA_ADDR" \
    --advertised-listener-url "tcp://$KAFKA_ADDR" --storage-engine "sqlite://tansu.db" \
    >"$RUN/tansu.log" 2>&1) &
  echo $! >"$RUN/tansu.pid"
  wait_for "tansu" 30 port_open "$KAFKA_ADDR"
  log "tansu up on $KAFKA_ADDR (pid $(cat "$RUN/tansu.pid"))"
}

ch_ping() { curl -fsS "$CH_HTTP/ping" >/dev/null 2>&1; }

start_clickhouse() {
  if ch_ping; then log "ClickHouse already answers on $CH_HTTP; using it"; return; fi
  mkdir -p "$RUN"
  local cfg=/etc/clickhouse-server/config.xml
  if [ "$(id -u)" = 0 ]; then
    clickhouse-server --config-file="$cfg" >"$RUN/clickhouse.log" 2>&1 &
  else
    sudo -u clickhouse clickhouse-server --config-file="$cfg" >"$RUN/clickhouse.log" 2>&1 &
  fi
  echo $! >"$RUN/clickhouse.pid"
  wait_for "ClickHouse" 60 ch_ping
  log "ClickHouse up on $CH_HTTP (pid $(cat "$RUN/clickhouse.pid"))"
}

stop_one() {
  local name=$1 pidfile="$RUN/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

status() {
  port_open "$KAFKA_ADDR" && log "broker: up on $KAFKA_ADDR" || log "broker: down"
  ch_ping && log "ClickHouse: up on $CH_HTTP" || log "ClickHouse: down"
}

case "${1:-}" in
  install) install ;;
  start) install; start_tansu; start_clickhouse ;;
  stop) stop_one tansu; stop_one clickhouse ;;
  status) status ;;
  tansu-path) echo "$TANSU" ;;
  *) echo "usage: $0 install|start|stop|status|tansu-path" >&2; exit 2 ;;
esac
