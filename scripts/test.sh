#!/usr/bin/env bash
# The full test suite, as CI runs it: formatting, lints, the dashboard and
# alert-rule checks, every test — the Kafka tests against a real Apache Kafka
# broker this script starts, the object-storage tests against a real S3 API
# server (S3Proxy) it starts, the Prometheus tests against a real Prometheus —
# and the docker-compose check. Everything is built with `--features s3`.
# Usage: scripts/test.sh
#
# The check tools (scripts/tools.sh), the Kafka and the S3Proxy jars are
# fetched in the background while clippy compiles: on a fresh machine that is
# mostly waiting on the network. Their output is in target/ci/setup.log (shown
# if they fail). The broker (scripts/kafka.sh) listens on
# 127.0.0.1:$KEYSHIFT_TEST_KAFKA_PORT (default 19092), S3Proxy (scripts/s3.sh)
# on 127.0.0.1:$KEYSHIFT_TEST_S3_PORT (default 19000); both are stopped on
# exit. If either cannot start, CI fails; outside CI the tests that need it
# are skipped and say so loudly.
# Each phase's wall time is printed at the end (also when a phase fails).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- phase timing -------------------------------------------------------------
SCRIPT_START=$SECONDS
PHASES=()
PHASE_NAME=""
PHASE_START=$SECONDS
phase() {
  end_phase
  PHASE_NAME=$1
  PHASE_START=$SECONDS
  echo "==> $1"
}
end_phase() {
  if [[ -n $PHASE_NAME ]]; then
    PHASES+=("$(printf '%6ss  %s' $((SECONDS - PHASE_START)) "$PHASE_NAME")")
  fi
  PHASE_NAME=""
}
STARTED=()  # the scripts of the servers started for the tests
FEATURES=(--features s3)
on_exit() {
  local rc=$?
  [[ -n $PHASE_NAME ]] && PHASES+=("$(printf '%6ss  %s  (unfinished)' $((SECONDS - PHASE_START)) "$PHASE_NAME")")
  for script in "${STARTED[@]}"; do "$script" stop || true; done
  echo "==> phases (wall time)"
  printf '  %s\n' "${PHASES[@]}"
  echo "  total $((SECONDS - SCRIPT_START))s, exit status $rc"
}
trap on_exit EXIT

# --- setup in the background ----------------------------------------------------
mkdir -p target/ci
SETUP_LOG=target/ci/setup.log
(scripts/tools.sh && scripts/kafka.sh fetch && scripts/s3.sh fetch) >"$SETUP_LOG" 2>&1 &
SETUP_PID=$!
wait_setup() {
  if ! wait "$SETUP_PID"; then
    cat "$SETUP_LOG" >&2
    echo "installing the check tools or fetching Kafka or S3Proxy failed (log above: $SETUP_LOG)" >&2
    exit 1
  fi
  cat "$SETUP_LOG"
}

# start_server WHAT SCRIPT VAR VALUE: `SCRIPT start`, then export VAR=VALUE
# (what the tests look for). In CI a server that does not start fails the
# run; outside CI the tests that need it are skipped, loudly.
start_server() {
  local what=$1 script=$2 var=$3 value=$4
  if "$script" start; then
    STARTED+=("$script")
    export "$var=$value"
  elif [[ -n ${CI:-} ]]; then
    echo "$what did not start; in CI the tests that need it must run" >&2
    exit 1
  else
    echo "!!! WARNING: no $what; the tests that need it will be SKIPPED !!!" >&2
  fi
}

phase "cargo fmt --check"
cargo fmt --all --check

phase "cargo clippy --all-targets --features s3 -- -D warnings"
cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings

phase "waiting for the check tools, the Kafka and the S3Proxy jars (scripts/tools.sh, kafka.sh/s3.sh fetch)"
wait_setup

phase "the checkers can fail (go test)"
GO=$(command -v go || echo /usr/local/go/bin/go)
(cd tools/dashcheck && "$GO" test ./...)
(cd tools/composecheck && "$GO" test ./...)

phase "dashboards and alert rules"
scripts/check-dashboards.sh --no-install
scripts/check-dashboards.sh --no-install --self-test

phase "cargo test --workspace --features s3 --no-run (build)"
cargo test --workspace "${FEATURES[@]}" --no-run

phase "starting Apache Kafka for the Kafka tests"
export KEYSHIFT_KAFKA_PORT=${KEYSHIFT_TEST_KAFKA_PORT:-19092}
start_server "the Kafka broker" scripts/kafka.sh KEYSHIFT_TEST_KAFKA "127.0.0.1:$KEYSHIFT_KAFKA_PORT"

phase "starting S3Proxy for the object-storage tests"
export KEYSHIFT_S3_PORT=${KEYSHIFT_TEST_S3_PORT:-19000}
start_server "S3Proxy" scripts/s3.sh KEYSHIFT_TEST_S3 "http://127.0.0.1:$KEYSHIFT_S3_PORT"

phase "cargo test --workspace --features s3"
cargo test --workspace "${FEATURES[@]}"

phase "docker-compose.yml against the code"
python3 scripts/check-compose.py --keyshift target/debug/keyshift
python3 scripts/check-compose.py --keyshift target/debug/keyshift --self-test
end_phase
