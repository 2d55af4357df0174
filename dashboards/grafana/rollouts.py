"""rollouts.json: exposure, decisions, guardrails against their limits, holds
by reason, step, phase and evaluation freshness (for rollout owners)."""

from __future__ import annotations

from .builders import (
    BLUE, GREEN, GREY, ORANGE, PURPLE, RED, RO, YELLOW, bargauge, row, stat,
    state_timeline, table, target, thresholds, timeseries, value_map,
)
from .dashboard import (
    RANGE_COUNT, ROLLOUT_VAR, RP_VAR, dashboard, decision_count_annotation,
    decisions_annotation, ev,
)


PHASES = ["running", "paused", "completed", "aborted"]
PHASE_COLORS = {"running": GREEN, "paused": YELLOW, "completed": BLUE, "aborted": RED}
HOLDS = ["stale_data", "no_traffic", "insufficient_sample", "inconclusive", "srm",
         "breach_unconfirmed", "guardrail", "dwell", "manual", "starved"]
HOLD_COLORS = {
    "stale_data": RED, "no_traffic": GREY, "insufficient_sample": BLUE,
    "inconclusive": YELLOW, "srm": PURPLE, "breach_unconfirmed": ORANGE, "guardrail": RED,
    "dwell": "light-blue", "manual": "dark-yellow", "starved": "dark-red",
}


def coded(metric, label, values, extra=""):
    """One series per rollout whose value is the 1-based index of the label
    value set to 1 (0: none is)."""
    parts = [
        f'{metric}{{{RO}, {label}="{v}"{extra}}} * {i}' for i, v in enumerate(values, start=1)
    ]
    return "max by (rollout) (" + " or ".join(parts) + ")"


def rollouts():
    pct = f"max by (rollout) (keyshift_rollout_percent{{{RO}}})"
    passkey_started = ev("auth.started", "passkey")
    panels = [
        row("Exposure"),
        timeseries(
            "Exposure per rollout",
            "The share of users each rollout exposes (its current step's percentage; 0.01 % "
            "steps exist). Rollback lowers it to the previous step (0 % from the first), "
            "abort to 0 %; it never touches passkeys users already created. The purple "
            "annotations are the controller's decisions, with their reason.",
            "percent",
            [target(pct, "{{rollout}}")],
            w=16, h=9, interpolation="stepAfter", min=0, max=100, fill=15,
        ),
        stat(
            "Exposure now",
            "The current exposure of each rollout, in percent of users.",
            "percent",
            [target(pct, "{{rollout}}")],
            w=4, h=9, th=thresholds(BLUE), decimals=2,
        ),
        stat(
            "Step now",
            "The current step index of each rollout (0 is the first step; −1 before the first).",
            "none",
            [target(f"max by (rollout) (keyshift_rollout_step{{{RO}}})", "{{rollout}}")],
            w=4, h=9, th=thresholds(BLUE), decimals=0,
        ),
        state_timeline(
            "Phase",
            "The phase each rollout is in (keyshift_rollout_state): running, paused (after a "
            "rollback or by an operator), completed, aborted.",
            "none",
            [target(coded("keyshift_rollout_state", "state", PHASES), "{{rollout}}")],
            value_map([(0, ("unknown", GREY))] + [
                (i, (p, PHASE_COLORS[p])) for i, p in enumerate(PHASES, start=1)
            ]),
            w=12, h=7,
        ),
        timeseries(
            "Step",
            "The current step index of each rollout over time (−1 before the first step).",
            "none",
            [target(f"max by (rollout) (keyshift_rollout_step{{{RO}}})", "{{rollout}}")],
            w=12, h=7, interpolation="stepAfter", decimals=0, fill=0,
        ),
        row("Guardrails"),
        timeseries(
            "Guardrails vs their limits: $rollout",
            "Per guardrail, what the last evaluation judged on the whole population "
            "(\"observed\") against the bound it was judged against (\"limit\"). Absolute "
            "guardrails: the treatment's rate vs the threshold. Relative guardrails: treatment − control vs "
            "threshold × control rate. Higher is worse, except for `sign_in_success` (and any "
            "guardrail configured with the other direction). A breach is judged on a "
            "confidence interval, not on the point value drawn here, and acts only after "
            "`consecutive_breaches` evaluations; the evidence is in the decision log.",
            "percentunit",
            [
                target(f"max by (rollout, guardrail) (keyshift_rollout_guardrail_observed_ratio{{{RO}}})",
                       "{{guardrail}} observed"),
                target(f"max by (rollout, guardrail) (keyshift_rollout_guardrail_limit_ratio{{{RO}}})",
                       "{{guardrail}} limit"),
            ],
            w=12, h=8, interpolation="stepAfter", fill=0,
            repeat="rollout",
        ),
        row("Holds and decisions"),
        state_timeline(
            "Hold reason",
            "The reason the last evaluation held on, per rollout (keyshift_rollout_hold): "
            "stale_data (ingest watermark too old), no_traffic, insufficient_sample, "
            "inconclusive (never advances), srm (sample-ratio mismatch), breach_unconfirmed, "
            "guardrail, dwell (minimum time at a step), manual, starved (no query slot). "
            "Empty: not holding.",
            "none",
            [target(coded("keyshift_rollout_hold", "reason", HOLDS), "{{rollout}}")],
            value_map([(0, ("not holding", "transparent"))] + [
                (i, (r, HOLD_COLORS[r])) for i, r in enumerate(HOLDS, start=1)
            ]),
            w=16, h=8,
        ),
        bargauge(
            "Time held by reason (in range)",
            "Share of the selected range each rollout spent holding on each reason (the "
            "average of the 0/1 hold gauge). A rollout stuck on `inconclusive` or "
            "`insufficient_sample` needs more traffic or a longer dwell, not a retry.",
            "percentunit",
            [target(
                f"avg_over_time(keyshift_rollout_hold{{{RO}}}[$__range]) > 0",
                "{{rollout}} · {{reason}}", instant=True,
            )],
            w=8, h=8, th=thresholds(BLUE), min=0, max=1, decimals=1,
        ),
        table(
            "Last decision",
            "Each rollout's last decision: action, bounded reason (`operator` for a person's "
            "decision; their free-text reason and the evidence are in "
            "`GET /v1/rollouts/{id}/decisions`) and when.",
            "dateTimeAsIso",
            [
                target(f"max by (rollout, action, reason) (keyshift_rollout_last_decision_info{{{RO}}}) == 1",
                       instant=True, fmt="table"),
                target(f"max by (rollout) (keyshift_rollout_last_decision_timestamp_seconds{{{RO}}}) * 1000",
                       instant=True, fmt="table"),
            ],
            w=12, h=8,
            transformations=[
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "Value #A": True},
                    "indexByName": {"rollout": 0, "action": 1, "reason": 2, "Value #B": 3},
                    "renameByName": {"Value #B": "decided at"},
                }},
            ],
        ),
        bargauge(
            "Decisions in range by action",
            "Decisions recorded in the selected range, by rollout and action. Repeated "
            "identical holds are recorded once. " + RANGE_COUNT,
            "short",
            [target(
                f"sum by (rollout, action) (increase(keyshift_rollout_decisions_total{{{RO}}}[$__range])) > 0",
                "{{rollout}} · {{action}}", instant=True,
            )],
            w=12, h=8, th=thresholds(BLUE), min=0, decimals=0,
        ),
        row("Evaluation"),
        timeseries(
            "Evaluation age (in evaluation intervals)",
            "Time since each rollout's last completed evaluation (a repeated hold too), "
            "divided by its configured evaluation interval. Above 2 the controller is "
            "late: check that it is up and not starved of query slots.",
            "none",
            [target(
                f"(time() - max by (rollout) (keyshift_rollout_last_evaluation_timestamp_seconds{{{RO}}})) / "
                f"max by (rollout) (keyshift_rollout_evaluation_interval_seconds{{{RO}}})",
                "{{rollout}}",
            )],
            w=12, h=7, min=0, decimals=1, th=thresholds(GREEN, (2, ORANGE), (3, RED)),
            thresholds_style="line",
        ),
        stat(
            "Since last evaluation",
            "Seconds since each rollout's last completed evaluation.",
            "s",
            [target(f"time() - max by (rollout) (keyshift_rollout_last_evaluation_timestamp_seconds{{{RO}}})",
                    "{{rollout}}")],
            w=6, h=7, th=thresholds(GREEN, (600, ORANGE), (1800, RED)), decimals=0,
        ),
        stat(
            "Since last decision",
            "Seconds since each rollout's last recorded decision.",
            "s",
            [target(f"time() - max by (rollout) (keyshift_rollout_last_decision_timestamp_seconds{{{RO}}})",
                    "{{rollout}}")],
            w=6, h=7, th=thresholds(BLUE), decimals=0,
        ),
        stat(
            "Controller",
            "1 while a keyshift process is the active rollout controller (at most one is). "
            "No active controller: nothing evaluates, nothing advances or rolls back.",
            "none",
            [target("max(keyshift_rollout_controller_up)", "active controller")],
            w=8, h=5, mappings=value_map([(0, ("none active", RED)), (1, ("active", GREEN))]),
            th=thresholds(RED, (1, GREEN)),
        ),
        timeseries(
            "Evaluation duration",
            "Time to evaluate one rollout, queries included (p50 and p95 of "
            "keyshift_rollout_evaluation_seconds).",
            "s",
            [
                target("histogram_quantile(0.5, sum by (le) (rate(keyshift_rollout_evaluation_seconds_bucket[$__rate_interval])))", "p50"),
                target("histogram_quantile(0.95, sum by (le) (rate(keyshift_rollout_evaluation_seconds_bucket[$__rate_interval])))", "p95"),
            ],
            w=8, h=5, min=0,
        ),
        timeseries(
            "Evaluation errors and assignments",
            "Evaluations that failed (retried next interval) and users assigned through "
            "`/v1/assign`, per second.",
            "ops",
            [
                target("sum(rate(keyshift_rollout_evaluation_errors_total[$__rate_interval]))", "evaluation errors"),
                target("sum(rate(keyshift_rollout_assignments_total[$__rate_interval]))", "assignments"),
            ],
            w=8, h=5, min=0,
        ),
        row("Guardrail signals of the selected relying parties"),
        timeseries(
            "Passkey error, fallback and recovery rates",
            "What the guardrails measure, over all users of the selected relying parties "
            "(the metrics carry no rollout or variant label, so this is not split into "
            "treatment and control): passkey `auth.failed` ÷ passkey `auth.started`, "
            "`auth.fallback` from passkey ÷ passkey `auth.started`, `recovery.started` ÷ "
            "`auth.started`. Recoveries lag exposure by days.",
            "percentunit",
            [
                target(f"sum(rate({ev('auth.failed', 'passkey')}[$__rate_interval])) / "
                       f"sum(rate({passkey_started}[$__rate_interval]))", "passkey error rate"),
                target(f"sum(rate({ev('auth.fallback', 'passkey')}[$__rate_interval])) / "
                       f"sum(rate({passkey_started}[$__rate_interval]))", "fallback rate"),
                target(f"sum(rate({ev('recovery.started')}[$__rate_interval])) / "
                       f"sum(rate({ev('auth.started')}[$__rate_interval]))", "recovery rate"),
            ],
            w=24, h=8, min=0,
        ),
    ]
    return dashboard(
        "keyshift-rollouts",
        "Phased passkey rollouts: exposure over time with the controller's decisions, "
        "guardrails against their limits, holds by reason, step, phase and evaluation freshness.",
        panels, [RP_VAR, ROLLOUT_VAR],
        [decisions_annotation(RO), decision_count_annotation()],
    )
