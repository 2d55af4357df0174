#!/usr/bin/env python3
"""Writes keyshift's Grafana dashboards (stdlib only, deterministic).

    python3 dashboards/generate.py [OUT_DIR]      # default: the dashboards/ folder

Three dashboards, one JSON file each, in Grafana's classic dashboard JSON model
(the one the Grafana Foundation SDK reads, schemaVersion 41):

- passkey-adoption.json  -- product teams: funnel, coverage, usage, success,
                            risk, per platform;
- rollouts.json          -- rollout owners: exposure, decisions, guardrails,
                            holds, step, phase, evaluation freshness;
- auth-reliability.json  -- SREs: ceremony errors, fallbacks and recoveries
                            against last week, ingest, store, queries,
                            controller, SLO burn rates.

Every query may only use the metrics of docs/metrics.md and the recording
rules of dashboards/alerts/keyshift.rules.yml: scripts/check-dashboards.sh
checks that, the PromQL, and the conventions below.

Conventions (checked by dashboards/check.py):
- the data source is the `datasource` template variable; every panel and
  target says {"type": "prometheus", "uid": "${datasource}"};
- series of metrics carrying `rp_id` are filtered by `rp_id=~"$rp_id"`, and on
  the rollouts dashboard series carrying `rollout` by `rollout=~"$rollout"`;
- counters (`_total`, `_bucket`, `_count`, `_sum`) appear only inside rate(),
  irate() or increase(); those use `[$__rate_interval]`, except increase()
  over `[$__range]` in an instant query of a stat/bargauge/table/barchart
  panel ("how many in the selected range");
- every panel has a title, a description and a unit.

Edit this file, never the JSON: `scripts/check-dashboards.sh` fails when the
committed JSON differs from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["keyshift"]
RP = 'rp_id=~"$rp_id"'
RO = 'rollout=~"$rollout"'

DASHBOARDS = {
    "keyshift-passkey-adoption": ("passkey-adoption.json", "keyshift · Passkey adoption"),
    "keyshift-rollouts": ("rollouts.json", "keyshift · Rollouts"),
    "keyshift-auth-reliability": ("auth-reliability.json", "keyshift · Auth reliability"),
}

# Colors of Grafana's palette, by name.
GREEN, YELLOW, ORANGE, RED, BLUE, PURPLE, GREY = (
    "green", "yellow", "orange", "red", "blue", "purple", "text",
)


# --------------------------------------------------------------------------
# Building blocks


def target(expr, legend=None, *, instant=False, fmt=None, hide=False):
    """One Prometheus query; refIds are assigned by the panel."""
    t = {
        "datasource": dict(DS),
        "editorMode": "code",
        "expr": " ".join(expr.split()),
        "instant": instant,
        "range": not instant,
    }
    if legend is not None:
        t["legendFormat"] = legend
    if fmt is not None:
        t["format"] = fmt
    if hide:
        t["hide"] = True
    return t


def thresholds(*steps):
    """thresholds(GREEN, (0.8, ORANGE), (0.9, RED)): base color, then (value, color)."""
    out = [{"color": steps[0], "value": None}]
    out += [{"color": c, "value": v} for v, c in steps[1:]]
    return {"mode": "absolute", "steps": out}


def value_map(pairs):
    """A value mapping: {"1": ("running", GREEN), ...}."""
    opts = {}
    for i, (k, (text, color)) in enumerate(pairs):
        opts[str(k)] = {"color": color, "index": i, "text": text}
    return [{"options": opts, "type": "value"}]


def legend(mode="list", calcs=None, show=True, placement="bottom"):
    return {
        "calcs": list(calcs or []),
        "displayMode": mode,
        "placement": placement,
        "showLegend": show,
    }


def panel(kind, title, description, unit, targets, *, w, h, options, custom=None,
          min=None, max=None, decimals=None, th=None, mappings=None, overrides=None,
          color=None, transformations=None, repeat=None, links=None, no_value=None):
    defaults = {"unit": unit}
    if no_value is not None:
        defaults["noValue"] = no_value
    if color is not None:
        defaults["color"] = color
    if custom is not None:
        defaults["custom"] = custom
    for key, val in (("min", min), ("max", max), ("decimals", decimals)):
        if val is not None:
            defaults[key] = val
    defaults["thresholds"] = th or thresholds(GREEN)
    if mappings:
        defaults["mappings"] = mappings
    p = {
        "datasource": dict(DS),
        "description": " ".join(description.split()),
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides or [])},
        "options": options,
        "targets": [],
        "title": title,
        "type": kind,
        "_size": (w, h),
    }
    for i, t in enumerate(targets):
        t = dict(t)
        t["refId"] = chr(ord("A") + i)
        p["targets"].append(t)
    if transformations:
        p["transformations"] = transformations
    if repeat:
        p["repeat"] = repeat
        p["repeatDirection"] = "h"
        p["maxPerRow"] = 2
    if links:
        p["links"] = links
    return p


def timeseries(title, description, unit, targets, *, w=12, h=8, stack=False,
               percent_stack=False, interpolation="linear", fill=10, legend_mode="list",
               legend_calcs=None, overrides=None, min=None, max=None, th=None,
               thresholds_style=None, decimals=None, draw="line", repeat=None):
    custom = {
        "drawStyle": draw,
        "fillOpacity": fill,
        "lineInterpolation": interpolation,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "percent" if percent_stack else ("normal" if stack else "none")},
    }
    if thresholds_style:
        custom["thresholdsStyle"] = {"mode": thresholds_style}
    options = {
        "legend": legend(legend_mode, legend_calcs),
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, description, unit, targets, w=w, h=h, options=options,
                 custom=custom, min=min, max=max, th=th, overrides=overrides, decimals=decimals,
                 color={"mode": "palette-classic"}, repeat=repeat)


def stat(title, description, unit, targets, *, w=6, h=4, th=None, decimals=None,
         calc="lastNotNull", mappings=None, color_mode="value", graph="none", text_mode="auto",
         min=None, max=None, no_value=None):
    options = {
        "colorMode": color_mode,
        "graphMode": graph,
        "justifyMode": "auto",
        "orientation": "auto",
        "percentChangeColorMode": "standard",
        "reduceOptions": {"calcs": [calc], "fields": "", "values": False},
        "showPercentChange": False,
        "textMode": text_mode,
        "wideLayout": True,
    }
    return panel("stat", title, description, unit, targets, w=w, h=h, options=options,
                 th=th, decimals=decimals, mappings=mappings, min=min, max=max,
                 color={"mode": "thresholds"}, no_value=no_value)


def bargauge(title, description, unit, targets, *, w=12, h=8, th=None, min=None, max=None,
             decimals=None, display="gradient"):
    options = {
        "displayMode": display,
        "legend": legend(show=False),
        "maxVizHeight": 300,
        "minVizHeight": 16,
        "minVizWidth": 8,
        "namePlacement": "top",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "sizing": "auto",
        "valueMode": "color",
    }
    return panel("bargauge", title, description, unit, targets, w=w, h=h, options=options,
                 th=th, min=min, max=max, decimals=decimals, color={"mode": "thresholds"})


def state_timeline(title, description, unit, targets, mappings, *, w=12, h=8):
    options = {
        "alignValue": "left",
        "legend": legend(),
        "mergeValues": True,
        "rowHeight": 0.8,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"fillOpacity": 70, "lineWidth": 0}
    return panel("state-timeline", title, description, unit, targets, w=w, h=h,
                 options=options, custom=custom, mappings=mappings,
                 color={"mode": "thresholds"})


def table(title, description, unit, targets, *, w=12, h=8, transformations=None,
          overrides=None, mappings=None):
    options = {
        "cellHeight": "sm",
        "footer": {"countRows": False, "reducer": ["sum"], "show": False},
        "frameIndex": 0,
        "showHeader": True,
    }
    custom = {"align": "auto", "inspect": False}
    return panel("table", title, description, unit, targets, w=w, h=h, options=options,
                 custom=custom, transformations=transformations, overrides=overrides,
                 mappings=mappings, color={"mode": "thresholds"})


def text(title, description, content, *, w=24, h=6):
    return {
        "description": " ".join(description.split()),
        "options": {"content": content, "mode": "markdown"},
        "title": title,
        "type": "text",
        "_size": (w, h),
    }


def row(title):
    return {"collapsed": False, "panels": [], "title": title, "type": "row", "_size": (24, 1)}


def layout(items):
    """Places panels on Grafana's 24-column grid, in order, each at the
    lowest free position (then the leftmost) below the current row header,
    so a column of short panels can sit beside a tall one. Ids in order, from 1."""
    sky = [0] * 24  # the first free y of each column
    out = []
    for i, p in enumerate(items, start=1):
        p = dict(p)
        w, h = p.pop("_size")
        if p["type"] == "row":
            x, y = 0, max(sky)
        else:
            y, x = min((max(sky[x:x + w]), x) for x in range(0, 25 - w))
        for col in range(x, x + w):
            sky[col] = y + h
        if p["type"] == "row":
            sky = [y + h] * 24
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        p["id"] = i
        out.append(p)
    return out


def datasource_var():
    return {
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def query_var(name, label, metric, description):
    """A multi-value label variable; All matches every value (`.*`), so the KPI
    gauges' `all` series (every relying party) are shown with All selected."""
    q = f"label_values({metric}, {name})"
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": dict(DS),
        "definition": q,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": q,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


RP_VAR = query_var(
    "rp_id", "Relying party", "keyshift_events_total",
    "Relying parties seen in keyshift_events_total. All matches every value, including the "
    "KPI gauges' `all` (every relying party together) and `other` (relying parties beyond "
    "ingest.max_rp_labels).",
)
ROLLOUT_VAR = query_var(
    "rollout", "Rollout", "keyshift_rollout_percent",
    "Rollout ids of the controller's configuration (keyshift_rollout_percent).",
)


def decisions_annotation(rollout_filter):
    """Each decision of the rollout controller, at the time it was taken
    (the last-decision timestamp as the annotation's time), with its action
    and bounded reason. Decisions closer together than a scrape interval show
    only the last one; the decision log (`GET /v1/rollouts/{id}/decisions`)
    has them all."""
    sel = "{" + rollout_filter + "}" if rollout_filter else ""
    expr = (
        f"max by (rollout) (keyshift_rollout_last_decision_timestamp_seconds{sel}) * 1000"
        f" * on (rollout) group_left (action, reason)"
        f" (max by (rollout, action, reason) (keyshift_rollout_last_decision_info{sel}) == 1)"
    )
    return {
        "datasource": dict(DS),
        "enable": True,
        "expr": expr,
        "hide": False,
        "iconColor": "purple",
        "name": "Rollout decisions",
        "step": "1m",
        "tagKeys": "rollout,action,reason",
        "target": {
            "datasource": dict(DS),
            "editorMode": "code",
            "expr": expr,
            "refId": "Anno",
        },
        "textFormat": "{{action}} (reason: {{reason}})",
        "titleFormat": "{{rollout}}: {{action}}",
        "useValueForTime": True,
    }


def decision_count_annotation():
    """Every step in which keyshift_rollout_decisions_total grew, by action:
    catches decisions the last-decision gauges overwrote between two scrapes."""
    expr = (
        f"sum by (rollout, action) (increase(keyshift_rollout_decisions_total{{{RO}}}"
        "[$__rate_interval])) > 0"
    )
    return {
        "datasource": dict(DS),
        "enable": False,
        "expr": expr,
        "hide": False,
        "iconColor": "orange",
        "name": "Decisions (counter)",
        "step": "1m",
        "tagKeys": "rollout,action",
        "target": {
            "datasource": dict(DS),
            "editorMode": "code",
            "expr": expr,
            "refId": "Anno",
        },
        "textFormat": "{{action}} decisions recorded",
        "titleFormat": "{{rollout}}: {{action}}",
        "useValueForTime": False,
    }


def links(own_uid):
    out = []
    for uid, (_, title) in DASHBOARDS.items():
        if uid == own_uid:
            continue
        out.append({
            "asDropdown": False,
            "icon": "dashboard",
            "includeVars": True,
            "keepTime": True,
            "tags": [],
            "targetBlank": False,
            "title": title.split(" · ", 1)[1],
            "tooltip": title,
            "type": "link",
            "url": f"/d/{uid}",
        })
    return out


def dashboard(uid, description, panels, variables, annotations, *, time_from="now-24h"):
    _, title = DASHBOARDS[uid]
    return {
        "annotations": {"list": annotations},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": links(uid),
        "liveNow": False,
        "panels": layout(panels),
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(TAGS),
        "templating": {"list": [datasource_var()] + variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "weekStart": "monday",
    }


def ev(event_type, method=None, extra=""):
    """A keyshift_events_total selector for the selected relying parties."""
    m = f', method="{method}"' if method else ""
    return f'keyshift_events_total{{{RP}, event_type="{event_type}"{m}{extra}}}'


def kpi(name, platform="all"):
    metric = "keyshift_kpi_per_thousand" if name == "recovery_per_1k_signins" else "keyshift_kpi_ratio"
    plat = f'platform="{platform}"' if platform == "all" else 'platform!="all"'
    return f'{metric}{{kpi="{name}", {RP}, {plat}}}'


KPI_WINDOW = (
    "A KPI gauge: the value over the trailing `kpi_gauges.window` (default 7 days, ending at "
    "the ingest watermark), recomputed every `kpi_gauges.interval` (default 5 minutes); the "
    "dashboard's time range only chooses which history of that value is drawn. Absent while "
    "the denominator is 0. Definition: docs/kpis.md."
)
NO_BROWSER = (
    "There is no browser label in the metrics (only the platform family of `client.os`): "
    "for a browser breakdown use `keyshift kpis --kpi <kpi> --by browser` or "
    "`GET /v1/kpis?kpi=<kpi>&by=browser`."
)
RANGE_COUNT = (
    "Counted from the counters' increase over the dashboard's time range (events as "
    "stored, by the time they were stored, not by `occurred_at`)."
)


# --------------------------------------------------------------------------
# passkey-adoption.json


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


# --------------------------------------------------------------------------
# rollouts.json

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


# --------------------------------------------------------------------------
# auth-reliability.json

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
            "Fields outside schema v1 kept in the `extra` column, per second by source: a "
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


# --------------------------------------------------------------------------


def render(d):
    return json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv):
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    builders = {
        "keyshift-passkey-adoption": adoption,
        "keyshift-rollouts": rollouts,
        "keyshift-auth-reliability": auth_reliability,
    }
    for uid, build in builders.items():
        filename, _ = DASHBOARDS[uid]
        (out / filename).write_text(render(build()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
