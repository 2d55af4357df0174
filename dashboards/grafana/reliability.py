"""auth-reliability.json: ceremony errors, fallbacks and recoveries against
last week, ingest, store, queries, controller and SLO burn rates (for SREs)."""

from __future__ import annotations

from .builders import (
    GREEN, ORANGE, RED, RP, bargauge, row, stat, target, thresholds, timeseries,
    value_map,
)
from .dashboard import (
    RANGE_COUNT, RP_VAR, dashboard, decisions_annotation, ev,
)


SLO_NOTE = (
    "Burn rate: the error ratio over the window divided by the error budget (1 − the SLO). "
    "1 spends the budget exactly over the SLO period; the fast-burn page fires at 14.4 "
    "(1 h and 5 m windows), the slow-burn ticket at 6 (6 h and 30 m). Recording rules of "
    "dashboards/alerts/keyshift.rules.yml."
)


def quantiles(metric, by, qs=(0.5, 0.95, 0.99), legend_prefix=""):
    out = []
    grouping = ", ".join(["le"] + list(by))
    for q in qs:
        label = " · ".join("{{%s}}" % b for b in by)
        legend_text = (legend_prefix + (label + " " if label else "") + f"p{int(q * 100)}").strip()
        out.append(target(
            f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket[$__rate_interval])))",
            legend_text,
        ))
    return out


def auth_reliability():
    passkey_started = ev("auth.started", "passkey")
    fb = f'keyshift_fallbacks_total{{{RP}, from_method="passkey"}}'
    rec = f'keyshift_recoveries_total{{{RP}, stage="started"}}'
    auth_ok = ev("auth.succeeded")
    errs = f'keyshift_ceremony_errors_total{{{RP}, ceremony="auth", method="passkey"}}'

    def wk(sel):
        return sel + "[$__rate_interval] offset 1w"

    panels = [
        row("Ceremony errors"),
        timeseries(
            "Passkey sign-in errors by DOMException name",
            "Passkey `auth.failed` by error name, over passkey `auth.started`. NotAllowedError "
            "(cancel, timeout or no credential) and AbortError (conditional UI) are mostly "
            "noise; InvalidStateError is benign; NotSupportedError and SecurityError mean a "
            "relying-party misconfiguration: roll back at once. Reference: total below 5 %.",
            "percentunit",
            [target(
                f"sum by (error) (rate({errs}[$__rate_interval])) / ignoring (error) group_left "
                f"sum(rate({passkey_started}[$__rate_interval]))",
                "{{error}}",
            )],
            w=12, h=9, stack=True, fill=40, min=0, legend_mode="table",
            legend_calcs=["lastNotNull", "max"],
        ),
        timeseries(
            "Ceremony errors per second by name",
            "Failed ceremonies per second (`auth.failed` and `enrollment.failed`, every "
            "method) by ceremony and DOMException name; names outside the list are `other`.",
            "eps",
            [target(
                f"sum by (ceremony, error) (rate(keyshift_ceremony_errors_total{{{RP}}}[$__rate_interval]))",
                "{{ceremony}} · {{error}}",
            )],
            w=12, h=9, min=0, legend_mode="table", legend_calcs=["lastNotNull", "max"],
        ),
        stat(
            "Misconfiguration errors (in range)",
            "NotSupportedError and SecurityError in the selected range, all ceremonies: "
            "these point at the relying party's WebAuthn configuration (RP id, origin, "
            "options), not at users. " + RANGE_COUNT,
            "short",
            [target(
                f'sum by (error) (increase(keyshift_ceremony_errors_total{{{RP}, '
                f'error=~"NotSupportedError|SecurityError"}}[$__range]))',
                "{{error}}", instant=True,
            )],
            w=8, h=6, th=thresholds(GREEN, (1, RED)), decimals=0, no_value="0",
        ),
        bargauge(
            "Errors in range by name",
            "Failed ceremonies in the selected range by ceremony and error name. " + RANGE_COUNT,
            "short",
            [target(
                f"sort_desc(sum by (ceremony, error) (increase(keyshift_ceremony_errors_total{{{RP}}}[$__range])) > 0)",
                "{{ceremony}} · {{error}}", instant=True,
            )],
            w=16, h=6, th=thresholds(ORANGE), min=0, decimals=0,
        ),
        row("Fallbacks and recoveries against last week"),
        timeseries(
            "Passkey fallback rate vs same time last week",
            "`auth.fallback` from passkey over passkey `auth.started` (solid), and the same "
            "ratio one week earlier (\"same time last week\", `offset 1w`): a weekly pattern stays aligned, a "
            "regression after a browser release or a rollout step stands out.",
            "percentunit",
            [
                target(f"sum(rate({fb}[$__rate_interval])) / sum(rate({passkey_started}[$__rate_interval]))", "now"),
                target(f"sum(rate({wk(fb)})) / sum(rate({wk(passkey_started)}))", "same time last week"),
            ],
            w=12, h=8, min=0,
        ),
        timeseries(
            "Recovery starts per 1,000 sign-ins vs same time last week",
            "`recovery.started` (every channel) per 1,000 `auth.succeeded` (solid), and one "
            "week earlier (\"same time last week\"). Recovery is the main attack path once passwords go: a "
            "spike is a security signal as much as a usability one. Reference: password "
            "resets run at 2–4 per user per year.",
            "short",
            [
                target(f"1000 * sum(rate({rec}[$__rate_interval])) / sum(rate({auth_ok}[$__rate_interval]))", "now"),
                target(f"1000 * sum(rate({wk(rec)})) / sum(rate({wk(auth_ok)}))", "same time last week"),
            ],
            w=12, h=8, min=0,
        ),
        timeseries(
            "Fallbacks by reason",
            "`auth.fallback` events per second by the method left and the reason "
            "(no_credential, credential_unavailable, user_choice, error, unsupported).",
            "eps",
            [target(
                f"sum by (from_method, reason) (rate(keyshift_fallbacks_total{{{RP}}}[$__rate_interval]))",
                "{{from_method}} · {{reason}}",
            )],
            w=12, h=8, stack=True, fill=40, min=0,
        ),
        timeseries(
            "Recoveries by channel and stage",
            "Account-recovery events per second by channel and stage (started, completed, "
            "failed).",
            "eps",
            [target(
                f"sum by (channel, stage) (rate(keyshift_recoveries_total{{{RP}}}[$__rate_interval]))",
                "{{channel}} · {{stage}}",
            )],
            w=12, h=8, min=0,
        ),
        row("Ingest"),
        timeseries(
            "Kafka consumer lag",
            "Messages behind each partition's high watermark (the largest value any "
            "consumer reports for it). Growing lag: the consumer cannot keep up or is stuck.",
            "short",
            [
                target("max by (partition) (keyshift_kafka_consumer_lag)", "partition {{partition}}"),
                target("sum(max by (partition) (keyshift_kafka_consumer_lag))", "total"),
            ],
            w=8, h=8, min=0,
        ),
        timeseries(
            "Event age at commit",
            "Commit time − `occurred_at` of stored events (p50, p95, p99 by source): the ingest "
            "freshness SLI. Late producers raise it as much as a slow pipeline.",
            "s",
            quantiles("keyshift_ingest_event_age_seconds", ["source"]),
            w=8, h=8, min=0,
        ),
        stat(
            "Since last commit",
            "Seconds since the store's last successful commit (any table). With traffic it "
            "stays within the group-commit interval; growing: the writer is stuck or "
            "failing.",
            "s",
            [target("time() - max(keyshift_store_last_commit_timestamp_seconds)", "since last commit")],
            w=8, h=4, th=thresholds(GREEN, (60, ORANGE), (300, RED)), decimals=0,
        ),
        stat(
            "Dead letters (in range)",
            "Inputs rejected in the selected range (schema or scope errors), kept in the "
            "`rejected_events` table: `keyshift sql \"SELECT error, error_pointer FROM "
            "rejected_events\"`. " + RANGE_COUNT,
            "short",
            [target(
                'sum(increase(keyshift_ingest_events_total{outcome="rejected"}[$__range]))',
                "rejected", instant=True,
            )],
            w=8, h=4, th=thresholds(GREEN, (1, ORANGE), (100, RED)), decimals=0, no_value="0",
        ),
        timeseries(
            "Ingest inputs by outcome",
            "Inputs per second by source (http, kafka) and outcome (accepted, duplicate, "
            "rejected, forwarded by the collector in Kafka mode).",
            "eps",
            [target(
                "sum by (source, outcome) (rate(keyshift_ingest_events_total[$__rate_interval]))",
                "{{source}} · {{outcome}}",
            )],
            w=12, h=8, min=0,
        ),
        timeseries(
            "Dead-letter ratio",
            "Rejected inputs over all inputs, by source. Rejections are the producer's bug, "
            "not keyshift's: the error says which field (`rejected_events.error_pointer`).",
            "percentunit",
            [target(
                'sum by (source) (rate(keyshift_ingest_events_total{outcome="rejected"}[$__rate_interval])) / '
                "sum by (source) (rate(keyshift_ingest_events_total[$__rate_interval]))",
                "{{source}}",
            )],
            w=12, h=8, min=0, th=thresholds(GREEN, (0.01, ORANGE), (0.05, RED)),
            thresholds_style="line",
        ),
        timeseries(
            "Collector requests by outcome",
            "HTTP collector requests per second by outcome. `unavailable` (503): the store or "
            "broker did not take the events; producers retry with the same event ids.",
            "reqps",
            [target(
                "sum by (outcome) (rate(keyshift_collector_requests_total[$__rate_interval]))",
                "{{outcome}}",
            )],
            w=8, h=7, min=0,
        ),
        timeseries(
            "Kafka consumer events",
            "Per second: rebalances (assign, revoke), receive errors (broker down, timeouts), "
            "replayed messages dropped (at or below the stored offset), commit conflicts "
            "(another writer owned the partition), offsets out of range (messages lost to "
            "retention: investigate every one).",
            "ops",
            [
                target("sum by (kind) (rate(keyshift_kafka_rebalances_total[$__rate_interval]))", "rebalance {{kind}}"),
                target("sum(rate(keyshift_kafka_receive_errors_total[$__rate_interval]))", "receive errors"),
                target("sum(rate(keyshift_kafka_replayed_dropped_total[$__rate_interval]))", "replayed, dropped"),
                target("sum(rate(keyshift_kafka_commit_conflicts_total[$__rate_interval]))", "commit conflicts"),
                target("sum(rate(keyshift_kafka_offset_out_of_range_total[$__rate_interval]))", "offset out of range"),
            ],
            w=8, h=7, min=0,
        ),
        timeseries(
            "Unknown fields",
            "Fields outside the event's schema version kept in the `extra` column, per second by source: a "
            "producer sending a newer schema, or a typo in a field name.",
            "ops",
            [target("sum by (source) (rate(keyshift_ingest_unknown_fields_total[$__rate_interval]))", "{{source}}")],
            w=4, h=7, min=0,
        ),
        timeseries(
            "Dedup index",
            "Event ids held by the 7-day dedup index (by (rp_id, event_id)); it grows with "
            "traffic and levels off after 7 days.",
            "short",
            [target("sum(keyshift_ingest_dedup_keys)", "dedup keys")],
            w=4, h=7, min=0,
        ),
        row("Store and Kafka commits"),
        timeseries(
            "Store commit latency",
            "Time to write and commit one group of rows (p50, p99) by result.",
            "s",
            quantiles("keyshift_store_commit_seconds", ["result"], qs=(0.5, 0.99)),
            w=8, h=8, min=0,
        ),
        timeseries(
            "Kafka batch commit and produce latency",
            "p99 time to validate and commit one batch of Kafka messages with its offsets, "
            "and (collector in Kafka mode) until the broker acknowledged one request.",
            "s",
            quantiles("keyshift_kafka_commit_seconds", [], qs=(0.99,), legend_prefix="commit ")
            + quantiles("keyshift_kafka_produce_seconds", [], qs=(0.99,), legend_prefix="produce "),
            w=8, h=8, min=0,
        ),
        timeseries(
            "Rows written and commit errors",
            "Rows committed per second to each table, and failed commits per second.",
            "ops",
            [
                target("sum by (table) (rate(keyshift_store_rows_written_total[$__rate_interval]))", "rows {{table}}"),
                target('sum(rate(keyshift_store_commit_seconds_count{result="error"}[$__rate_interval]))', "commit errors"),
            ],
            w=8, h=8, min=0,
        ),
        row("Query admission"),
        timeseries(
            "Queries refused and cancelled",
            "Queries refused without running (queue_full, queue_timeout) and stopped before "
            "they finished (timeout, memory, shutdown, abandoned), per second by lane. The "
            "control lane serves the rollout controller: refusals there starve evaluations.",
            "ops",
            [
                target("sum by (lane, reason) (rate(keyshift_query_rejected_total[$__rate_interval]))", "rejected {{lane}} · {{reason}}"),
                target("sum by (lane, reason) (rate(keyshift_query_cancelled_total[$__rate_interval]))", "cancelled {{lane}} · {{reason}}"),
            ],
            w=8, h=8, min=0,
        ),
        timeseries(
            "Queries running and queued",
            "Queries executing now and waiting for a slot, by lane.",
            "short",
            [
                target("sum by (lane) (keyshift_query_running)", "running {{lane}}"),
                target("sum by (lane) (keyshift_query_queued)", "queued {{lane}}"),
            ],
            w=8, h=8, min=0,
        ),
        timeseries(
            "Query and API latency",
            "p95 execution time of queries by lane, of the SQL API and of the KPI API "
            "(`/v1/kpis`, `/v1/funnel`) by endpoint.",
            "s",
            quantiles("keyshift_query_seconds", ["lane"], qs=(0.95,), legend_prefix="query ")
            + quantiles("keyshift_sql_query_seconds", [], qs=(0.95,), legend_prefix="SQL API ")
            + quantiles("keyshift_kpi_request_seconds", ["endpoint"], qs=(0.95,), legend_prefix="KPI API "),
            w=8, h=8, min=0,
        ),
        row("Controller and KPI freshness"),
        timeseries(
            "Rollout evaluation age (in evaluation intervals)",
            "Time since each rollout's last completed evaluation, divided by its evaluation "
            "interval. Above 2: the controller is late (down, fenced, or starved of query "
            "slots).",
            "none",
            [target(
                "(time() - max by (rollout) (keyshift_rollout_last_evaluation_timestamp_seconds)) / "
                "max by (rollout) (keyshift_rollout_evaluation_interval_seconds)",
                "{{rollout}}",
            )],
            w=8, h=7, min=0, decimals=1, th=thresholds(GREEN, (2, ORANGE), (3, RED)),
            thresholds_style="line",
        ),
        stat(
            "Active rollout controller",
            "1 while a keyshift process is the active rollout controller.",
            "none",
            [target("max(keyshift_rollout_controller_up)", "controller")],
            w=4, h=7, mappings=value_map([(0, ("none active", RED)), (1, ("active", GREEN))]),
            th=thresholds(RED, (1, GREEN)),
        ),
        stat(
            "KPI gauges age",
            "Seconds since the last successful refresh of the KPI gauges (every "
            "`kpi_gauges.interval`, default 5 minutes).",
            "s",
            [target("time() - max(keyshift_kpi_refresh_timestamp_seconds)", "KPI gauges")],
            w=4, h=7, th=thresholds(GREEN, (900, ORANGE), (1800, RED)), decimals=0,
        ),
        timeseries(
            "Controller and KPI refresh errors",
            "Rollout evaluations and KPI gauge refreshes that failed, per second (both retry "
            "at their next interval).",
            "ops",
            [
                target("sum(rate(keyshift_rollout_evaluation_errors_total[$__rate_interval]))", "evaluation errors"),
                target("sum(rate(keyshift_kpi_refresh_errors_total[$__rate_interval]))", "KPI refresh errors"),
            ],
            w=8, h=7, min=0,
        ),
    ]
    panels += slo_panels()
    return dashboard(
        "keyshift-auth-reliability",
        "Sign-in reliability and keyshift's own health for SREs: ceremony errors by name, "
        "fallbacks and recoveries against last week, ingest lag and dead letters, commits, "
        "query admission, controller freshness, SLO burn rates.",
        panels, [RP_VAR], [decisions_annotation("")],
    )


# The SLOs of dashboards/alerts/keyshift.rules.yml: (name, recording-rule
# prefix, error budget = 1 - objective, filtered by rp_id). check.py fails
# when a budget here differs from the one the alerts use.
SLOS = [
    ("Passkey sign-in success", "keyshift:passkey_signin_errors", 0.005, True,
     "99.5 % of passkey sign-in ceremonies succeed (cancellations, NotAllowedError and "
     "AbortError, excluded), per relying party"),
    ("Ingest freshness", "keyshift:ingest_freshness_errors", 0.01, False,
     "99 % of events stored within 5 minutes of `occurred_at`, all sources together"),
]


def slo_panels():
    """Burn rates and SLIs of the SLOs, from the recording rules."""
    out = [row("SLO burn rates")]
    for name, prefix, budget, per_rp, objective in SLOS:
        sel = "{" + RP + "}" if per_rp else ""
        by = "{{rp_id}} · " if per_rp else ""
        out.append(timeseries(
            f"{name}: error budget burn rate",
            f"Objective: {objective}. " + SLO_NOTE + " Lines: the 5 m, 1 h, 6 h and 3 d "
            "windows.",
            "none",
            [target(f"{prefix}:ratio_rate{w}{sel} / {budget}", f"{by}{w}") for w in ("5m", "1h", "6h", "3d")],
            w=9, h=8, min=0, decimals=1, th=thresholds(GREEN, (6, ORANGE), (14.4, RED)),
            thresholds_style="line",
        ))
        out.append(stat(
            f"{name}: SLI over 3 days",
            f"Objective: {objective}. The share of good events over the last 3 days (1 − the "
            "3-day error ratio of the recording rules).",
            "percentunit",
            [target(f"1 - {prefix}:ratio_rate3d{sel}", "{{rp_id}}" if per_rp else "SLI")],
            w=3, h=8, decimals=2, th=thresholds(RED, (1 - budget, GREEN)),
        ))
    return out
