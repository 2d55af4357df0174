#!/usr/bin/env bash
# Apache Spark reads keyshift's tables: imports the hand-worked golden
# dataset (tests/golden/kpi-events.ndjson) with `keyshift import`, on local
# disk and on the S3 server (scripts/s3.sh), then reads both with pyspark and
# Delta Lake's connector and checks the row counts and a few KPI figures
# against `keyshift kpis --json` (tests/interop/spark_reads_tables.py).
#
#   scripts/interop-spark.sh          run both (local, S3)
#   scripts/interop-spark.sh local    only the local-disk tables
#
# Not part of scripts/test.sh: it downloads ~1 GB (pyspark, the AWS SDK
# bundle that Hadoop's S3A needs) and starts a JVM per run. delta-rs's
# Python reader runs in CI instead (tests/e2e/interop.rs). Results are
# recorded in docs/scaling.md.
#
# Environment: KEYSHIFT_BIN (default: target/debug/keyshift, built with
# --features s3 when missing). Needs Java 17+, Maven and Python 3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYSPARK_VERSION=4.0.1
VENV=$ROOT/.tools/spark-venv
LIBS=$ROOT/target/spark/libs
GOLDEN=$ROOT/tests/golden/kpi-events.ndjson
FROM=2026-11-02T00:00:00Z
TO=2026-11-04T00:00:00Z
BIN=${KEYSHIFT_BIN:-$ROOT/target/debug/keyshift}
WHERE=${1:-all}

say() { echo "interop-spark.sh: $*" >&2; }

# java-service.sh brings lib/packages.sh (make_venv) with it.
# shellcheck source=lib/java-service.sh
. "$ROOT/scripts/lib/java-service.sh"

install_pyspark() {
  if [[ $("$VENV/bin/python" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null) == "$PYSPARK_VERSION" ]]; then
    return
  fi
  say "installing pyspark $PYSPARK_VERSION into $VENV"
  make_venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
}

# The connector jars, minus every artifact pyspark already ships (Spark's
# own Hadoop, Parquet, Jackson and Scala win; two copies of a class on one
# class path is how these runs fail).
connector_jars() {
  local spark_jars; spark_jars=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
  local jar name list=()
  for jar in "$LIBS"/*.jar; do
    name=$(basename "$jar" | sed 's/-[0-9].*//')
    if compgen -G "$spark_jars/$name-[0-9]*.jar" >/dev/null; then continue; fi
    list+=("$jar")
  done
  (IFS=,; echo "${list[*]}")
}

keyshift_bin() {
  if [[ -x $BIN ]]; then return; fi
  say "building keyshift with --features s3"
  (cd "$ROOT" && cargo build --quiet --features s3 --bin keyshift)
}

# check NAME ROOT: import into ROOT, ask keyshift, ask Spark.
check() {
  local name=$1 root=$2 work; work=$(mktemp -d)
  KEYSHIFT__STORE__URI=$root RUST_LOG=warn "$BIN" import --no-progress --data-dir "$work" "$GOLDEN" >/dev/null
  KEYSHIFT__STORE__URI=$root RUST_LOG=warn "$BIN" kpis --json --data-dir "$work" \
    --rp-id golden.example --from "$FROM" --to "$TO" \
    --kpi credential_mix,time_to_sign_in_p50,recovery_per_1k_signins >"$work/kpis.json"
  say "$name: Spark reads $root"
  local started=$SECONDS
  # Spark's start-up chatter (log4j WARN lines, SLF4J's notice) is dropped;
  # errors, tracebacks and MISMATCH lines pass.
  if SPARK_JARS=$(connector_jars) SPARK_LOCAL_IP=127.0.0.1 \
    "$VENV/bin/python" "$ROOT/tests/interop/spark_reads_tables.py" \
    "$root" "$FROM" "$TO" "$work/kpis.json" \
    2> >(grep -v -E '^(WARNING|Using |Setting default log level|To adjust logging|SLF4J)|^[0-9/]+ [0-9:]+ WARN ' >&2); then
    say "$name: same rows and figures as keyshift ($((SECONDS - started)) s)"
  else
    say "$name: FAILED"; rm -rf "$work"; return 1
  fi
  rm -rf "$work"
}

install_java_maven
install_pyspark
fetch_jars "$ROOT/scripts/spark/pom.xml" "$LIBS" "Delta Lake connector and S3A"
keyshift_bin

status=0
local_root=$(mktemp -d)/tables
check local "$local_root" || status=1
rm -rf "$(dirname "$local_root")"

if [[ $WHERE == all ]]; then
  started_s3=
  if ! "$ROOT/scripts/s3.sh" status >/dev/null 2>&1; then
    "$ROOT/scripts/s3.sh" start
    started_s3=1
  fi
  while IFS= read -r line; do export "${line?}"; done < <("$ROOT/scripts/s3.sh" env)
  check s3 "s3://${KEYSHIFT_S3_BUCKET:-keyshift}/interop-spark-$(date +%s)-$$" || status=1
  if [[ -n $started_s3 ]]; then "$ROOT/scripts/s3.sh" stop; fi
fi

if [[ $status == 0 ]]; then say "all passed"; else say "FAILED"; fi
exit $status
