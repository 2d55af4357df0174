"""Reads keyshift's Delta tables with Apache Spark (pyspark + Delta Lake's
connector), independently of keyshift, recomputes a few KPI figures with
Spark SQL and compares them with what `keyshift kpis --json` reported for
the same range. Run by scripts/interop-spark.sh; exits 1 on any difference.

    python spark_reads_tables.py ROOT FROM TO KPIS_JSON

ROOT is the table root (a directory or s3://bucket/prefix, read as s3a://;
the S3 endpoint and credentials come from the AWS_* environment variables).
FROM and TO bound `occurred_at` (RFC 3339, TO excluded), as in
`GET /v1/kpis`. SPARK_JARS lists the connector jars, comma-separated.
"""

import json
import os
import sys
from datetime import datetime, timezone

from pyspark.sql import SparkSession


def session():
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("keyshift-interop")
        .config("spark.jars", os.environ["SPARK_JARS"])
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog",
                "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        # Day boundaries and the range are UTC, as in keyshift.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        s3a = {
            "endpoint": endpoint,
            "path.style.access": "true",
            "connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
            "access.key": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "secret.key": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "endpoint.region": os.environ.get("AWS_REGION", "us-east-1"),
            "aws.credentials.provider":
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }
        for key, value in s3a.items():
            builder = builder.config("spark.hadoop.fs.s3a." + key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def rows(spark, sql):
    return [r.asDict() for r in spark.sql(sql).collect()]


def from_spark(spark, root, start, end):
    base = root.rstrip("/")
    if base.startswith("s3://"):
        base = "s3a://" + base[len("s3://"):]
    for name in ("auth_events", "rejected_events"):
        spark.read.format("delta").load(f"{base}/{name}").createOrReplaceTempView(name)
    lo = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(timezone.utc)
    hi = datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(timezone.utc)
    spark.sql(f"""
        CREATE OR REPLACE TEMP VIEW in_range AS
        SELECT * FROM auth_events
        WHERE occurred_at >= TIMESTAMP '{lo:%Y-%m-%d %H:%M:%S}'
          AND occurred_at <  TIMESTAMP '{hi:%Y-%m-%d %H:%M:%S}'""")

    [counts] = rows(spark, """
        SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM auth_events""")
    [rejected] = rows(spark, "SELECT count(*) AS n FROM rejected_events")
    [mix] = rows(spark, """
        SELECT count_if(coalesce(credential_backup_eligible, false)) AS synced,
               count_if(NOT coalesce(credential_backup_eligible, false)) AS device_bound
        FROM in_range WHERE event_type = 'enrollment.succeeded'""")
    # percentile() is exact with linear interpolation, like percentile_cont.
    p50 = rows(spark, """
        SELECT method, percentile(duration_ms, 0.5) AS p50
        FROM in_range
        WHERE event_type = 'auth.succeeded' AND duration_ms IS NOT NULL
        GROUP BY method""")
    recovery = rows(spark, """
        SELECT coalesce(recovery_channel, 'null') AS channel, count(*) AS n
        FROM in_range WHERE event_type = 'recovery.started'
        GROUP BY 1""")
    return {
        "auth_events": counts["n"],
        "distinct_event_ids": counts["ids"],
        "rejected_events": rejected["n"],
        "credential_mix": {"synced": mix["synced"], "device_bound": mix["device_bound"]},
        "time_to_sign_in_p50": {str(r["method"]): r["p50"] for r in p50},
        "recovery_started": {r["channel"]: r["n"] for r in recovery},
    }


def from_keyshift(report):
    """The same figures from `keyshift kpis --json` (see tests/e2e/interop.rs)."""
    def totals(name, field):
        kpi = next(k for k in report["kpis"] if k["kpi"] == name)
        return {t.get("key") or "all": t[field] for t in kpi["totals"]}

    return {
        "credential_mix": totals("credential_mix", "numerator"),
        "time_to_sign_in_p50": totals("time_to_sign_in_p50", "value"),
        "recovery_started": totals("recovery_per_1k_signins", "numerator"),
    }


def main():
    root, start, end, kpis = sys.argv[1:5]
    with open(kpis, encoding="utf-8") as f:
        ours = from_keyshift(json.load(f))
    spark = session()
    try:
        theirs = from_spark(spark, root, start, end)
        version = spark.version
    finally:
        spark.stop()

    failures = []
    expected_rows = {"auth_events": 277, "distinct_event_ids": 277, "rejected_events": 0}
    for figure, want in expected_rows.items():
        if theirs[figure] != want:
            failures.append(f"{figure}: Spark {theirs[figure]}, golden dataset {want}")
    for figure, want in ours.items():
        if theirs[figure] != want:
            failures.append(f"{figure}: Spark {theirs[figure]}, keyshift {want}")
    print(json.dumps({"spark": version, "root": root, **theirs}, sort_keys=True))
    if failures:
        for failure in failures:
            print("MISMATCH " + failure, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
