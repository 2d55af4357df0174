"""passkey-adoption.json: enrollment funnel, coverage, passkey usage and
success, at-risk holders, per platform (for product teams)."""

from __future__ import annotations

from .builders import (
    BLUE, GREEN, ORANGE, RED, RP, bargauge, row, stat, target, text, thresholds,
    timeseries,
)
from .dashboard import (
    KPI_WINDOW, NO_BROWSER, RANGE_COUNT, RP_VAR, dashboard, decisions_annotation, ev,
    kpi,
)


PW = ', method=~"passkey|password"'


def adoption():
    auth_ok = f'keyshift_events_total{{{RP}, event_type="auth.succeeded"}}'
    panels = [
        row("Enrollment funnel"),
        bargauge(
            "Enrollment funnel (events in range)",
            "Passkey enrollment events in the selected range: offered → started → "
            "succeeded, the steps of the `enrollment` funnel. " + RANGE_COUNT + " These "
            "are events, not distinct users: the distinct-user funnel with its ways out "
            "(skipped, failed by error name) is `keyshift kpis --funnel` / `GET /v1/funnel`.",
            "short",
            [
                target(f"sum(increase({ev('enrollment.offered')}[$__range]))", "1 · offered", instant=True),
                target(f"sum(increase({ev('enrollment.started')}[$__range]))", "2 · started", instant=True),
                target(f"sum(increase({ev('enrollment.succeeded')}[$__range]))", "3 · succeeded", instant=True),
            ],
            w=10, h=8, decimals=0, th=thresholds(BLUE), min=0,
        ),
        stat(
            "Funnel step conversion (in range)",
            "Share of enrollment events that made it to the next step in the selected range: "
            "started ÷ offered and succeeded ÷ started. " + RANGE_COUNT,
            "percentunit",
            [
                target(f"sum(increase({ev('enrollment.started')}[$__range])) / "
                       f"sum(increase({ev('enrollment.offered')}[$__range]))",
                       "offered → started", instant=True),
                target(f"sum(increase({ev('enrollment.succeeded')}[$__range])) / "
                       f"sum(increase({ev('enrollment.started')}[$__range]))",
                       "started → succeeded", instant=True),
            ],
            w=7, h=8, th=thresholds(RED, (0.5, ORANGE), (0.8, GREEN)), decimals=1,
        ),
        stat(
            "Enrollment rate (KPI)",
            "Users offered a passkey who created one, over users offered (distinct users). "
            "Reference: ≥ 20 % is the usual target, ≥ 75 % strong. " + KPI_WINDOW,
            "percentunit",
            [target(kpi("enrollment_rate"), "{{rp_id}}")],
            w=7, h=8, th=thresholds(RED, (0.2, ORANGE), (0.75, GREEN)), decimals=1,
        ),
        timeseries(
            "Enrollment events",
            "Enrollment events stored per second by type: offered, started, succeeded, and the "
            "ways out (skipped, failed). A drop in `enrollment.offered` after a rollout "
            "decision means the prompt reaches fewer users.",
            "eps",
            [target(
                "sum by (event_type) (rate(keyshift_events_total{" + RP + ', event_type=~"'
                "enrollment.offered|enrollment.started|enrollment.succeeded|enrollment.skipped|"
                'enrollment.failed"}[$__rate_interval]))',
                "{{event_type}}",
            )],
            w=24, h=8,
        ),
        row("Coverage and usage"),
        timeseries(
            "Passkey coverage (KPI)",
            "Active users holding at least one active passkey, over active users (at least one "
            "successful sign-in in the window). Adoption often stalls at 5–15 %. " + KPI_WINDOW,
            "percentunit",
            [target(kpi("coverage"), "{{rp_id}}")],
            w=12, min=0, max=1,
        ),
        timeseries(
            "Passkey usage: share of successful sign-ins by method",
            "Each sign-in method's share of `auth.succeeded` events (the KPI `passkey_usage` "
            "counts ceremonies; one `auth.succeeded` per ceremony makes the two agree). "
            "Reference: 70–90 % passkey among passkey holders.",
            "percentunit",
            [target(
                f"sum by (method) (rate({auth_ok}[$__rate_interval])) / ignoring (method) "
                f"group_left sum(rate({auth_ok}[$__rate_interval]))",
                "{{method}}",
            )],
            w=12, percent_stack=False, stack=True, fill=60, min=0, max=1,
        ),
        stat(
            "Passkey share of sign-ins (in range)",
            "Passkey `auth.succeeded` events over all `auth.succeeded` events in the selected "
            "range. " + RANGE_COUNT,
            "percentunit",
            [target(
                f'sum(increase(keyshift_events_total{{{RP}, event_type="auth.succeeded", '
                f'method="passkey"}}[$__range])) / sum(increase({auth_ok}[$__range]))',
                "passkey share", instant=True,
            )],
            w=6, th=thresholds(RED, (0.3, ORANGE), (0.7, GREEN)), decimals=1,
        ),
        stat(
            "Coverage now (KPI)",
            "Latest passkey coverage per relying party (`all`: every relying party "
            "together). " + KPI_WINDOW,
            "percentunit",
            [target(kpi("coverage"), "{{rp_id}}")],
            w=6, th=thresholds(RED, (0.05, ORANGE), (0.15, GREEN)), decimals=1,
        ),
        stat(
            "Successful sign-ins (in range)",
            "`auth.succeeded` events in the selected range, all methods. " + RANGE_COUNT,
            "short",
            [target(f"sum(increase({auth_ok}[$__range]))", "sign-ins", instant=True)],
            w=6, th=thresholds(BLUE), decimals=0,
        ),
        stat(
            "Passkeys created (in range)",
            "`enrollment.succeeded` events in the selected range. " + RANGE_COUNT,
            "short",
            [target(f"sum(increase({ev('enrollment.succeeded')}[$__range]))", "passkeys", instant=True)],
            w=6, th=thresholds(BLUE), decimals=0,
        ),
        row("Sign-in success"),
        timeseries(
            "Passkey vs password sign-in success",
            "`auth.succeeded` ÷ `auth.started` events per method, and the ceremony-based KPI "
            "`passkey_signin_success` (\"passkey KPI\": abandoned, failed and fallen-back "
            "ceremonies count as failures; its trailing window is `kpi_gauges.window`). Reference: passkeys 92–95 % typical, "
            "98–99 % best, below 85–90 % investigate; Google reports 64 % passkey vs 14 % "
            "password. Time to sign in is not in the metrics (no latency histogram): use "
            "`keyshift kpis --kpi time_to_sign_in_p50` (and `time_to_sign_in_p95`), per method.",
            "percentunit",
            [
                target(
                    f"sum by (method) (rate({ev('auth.succeeded', extra=PW)}[$__rate_interval])) / "
                    f"sum by (method) (rate({ev('auth.started', extra=PW)}[$__rate_interval]))",
                    "{{method}} (events)",
                ),
                target(kpi("passkey_signin_success"), "passkey KPI · {{rp_id}}"),
            ],
            w=12, min=0, max=1,
        ),
        timeseries(
            "Passkey fallback rate (KPI)",
            "Passkey ceremonies that ended in an `auth.fallback` to another method, over "
            "passkey ceremonies. By reason: the auth-reliability dashboard, or "
            "`keyshift kpis --kpi fallback_rate`. " + KPI_WINDOW,
            "percentunit",
            [target(kpi("fallback_rate"), "{{rp_id}}")],
            w=12, min=0,
        ),
        stat(
            "Passkey sign-in success (KPI)",
            "Latest passkey sign-in success per relying party. Reference: 92–95 % typical, "
            "98–99 % best, below 85–90 % investigate. " + KPI_WINDOW,
            "percentunit",
            [target(kpi("passkey_signin_success"), "{{rp_id}}")],
            w=8, th=thresholds(RED, (0.85, ORANGE), (0.92, GREEN)), decimals=1,
        ),
        stat(
            "Passkey fallback rate now (KPI)",
            "Latest passkey fallback rate per relying party. " + KPI_WINDOW,
            "percentunit",
            [target(kpi("fallback_rate"), "{{rp_id}}")],
            w=8, th=thresholds(GREEN, (0.1, ORANGE), (0.2, RED)), decimals=1,
        ),
        stat(
            "Recovery starts per 1,000 sign-ins (KPI)",
            "`recovery.started` events per 1,000 successful sign-in ceremonies. Recovery is "
            "the main attack path once passwords go; watch for rises after a rollout step. "
            + KPI_WINDOW,
            "short",
            [target(kpi("recovery_per_1k_signins"), "{{rp_id}}")],
            w=8, th=thresholds(GREEN, (5, ORANGE), (10, RED)), decimals=2,
        ),
        row("Risk"),
        timeseries(
            "At-risk passkey holders (KPI)",
            "Passkey holders with exactly one active passkey, every passkey device-bound "
            "(BE = 0) and no recovery method seen, over passkey holders active in the window: "
            "users one lost device away from recovery. The synced vs device-bound mix of new "
            "passkeys is not in the metrics: use `keyshift kpis --kpi credential_mix`. "
            + KPI_WINDOW,
            "percentunit",
            [target(kpi("at_risk_holders"), "{{rp_id}}")],
            w=12, min=0,
        ),
        timeseries(
            "Recovery starts per 1,000 sign-ins (KPI)",
            "History of the recovery KPI; the raw recovery rate against last week is on the "
            "auth-reliability dashboard. " + KPI_WINDOW,
            "short",
            [target(kpi("recovery_per_1k_signins"), "{{rp_id}}")],
            w=12, min=0,
        ),
        row("By platform"),
    ]
    by_platform = [
        ("coverage", "Coverage by platform", thresholds(RED, (0.05, ORANGE), (0.15, GREEN))),
        ("enrollment_rate", "Enrollment rate by platform", thresholds(RED, (0.2, ORANGE), (0.75, GREEN))),
        ("passkey_signin_success", "Passkey sign-in success by platform",
         thresholds(RED, (0.85, ORANGE), (0.92, GREEN))),
        ("fallback_rate", "Passkey fallback rate by platform", thresholds(GREEN, (0.1, ORANGE), (0.2, RED))),
        ("at_risk_holders", "At-risk holders by platform", thresholds(GREEN, (0.2, ORANGE), (0.5, RED))),
    ]
    for name, title, th in by_platform:
        panels.append(bargauge(
            title,
            f"The `{name}` KPI per platform family (`client.os`: windows, macos, ios, "
            "android, linux, chromeos, other, unknown), per relying party. A regression on "
            "one platform can hide behind a healthy mix. " + NO_BROWSER + " " + KPI_WINDOW,
            "percentunit",
            [target(kpi(name, platform="each"), "{{rp_id}} · {{platform}}", instant=True)],
            w=8, h=9, th=th, min=0, max=1, decimals=1,
        ))
    panels.append(bargauge(
        "Recovery starts per 1,000 sign-ins by platform",
        "The `recovery_per_1k_signins` KPI per platform family, per relying party. "
        + NO_BROWSER + " " + KPI_WINDOW,
        "short",
        [target(kpi("recovery_per_1k_signins", platform="each"), "{{rp_id}} · {{platform}}",
                instant=True)],
        w=8, h=9, th=thresholds(GREEN, (5, ORANGE), (10, RED)), min=0, decimals=2,
    ))
    panels.append(timeseries(
        "Passkey sign-in success by platform (KPI)",
        "History of passkey sign-in success per platform family: a browser or OS release "
        "that breaks passkeys shows here first. " + NO_BROWSER + " " + KPI_WINDOW,
        "percentunit",
        [target(kpi("passkey_signin_success", platform="each"), "{{rp_id}} · {{platform}}")],
        w=24, min=0, max=1, legend_mode="table", legend_calcs=["lastNotNull", "min"],
    ))
    panels.append(row("Not in the metrics"))
    panels.append(text(
        "Where the other KPIs are",
        "KPIs of docs/kpis.md that Prometheus does not carry, and where to read them.",
        "These KPIs need per-event detail that `/metrics` does not export; read them from "
        "the KPI API or CLI (same definitions, docs/kpis.md):\n\n"
        "| KPI | how |\n|---|---|\n"
        "| Time to sign in (p50 / p95, per method) | `keyshift kpis --kpi time_to_sign_in_p50,time_to_sign_in_p95` |\n"
        "| Synced vs device-bound passkeys | `keyshift kpis --kpi credential_mix` |\n"
        "| Any KPI by browser, form factor, variant or cohort | `keyshift kpis --kpi coverage --by browser` or `GET /v1/kpis?kpi=coverage&by=browser` |\n"
        "| Distinct-user enrollment and sign-in funnels | `keyshift kpis --funnel` or `GET /v1/funnel` |\n"
        "| Cross-device completion, recovery completion, support contacts | `keyshift kpis --kpi cross_device_completion,recovery_completion,support_per_1k_signins` |\n",
        w=24, h=7,
    ))
    return dashboard(
        "keyshift-passkey-adoption",
        "Passkey adoption for product teams: enrollment funnel, coverage, passkey usage and "
        "success, at-risk holders, per platform.",
        panels, [RP_VAR], [decisions_annotation("")], time_from="now-7d",
    )
