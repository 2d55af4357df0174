#!/usr/bin/env bash
# The full test suite, as CI runs it: formatting, lints, every test — the
# Kafka tests against a real Apache Kafka broker this script starts.
# Usage: scripts/test.sh
#
# The broker (scripts/kafka.sh) listens on 127.0.0.1:$KEYSHIFT_TEST_KAFKA_PORT
# (default 19092) and is stopped on exit. If it cannot start, CI fails; outside
# CI the Kafka tests are skipped and say so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> starting Apache Kafka for the Kafka tests"
export KEYSHIFT_KAFKA_PORT=${KEYSHIFT_TEST_KAFKA_PORT:-19092}
if scripts/kafka.sh start; then
  trap 'scripts/kafka.sh stop' EXIT
  export KEYSHIFT_TEST_KAFKA=127.0.0.1:$KEYSHIFT_KAFKA_PORT
elif [[ -n ${CI:-} ]]; then
  echo "the Kafka broker did not start; in CI the Kafka tests must run" >&2
  exit 1
else
  echo "!!! WARNING: no Kafka broker; the Kafka tests will be SKIPPED !!!" >&2
fi

echo "==> cargo test --workspace"
cargo test --workspace
