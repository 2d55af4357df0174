"""The per-dashboard checks of `check.py lint`: structure, template
variables, data sources, links, panels and grid, and every PromQL against
the metric contract (metrics, labels, values, counters, rate windows,
rp_id/rollout filters)."""

from __future__ import annotations

import re

from .sources import all_panels, queries, variable_expr
from .promql import PromQLError, analyze, regex_alternatives, variables_in


EXPECTED_DS = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "table", "barchart", "bargauge", "state-timeline"}
NO_QUERY_TYPES = {"row", "text"}
RANGE_COUNT_PANELS = {"stat", "bargauge", "table", "barchart"}
MIN_SCHEMA_VERSION = 39

# Grafana unit ids this project may use (a subset of Grafana's; see the
# Foundation SDK's `units` package), plus custom "suffix:" / "prefix:" units.
UNITS = {
    "none", "short", "sishort", "locale", "percent", "percentunit", "humidity", "ppm",
    "s", "ms", "µs", "ns", "m", "h", "d", "dtdurations", "dtdurationms", "dthms", "dtdhms",
    "clocks", "clockms", "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsLocal",
    "dateTimeAsSystem", "dateTimeFromNow", "bytes", "decbytes", "bits", "bps", "Bps",
    "binBps", "cps", "cpm", "ops", "opm", "reqps", "reqpm", "rps", "wps", "iops", "eps",
    "epm", "mps", "mpm", "recps", "recpm", "rowsps", "rowspm", "bool", "bool_yes_no",
    "bool_on_off", "string", "hex", "hex0x", "sci",
}

BUILTIN_VARS = {
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__dashboard", "__org", "__user", "__timeFilter",
}
# Series Prometheus itself makes for every scrape target; rules may use them.
SYNTHETIC_METRICS = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
TARGET_LABELS = {"job", "instance"}

COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
RATE_FUNCS = {"rate", "irate", "increase"}


class Report:
    def __init__(self):
        self.problems = []

    def __call__(self, file, where, what):
        self.problems.append(f"{file}: {where}: {what}")


def check_expr(report, file, where, expr, contract, records, *, panel_type=None,
               instant=False, dashboard_vars=None, kind="target", for_dashboard=True):
    """Metric, label, counter and range checks of one PromQL; returns its selectors."""
    try:
        selectors = analyze(expr)
    except PromQLError as e:
        report(file, where, f"PromQL: {e}: {expr}")
        return []
    if dashboard_vars is not None:
        for var in sorted(variables_in(expr) - BUILTIN_VARS - set(dashboard_vars)):
            report(file, where, f"undefined template variable ${var}")
    for s in selectors:
        if not s.name:
            report(file, where, "a selector without a metric name")
            continue
        metric = contract.get(s.name)
        if metric is None and s.name not in records and s.name not in SYNTHETIC_METRICS:
            report(file, where, f"metric {s.name} is neither in docs/metrics.md nor a recording rule")
        if metric is not None:
            for label, op, value in s.matchers:
                if label == "__name__" or label in TARGET_LABELS:
                    continue
                if label not in metric.labels:
                    report(file, where, f"{s.name} has no label {label!r}")
                    continue
                allowed = metric.labels[label]
                if allowed is None or "$" in value:
                    continue
                literal = [value] if op in ("=", "!=") else regex_alternatives(value)
                for v in literal or []:
                    if v not in allowed and not (v == "" and op in ("=", "!=")):
                        report(file, where, f"{s.name}{{{label}}} has no value {v!r}")
        if (for_dashboard and kind != "variable" and s.name.endswith(COUNTER_SUFFIXES)
                and (metric is None or metric.kind in ("counter", "histogram"))):
            if s.func not in RATE_FUNCS or s.range is None:
                report(file, where, f"counter {s.name} used outside rate()/irate()/increase()")
        if s.func in RATE_FUNCS and s.range is not None and for_dashboard:
            ok = s.range == "$__rate_interval" or s.range == "${__rate_interval}"
            if (not ok and s.func == "increase" and s.range in ("$__range", "${__range}")
                    and kind == "target" and instant and panel_type in RANGE_COUNT_PANELS):
                ok = True
            if not ok:
                report(file, where, f"{s.func}({s.name}[{s.range}]): use [$__rate_interval]"
                       + (" (or [$__range] in an instant query of a stat/bargauge/table/barchart panel)"
                          if s.func == "increase" else ""))
        if for_dashboard and metric is not None and kind != "variable":
            for label, var in (("rp_id", "rp_id"), ("rollout", "rollout")):
                if label in metric.labels and var in (dashboard_vars or ()):
                    if ("=~", f"${var}") not in s.values(label):
                        report(file, where, f'{s.name} is not filtered by {label}=~"${var}"')
    return selectors


def check_dashboard(report, file, d, contract, records, all_uids):
    where = "dashboard"
    uid = d.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        report(file, where, f"uid {uid!r} is not a stable id (1-40 of [A-Za-z0-9_-])")
    for key in ("title", "description"):
        if not d.get(key):
            report(file, where, f"no {key}")
    if "keyshift" not in (d.get("tags") or []):
        report(file, where, "tags lack 'keyshift'")
    sv = d.get("schemaVersion")
    if not isinstance(sv, int) or sv < MIN_SCHEMA_VERSION:
        report(file, where, f"schemaVersion {sv!r} < {MIN_SCHEMA_VERSION}")
    if d.get("id") not in (None,):
        report(file, where, "has an instance-specific id (leave it out)")

    # Template variables.
    variables = {v.get("name"): v for v in (d.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        report(file, "templating", "no `datasource` variable of type datasource with query prometheus")
    rp = variables.get("rp_id")
    rp_query = (rp or {}).get("query")
    if isinstance(rp_query, dict):
        rp_query = rp_query.get("query")
    if (not rp or rp.get("type") != "query" or not rp.get("includeAll")
            or re.sub(r"\s", "", rp_query or "") != "label_values(keyshift_events_total,rp_id)"):
        report(file, "templating", "no `rp_id` query variable label_values(keyshift_events_total, rp_id) with All")
    for name, v in variables.items():
        if v.get("type") == "query" and v.get("datasource") != EXPECTED_DS:
            report(file, f"variable {name!r}", f"datasource {v.get('datasource')!r}, want {EXPECTED_DS}")

    # No data source other than the variable, anywhere.
    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "datasource" and path != "templating" and not (
                        isinstance(v, dict) and v == EXPECTED_DS):
                    if not (isinstance(node, dict) and node.get("builtIn")):
                        report(file, path, f"datasource {v!r}: use {EXPECTED_DS} (no hard-coded uid)")
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
    walk({k: v for k, v in d.items() if k != "templating"}, "")

    # Links to the other keyshift dashboards.
    urls = {l.get("url", "").split("?")[0].rstrip("/") for l in d.get("links") or []}
    has_tag_link = any(l.get("type") == "dashboards" and "keyshift" in (l.get("tags") or [])
                       for l in d.get("links") or [])
    for other in sorted(all_uids - {uid}):
        if not has_tag_link and not any(u == f"/d/{other}" or u.startswith(f"/d/{other}/") for u in urls):
            report(file, "links", f"no link to dashboard {other}")

    # Panels.
    ids, cells = set(), {}
    for p in all_panels(d):
        pid, ptype = p.get("id"), p.get("type")
        where = f"panel {pid} {p.get('title')!r}"
        if pid in ids:
            report(file, where, "duplicate panel id")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy"):
            report(file, where, "no gridPos")
        else:
            if g["x"] + g["w"] > 24:
                report(file, where, "wider than the 24-column grid")
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        report(file, where, f"overlaps panel {cells[(x, y)]}")
                        break
                    cells[(x, y)] = pid
                else:
                    continue
                break
        if ptype in NO_QUERY_TYPES:
            continue
        if ptype not in PANEL_TYPES:
            report(file, where, f"panel type {ptype!r} is not one of {sorted(PANEL_TYPES)}")
        for key in ("title", "description"):
            if not (isinstance(p.get(key), str) and p[key].strip()):
                report(file, where, f"no {key}")
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            report(file, where, "no unit (fieldConfig.defaults.unit)")
        elif unit not in UNITS and not re.match(r"^(suffix|prefix|si|count|currency|time):", unit):
            report(file, where, f"unknown unit {unit!r}")
        if p.get("datasource") != EXPECTED_DS:
            report(file, where, f"panel datasource {p.get('datasource')!r}, want {EXPECTED_DS}")
        targets = p.get("targets") or []
        if not targets:
            report(file, where, "no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            report(file, where, f"refIds missing or repeated: {refs}")
        for t in targets:
            if t.get("datasource") != EXPECTED_DS:
                report(file, f"{where} target {t.get('refId')}",
                       f"target datasource {t.get('datasource')!r}, want {EXPECTED_DS}")
            if not (t.get("expr") or "").strip():
                report(file, f"{where} target {t.get('refId')}", "no expr")

    # PromQL.
    kpis = {}
    for q in queries(d):
        expr = q.expr
        if q.kind == "variable":
            expr, label = variable_expr(q.expr)
            if expr is None:
                continue
            sels = check_expr(report, file, q.where, expr, contract, records,
                              dashboard_vars=variables, kind="variable")
            for s in sels:
                m = contract.get(s.name)
                if label and m is not None and label not in m.labels:
                    report(file, q.where, f"{s.name} has no label {label!r}")
            continue
        if not expr.strip():
            continue
        sels = check_expr(report, file, q.where, expr, contract, records,
                          panel_type=q.panel_type, instant=q.instant,
                          dashboard_vars=variables, kind=q.kind)
        if q.kind == "target":
            for s in sels:
                for op, v in s.values("kpi"):
                    vals = [v] if op == "=" else (regex_alternatives(v) or []) if op == "=~" else []
                    kpis.setdefault(s.name, set()).update(vals)
    return kpis
