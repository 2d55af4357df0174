"""Reads keyshift's Delta tables with delta-rs's Python package (`deltalake`),
independently of keyshift, and prints what tests/e2e/interop.rs compares
with keyshift's own answers: row counts and a few KPI figures recomputed
from the rows.

    python read_tables.py ROOT FROM TO

ROOT is the table root (a directory or s3://bucket/prefix; the S3 endpoint
and credentials come from the AWS_* environment variables). FROM and TO
bound `occurred_at` (RFC 3339, TO excluded), as in `GET /v1/kpis`.
"""

import json
import os
import sys
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable


def table(root, name):
    uri = root.rstrip("/") + "/" + name
    options = None
    if uri.startswith("s3://"):
        keys = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION", "AWS_ALLOW_HTTP")
        options = {k: os.environ[k] for k in keys if k in os.environ}
    return DeltaTable(uri, storage_options=options).to_pyarrow_table()


def counts_by(rows, column):
    out = {}
    for key, n in zip(rows[column].to_pylist(), [1] * rows.num_rows):
        key = "null" if key is None else str(key)
        out[key] = out.get(key, 0) + n
    return out


def main():
    root, start, end = sys.argv[1], sys.argv[2], sys.argv[3]
    events = table(root, "auth_events")
    rejected = table(root, "rejected_events")
    ts = events["occurred_at"].type
    lo = pa.scalar(datetime.fromisoformat(start.replace("Z", "+00:00")), type=ts)
    hi = pa.scalar(datetime.fromisoformat(end.replace("Z", "+00:00")), type=ts)
    in_range = events.filter(
        pc.and_(pc.greater_equal(events["occurred_at"], lo), pc.less(events["occurred_at"], hi)))
    of_type = lambda t: in_range.filter(pc.equal(in_range["event_type"], t))

    enrolled = of_type("enrollment.succeeded")
    synced = pc.sum(pc.cast(pc.fill_null(enrolled["credential_backup_eligible"], False), pa.int64())).as_py() or 0
    succeeded = of_type("auth.succeeded")
    succeeded = succeeded.filter(pc.is_valid(succeeded["duration_ms"]))
    p50 = {}
    for method in sorted(set(succeeded["method"].to_pylist()), key=str):
        d = succeeded.filter(pc.equal(succeeded["method"], method))["duration_ms"]
        p50[str(method)] = pc.quantile(d, q=0.5, interpolation="linear")[0].as_py()
    if succeeded.num_rows:
        p50["all"] = pc.quantile(succeeded["duration_ms"], q=0.5, interpolation="linear")[0].as_py()

    print(json.dumps({
        "auth_events": events.num_rows,
        "distinct_event_ids": len(set(events["event_id"].to_pylist())),
        "rejected_events": rejected.num_rows,
        "credential_mix": {"synced": synced, "device_bound": enrolled.num_rows - synced},
        "time_to_sign_in_p50": p50,
        "recovery_started": counts_by(of_type("recovery.started"), "recovery_channel"),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
