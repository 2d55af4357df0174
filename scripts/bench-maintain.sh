#!/usr/bin/env bash
# Table maintenance acceptance bench: 5,000 small commits, then one pass.
#
#   cargo build --release --bin keyshift
#   scripts/bench-maintain.sh [DATA_DIR] [COMMITS] [PER_COMMIT]
#
# `keyshift bench small-commits` writes COMMITS commits (default 5,000) of
# PER_COMMIT events (default 100) over 30 day partitions, each recording a
# Kafka-style stream position, as a streaming writer leaves a table between
# passes. Then: the table's state (data files, rows, distinct ids, stored
# position) and `GET /v1/kpis` timings (`keyshift bench kpis` on the same
# data dir: 30 days by day with a platform breakdown, cold and 3 warm),
# `keyshift maintain`, and the same measurements again. Results are
# recorded in docs/benchmarks.md, with this command line.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KEYSHIFT_BIN:-target/release/keyshift}
DIR=${1:-target/maintain-bench}
COMMITS=${2:-5000}
PER=${3:-100}
[[ -x $BIN ]] || { echo "build first: cargo build --release --bin keyshift" >&2; exit 1; }
export RUST_LOG=${RUST_LOG:-warn}
# Before maintenance a KPI request takes longer than the default 30 s limit.
export KEYSHIFT__STORE__QUERY_TIMEOUT=${KEYSHIFT__STORE__QUERY_TIMEOUT:-20m}

disk_files() { find "$DIR/tables/auth_events" -name '*.parquet' -not -path '*_delta_log*' | wc -l; }
kpis() { "$BIN" bench kpis --data-dir "$DIR" --events $((COMMITS * PER)) --days 30 --rounds 3 | grep -E 'kpis|funnel'; }

rm -rf "$DIR"
echo "== $COMMITS commits of $PER events"
"$BIN" bench small-commits --data-dir "$DIR" --commits "$COMMITS" --per-commit "$PER"
echo "Parquet files on disk: $(disk_files)"
echo "== before maintenance"
kpis
echo "== keyshift maintain"
start=$(date +%s%N)
"$BIN" maintain --data-dir "$DIR"
echo "maintain took $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo "== after maintenance"
"$BIN" bench small-commits --data-dir "$DIR" --inspect
echo "Parquet files on disk: $(disk_files) (replaced files stay for maintenance.vacuum_grace)"
kpis
