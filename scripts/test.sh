#!/usr/bin/env bash
# The full test suite, as CI runs it: formatting, lints, the dashboard and
# alert-rule checks, every test — the Kafka tests against a real Apache Kafka
# broker this script starts, the Prometheus tests against a real Prometheus —
# and the docker-compose check.
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

echo "==> installing the check tools (promtool, Prometheus, check-jsonschema, Go checkers)"
scripts/tools.sh

echo "==> the checkers can fail (go test)"
GO=$(command -v go || echo /usr/local/go/bin/go)
(cd tools/dashcheck && "$GO" test ./...)
(cd tools/composecheck && "$GO" test ./...)

echo "==> dashboards and alert rules"
scripts/check-dashboards.sh --no-install
scripts/check-dashboards.sh --no-install --self-test

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

echo "==> docker-compose.yml against the code"
python3 scripts/check-compose.py --keyshift target/debug/keyshift
python3 scripts/check-compose.py --keyshift target/debug/keyshift --self-test
