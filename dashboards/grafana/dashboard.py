"""The dashboard frame and what the dashboards share: template variables
(data source, relying party, rollout), the rollout-decision annotations,
links between the dashboards, `dashboard()`, the `keyshift_events_total` and
KPI gauge selectors, and shared description texts."""

from __future__ import annotations

from .builders import (
    DASHBOARDS, DS, RO, RP, SCHEMA_VERSION, TAGS, layout,
)


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
