#!/usr/bin/env bash
# The full test suite, as CI runs it: formatting, lints, the dashboard and
# alert-rule checks, every test — the Kafka tests against a real Apache Kafka
# broker this script starts, the Prometheus tests against a real Prometheus —
# and the docker-compose check.
# Usage: scripts/test.sh
#
# The check tools (scripts/tools.sh) and the Kafka jars are fetched in the
# background while clippy compiles: on a fresh machine that is mostly waiting
# on the network. Their output is in target/ci/setup.log (shown if they fail).
# The broker (scripts/kafka.sh) listens on 127.0.0.1:$KEYSHIFT_TEST_KAFKA_PORT
# (default 19092) and is stopped on exit. If it cannot start, CI fails; outside
# CI the Kafka tests are skipped and say so loudly.
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
KAFKA_STARTED=""
on_exit() {
  local rc=$?
  [[ -n $PHASE_NAME ]] && PHASES+=("$(printf '%6ss  %s  (unfinished)' $((SECONDS - PHASE_START)) "$PHASE_NAME")")
  if [[ -n $KAFKA_STARTED ]]; then scripts/kafka.sh stop || true; fi
  echo "==> phases (wall time)"
  printf '  %s\n' "${PHASES[@]}"
  echo "  total $((SECONDS - SCRIPT_START))s, exit status $rc"
}
trap on_exit EXIT

# --- setup in the background ----------------------------------------------------
mkdir -p target/ci
SETUP_LOG=target/ci/setup.log
(scripts/tools.sh && scripts/kafka.sh fetch) >"$SETUP_LOG" 2>&1 &
SETUP_PID=$!
wait_setup() {
  if ! wait "$SETUP_PID"; then
    cat "$SETUP_LOG" >&2
    echo "installing the check tools or fetching Kafka failed (log above: $SETUP_LOG)" >&2
    exit 1
  fi
  cat "$SETUP_LOG"
}

phase "cargo fmt --check"
cargo fmt --all --check

phase "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

phase "waiting for the check tools and the Kafka jars (scripts/tools.sh, kafka.sh fetch)"
wait_setup

phase "the checkers can fail (go test)"
GO=$(command -v go || echo /usr/local/go/bin/go)
(cd tools/dashcheck && "$GO" test ./...)
(cd tools/composecheck && "$GO" test ./...)

phase "dashboards and alert rules"
scripts/check-dashboards.sh --no-install
scripts/check-dashboards.sh --no-install --self-test

phase "cargo test --workspace --no-run (build)"
cargo test --workspace --no-run

phase "starting Apache Kafka for the Kafka tests"
export KEYSHIFT_KAFKA_PORT=${KEYSHIFT_TEST_KAFKA_PORT:-19092}
if scripts/kafka.sh start; then
  KAFKA_STARTED=1
  export KEYSHIFT_TEST_KAFKA=127.0.0.1:$KEYSHIFT_KAFKA_PORT
elif [[ -n ${CI:-} ]]; then
  echo "the Kafka broker did not start; in CI the Kafka tests must run" >&2
  exit 1
else
  echo "!!! WARNING: no Kafka broker; the Kafka tests will be SKIPPED !!!" >&2
fi

phase "cargo test --workspace"
cargo test --workspace

phase "docker-compose.yml against the code"
python3 scripts/check-compose.py --keyshift target/debug/keyshift
python3 scripts/check-compose.py --keyshift target/debug/keyshift --self-test
end_phase
