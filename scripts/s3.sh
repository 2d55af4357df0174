#!/usr/bin/env bash
# A real S3-compatible server (S3Proxy, filesystem backend) for the
# object-storage tests and for trying keyshift on S3 without a cloud account.
# The jars come from Maven Central into a cache directory on first use and
# run with `java -cp`, like scripts/kafka.sh.
#
#   scripts/s3.sh start     fetch if needed, start, wait until it answers, create the bucket
#   scripts/s3.sh stop      stop (SIGTERM, then SIGKILL after 15 s)
#   scripts/s3.sh status    exit 0 when the server is up
#   scripts/s3.sh fetch     only download the jars
#   scripts/s3.sh reset     stop and delete every stored object
#   scripts/s3.sh env       print the environment keyshift needs to reach it
#
# Environment: KEYSHIFT_S3_PORT (9000), KEYSHIFT_S3_HOME (target/s3proxy),
# KEYSHIFT_S3_BUCKET (keyshift). Listens on 127.0.0.1 only; the access key
# and secret are fixed test values (see `env`). Needs Java 17+ and Maven.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
S3_HOME=${KEYSHIFT_S3_HOME:-$ROOT/target/s3proxy}
PORT=${KEYSHIFT_S3_PORT:-9000}
BUCKET=${KEYSHIFT_S3_BUCKET:-keyshift}
LIBS=$S3_HOME/libs
NODE=$S3_HOME/node-$PORT
DATA=$NODE/data
CONF=$NODE/s3proxy.conf
PIDFILE=$NODE/s3proxy.pid
LOG=$NODE/s3proxy.log
ENDPOINT=http://127.0.0.1:$PORT
ACCESS_KEY=keyshift
SECRET_KEY=keyshift-test-secret

say() { echo "s3.sh: $*" >&2; }

# shellcheck source=lib/java-service.sh
. "$ROOT/scripts/lib/java-service.sh"

fetch() { fetch_jars "$ROOT/scripts/s3/pom.xml" "$LIBS" "S3Proxy"; }

running() { pid_running "$PIDFILE"; }

answers() { port_answers "$PORT"; }

configure() {
  # A bucket of the filesystem backend is a directory under its base dir.
  mkdir -p "$DATA/$BUCKET"
  cat >"$CONF" <<PROPS
s3proxy.endpoint=$ENDPOINT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY
s3proxy.credential=$SECRET_KEY
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DATA
PROPS
}

start() {
  if running; then say "already running on $ENDPOINT (pid $(cat "$PIDFILE"))"; return; fi
  fetch
  configure
  say "starting S3Proxy on $ENDPOINT, bucket $BUCKET (log: $LOG)"
  : >"$LOG"
  nohup java -Xms64m -Xmx512m \
    -Dlogback.configurationFile="$ROOT/scripts/s3/logback.xml" \
    -cp "$LIBS/*" org.gaul.s3proxy.Main --properties "$CONF" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if ! running; then say "S3Proxy exited during start-up:"; tail -30 "$LOG" >&2; exit 1; fi
    if answers; then
      say "S3Proxy up (pid $(cat "$PIDFILE"))"
      return
    fi
    sleep 0.5
  done
  say "S3Proxy did not come up within 60 s:"; tail -30 "$LOG" >&2
  stop
  exit 1
}

stop() { stop_pid "$PIDFILE" 15 "S3Proxy"; }

print_env() {
  # The names object_store (under delta-rs) reads from the environment.
  cat <<ENV
AWS_ENDPOINT_URL=$ENDPOINT
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=us-east-1
AWS_ALLOW_HTTP=true
ENV
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running && answers; then echo "up $ENDPOINT"; else echo "down"; exit 1; fi ;;
  fetch) fetch ;;
  reset) stop; rm -rf "$NODE" ;;
  env) print_env ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
