#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft, broker + controller) for tests and
# development, without Docker: the jars come from Maven Central into a cache
# directory on first use and run with `java -cp`.
#
#   scripts/kafka.sh start     fetch if needed, format storage once, start, wait until it answers
#   scripts/kafka.sh stop      stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh status    exit 0 when the broker is up
#   scripts/kafka.sh fetch     only download the jars
#   scripts/kafka.sh reset     stop and delete the broker's data
#   scripts/kafka.sh consumer-groups ARGS...   kafka-consumer-groups (bootstrap server preset)
#   scripts/kafka.sh topics ARGS...            kafka-topics (bootstrap server preset)
#
# Environment: KEYSHIFT_KAFKA_PORT (9092), KEYSHIFT_KAFKA_HOME (target/kafka),
# KEYSHIFT_KAFKA_HEAP (512m). Needs Java 17+ and Maven.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KAFKA_HOME=${KEYSHIFT_KAFKA_HOME:-$ROOT/target/kafka}
PORT=${KEYSHIFT_KAFKA_PORT:-9092}
CONTROLLER_PORT=$((PORT + 1))
HEAP=${KEYSHIFT_KAFKA_HEAP:-512m}
LIBS=$KAFKA_HOME/libs
NODE=$KAFKA_HOME/node-$PORT
CONF=$NODE/server.properties
PIDFILE=$NODE/broker.pid
LOG=$NODE/broker.log
BOOTSTRAP=127.0.0.1:$PORT

say() { echo "kafka.sh: $*" >&2; }

# shellcheck source=lib/java-service.sh
. "$ROOT/scripts/lib/java-service.sh"

fetch() { fetch_jars "$ROOT/scripts/kafka/pom.xml" "$LIBS" "Apache Kafka"; }

java_cp() { java -Xms64m -Xmx256m -cp "$LIBS/*" "$@"; }

running() { pid_running "$PIDFILE"; }

answers() { port_answers "$PORT"; }

configure() {
  mkdir -p "$NODE/data"
  cat >"$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$NODE/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
PROPS
  if [[ ! -f $NODE/data/meta.properties ]]; then
    local id
    id=$(java_cp kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java_cp kafka.tools.StorageTool format -t "$id" -c "$CONF" >/dev/null
  fi
}

start() {
  if running; then say "already running on $BOOTSTRAP (pid $(cat "$PIDFILE"))"; return; fi
  fetch
  configure
  say "starting broker on $BOOTSTRAP (log: $LOG)"
  : >"$LOG"
  nohup java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$CONF" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if ! running; then say "broker exited during start-up:"; tail -30 "$LOG" >&2; exit 1; fi
    if grep -q "Kafka Server started" "$LOG" && answers; then
      say "broker up (pid $(cat "$PIDFILE"))"
      return
    fi
    sleep 0.5
  done
  say "broker did not come up within 60 s:"; tail -30 "$LOG" >&2
  stop
  exit 1
}

stop() { stop_pid "$PIDFILE" 30 "broker"; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && answers; then echo "up $BOOTSTRAP"; else echo "down"; exit 1; fi ;;
  fetch) fetch ;;
  reset) stop; rm -rf "$NODE" ;;
  consumer-groups) shift; fetch; java_cp org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
  topics) shift; fetch; java_cp org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
