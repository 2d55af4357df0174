#!/usr/bin/env python3
"""The dashboard and alert-rule checks of scripts/check-dashboards.sh.

    check.py lint                     dashboards/*.json + dashboards/alerts/*.yml
    check.py promql-rules OUT.yml     every PromQL of the dashboards, one
                                      recording rule each, for `promtool check rules`
    check.py mutate KIND SRC DST      a broken copy of a dashboard (self-test)
    check.py mutate-rules KIND SRC DST  a broken copy of a rules file (self-test)

Options of lint / promql-rules: --dashboards FILE... --rules FILE...
(defaults: the repository's). Exit 1 on any problem, each printed as
`file: where: what`.

What `lint` checks, for every dashboard:
- structure: uid, title, tags (keyshift), schemaVersion >= 39, the
  `datasource` variable (type datasource, query prometheus), the `rp_id`
  variable (label_values(keyshift_events_total, rp_id), All included),
  links to every other keyshift dashboard, panels inside the 24-column grid
  without overlaps, unique panel ids;
- every panel other than rows and text: a known type, a title, a
  description, a unit (fieldConfig.defaults.unit, a Grafana unit id), the
  data source {"type": "prometheus", "uid": "${datasource}"} on the panel and
  on every target, at least one target, unique refIds;
- no data source anywhere (panel, target, variable, annotation) other than
  the `datasource` variable: no hard-coded uid;
- every PromQL (targets, annotations, query variables): balanced, only
  defined template variables; every metric is in docs/metrics.md's table (a
  histogram's _bucket/_sum/_count included) or a recording rule of
  dashboards/alerts; every label matcher names a label of its metric, and a
  literal value is one of the label's listed values; counters (_total,
  _bucket, _count, _sum) only inside rate(), irate() or increase() with a
  range; rate/irate/increase ranges are `$__rate_interval`, except
  increase(...[$__range]) in an instant query of a stat, bargauge, table or
  barchart panel (the count over the selected range); series of a metric
  with an `rp_id` label filtered by `rp_id=~"$rp_id"`, and, on a dashboard
  with a `rollout` variable, series with a `rollout` label by
  `rollout=~"$rollout"`;
across dashboards: unique uids, and every KPI gauge of docs/metrics.md
(`keyshift_kpi_ratio` with each of its `kpi` values, `keyshift_kpi_per_thousand`
with each of its) on some panel;
for every rules file: the same metric and label checks on every expr, and
every runbook_url's file and #anchor exist in the repository (docs/runbooks.md).

YAML comes from PyYAML or ruamel.yaml (the .tools venv has ruamel.yaml, a
dependency of check-jsonschema).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASH_DIR = ROOT / "dashboards"
ALERTS_DIR = DASH_DIR / "alerts"
METRICS_MD = ROOT / "docs" / "metrics.md"

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
# How variables are replaced for `promtool check rules`.
BUILTIN_VALUES = {
    "__rate_interval": "5m", "__interval": "1m", "__interval_ms": "60000", "__range": "1h",
    "__range_s": "3600", "__range_ms": "3600000", "__from": "0", "__to": "3600000",
}
# Series Prometheus itself makes for every scrape target; rules may use them.
SYNTHETIC_METRICS = {
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}
TARGET_LABELS = {"job", "instance"}

COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
RATE_FUNCS = {"rate", "irate", "increase"}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


# --------------------------------------------------------------------------
# The metric contract


@dataclass
class Metric:
    name: str
    kind: str
    labels: dict  # label -> set of values, or None when bounded by configuration


def load_contract(path=METRICS_MD):
    """Metric name -> Metric from the table of docs/metrics.md."""
    metrics = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.fullmatch(r"`[a-z_:][a-z0-9_:]*`", cells[0]):
            continue
        name, kind, labels_cell = cells[0].strip("`"), cells[1], cells[2]
        labels = {}
        for part in filter(None, (p.strip() for p in labels_cell.split(";"))):
            label, _, values = part.partition(":")
            label = label.strip()
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
                raise SystemExit(f"{path}: cannot read the labels of {name}: {labels_cell!r}")
            listed = re.findall(r"`([^`]*)`", values)
            labels[label] = set(listed) if listed and "*" not in values else None
        if kind == "histogram":
            metrics[name + "_bucket"] = Metric(name + "_bucket", "counter", {**labels, "le": None})
            metrics[name + "_sum"] = Metric(name + "_sum", "counter", dict(labels))
            metrics[name + "_count"] = Metric(name + "_count", "counter", dict(labels))
        metrics[name] = Metric(name, kind, labels)
    if not metrics:
        raise SystemExit(f"{path}: no metric table found")
    return metrics


# --------------------------------------------------------------------------
# PromQL, as far as these checks need it


TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])
  | (?P<num>(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
    """,
    re.X,
)


class PromQLError(Exception):
    pass


def tokenize(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


@dataclass
class Selector:
    name: str
    matchers: list = field(default_factory=list)  # (label, op, value)
    range: str | None = None
    func: str | None = None  # the innermost enclosing call

    def values(self, label):
        return [(op, v) for (lbl, op, v) in self.matchers if lbl == label]


def analyze(expr):
    """The vector selectors of `expr`, with their matchers, range and the
    function they are an argument of."""
    toks = tokenize(expr)
    n = len(toks)
    selectors, stack = [], []
    pending = None
    i = 0

    def val(j):
        return toks[j][1] if j < n else None

    def skip_group(j, open_, close):
        depth = 0
        while j < n:
            if toks[j][1] == open_:
                depth += 1
            elif toks[j][1] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise PromQLError(f"unbalanced {open_!r}")

    def matchers(j):
        """toks[j] is '{'; returns (matchers, index after '}')."""
        out = []
        j += 1
        while j < n and toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            if j + 2 >= n:
                raise PromQLError("unterminated label matchers")
            (lk, label), (_, op), (vk, value) = toks[j], toks[j + 1], toks[j + 2]
            if lk not in ("id", "str") or op not in ("=", "!=", "=~", "!~") or vk != "str":
                raise PromQLError(f"bad label matcher near {label!r} {op!r} {value!r}")
            out.append((unquote(label) if lk == "str" else label, op, unquote(value)))
            j += 3
        if j >= n:
            raise PromQLError("unterminated label matchers")
        return out, j + 1

    def range_after(j):
        if val(j) != "[":
            return None, j
        end = skip_group(j, "[", "]")
        return "".join(t[1] for t in toks[j + 1:end - 1]), end

    while i < n:
        kind, tok = toks[i]
        nxt = val(i + 1)
        if kind == "id":
            low = tok.lower()
            if low in LABEL_LIST_KEYWORDS:
                i = skip_group(i + 1, "(", ")") if nxt == "(" else i + 1
                continue
            if low in KEYWORDS:
                i += 1
                if low == "offset":
                    if val(i) == "-":
                        i += 1
                    i += 1
                continue
            if nxt == "(":
                stack.append(tok)
                i += 2
                continue
            if tok in AGGREGATIONS and nxt in ("by", "without"):
                pending = tok
                i += 1
                continue
            sel = Selector(tok, func=stack[-1] if stack else None)
            i += 1
            if val(i) == "{":
                sel.matchers, i = matchers(i)
            sel.range, i = range_after(i)
            selectors.append(sel)
            continue
        if tok == "{":
            ms, i = matchers(i)
            names = [v for (lbl, op, v) in ms if lbl == "__name__" and op == "="]
            sel = Selector(names[0] if names else "", ms, func=stack[-1] if stack else None)
            sel.range, i = range_after(i)
            selectors.append(sel)
            continue
        if tok == "(":
            stack.append(pending)
            pending = None
        elif tok == ")":
            if not stack:
                raise PromQLError("unbalanced ')'")
            stack.pop()
        elif tok == "[":
            i = skip_group(i, "[", "]")
            continue
        elif tok in ("]", "}"):
            raise PromQLError(f"unbalanced {tok!r}")
        elif tok == "@":
            i += 1
            if val(i) in ("start", "end"):
                i += 3
                continue
        i += 1
    if stack:
        raise PromQLError("unbalanced '('")
    return selectors


VAR_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def variables_in(expr):
    return {next(g for g in m.groups() if g) for m in VAR_REF.finditer(expr)}


def substitute(expr, values):
    def repl(m):
        name = next(g for g in m.groups() if g)
        return values.get(name, m.group())
    return VAR_REF.sub(repl, expr)


def regex_alternatives(value):
    """The literal values of a regex that is an alternation of literals
    (dots allowed, escaped or not), or None."""
    if not re.fullmatch(r"(?:[\w.\-]|\\\.)+(?:\|(?:[\w.\-]|\\\.)+)*", value):
        return None
    return [v.replace("\\.", ".") for v in value.split("|")]


# --------------------------------------------------------------------------
# YAML


def load_yaml(path):
    text = Path(path).read_text(encoding="utf-8")
    try:
        import yaml  # PyYAML
        return yaml.safe_load(text)
    except ImportError:
        pass
    try:
        from ruamel.yaml import YAML
    except ImportError:
        raise SystemExit("check.py needs PyYAML or ruamel.yaml (run scripts/tools.sh)")
    return YAML(typ="safe", pure=True).load(text)


# --------------------------------------------------------------------------
# Walking dashboards


@dataclass
class Query:
    where: str
    expr: str
    panel_type: str | None = None  # None: annotation or variable
    instant: bool = False
    kind: str = "target"  # target | annotation | variable


def all_panels(d):
    for p in d.get("panels") or []:
        yield p
        for q in p.get("panels") or []:
            yield q


def queries(d):
    for p in all_panels(d):
        for t in p.get("targets") or []:
            if "expr" in t:
                yield Query(f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}",
                            t.get("expr") or "", p.get("type"), bool(t.get("instant")) and not t.get("range"))
    for a in (d.get("annotations") or {}).get("list") or []:
        if a.get("builtIn"):
            continue
        for expr in {a.get("expr"), (a.get("target") or {}).get("expr")} - {None}:
            yield Query(f"annotation {a.get('name')!r}", expr, kind="annotation")
    for v in (d.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        yield Query(f"variable {v.get('name')!r}", q or "", kind="variable")


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def variable_expr(expr):
    """label_values(metric_or_selector, label) -> (selector expr, label)."""
    m = LABEL_VALUES.match(expr)
    if m:
        return m.group(1), m.group(2)
    m = re.match(r"^\s*(?:label_names|metrics)\(", expr)
    if m:
        return None, None
    m = re.match(r"^\s*query_result\((.*)\)\s*$", expr, re.S)
    if m:
        return m.group(1), None
    return expr, None


# --------------------------------------------------------------------------
# The checks


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


def runbook_anchors(path):
    anchors, seen = set(), {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
        for a in re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", line):
            anchors.add(a)
        for a in re.findall(r"\{#([\w-]+)\}", line):
            anchors.add(a)
    return anchors


def check_rules(report, files, contract, records):
    for f in files:
        doc = load_yaml(f)
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            if str(f).endswith(".rules.yml"):
                report(f, "file", "no `groups` list")
            continue
        for g in doc["groups"]:
            for i, r in enumerate(g.get("rules") or []):
                where = f"group {g.get('name')!r} rule {r.get('record') or r.get('alert')!r}"
                check_expr(report, f, where, str(r.get("expr", "")), contract, records,
                           for_dashboard=False)
                url = (r.get("annotations") or {}).get("runbook_url")
                if url:
                    check_runbook(report, f, where, url)


def check_runbook(report, file, where, url):
    target, _, anchor = url.partition("#")
    m = re.search(r"/blob/[^/]+/(.+)$", target)
    if m:
        local = ROOT / m.group(1)
    elif re.match(r"^[a-z]+://", target):
        report(file, where, f"runbook_url {url!r} points outside the repository")
        return
    else:
        local = ROOT / target.lstrip("/")
    if not local.is_file():
        report(file, where, f"runbook_url {url!r}: {local.relative_to(ROOT)} does not exist")
        return
    if anchor and anchor not in runbook_anchors(local):
        report(file, where, f"runbook_url {url!r}: no heading #{anchor} in {local.relative_to(ROOT)}")


SLO_ALERT = re.compile(r"(keyshift:[\w:]+?):ratio_rate\w+\s*>\s*\(\s*[\d.]+\s*\*\s*([\d.]+)\s*\)")
SLO_PANEL = re.compile(r"(keyshift:[\w:]+?):ratio_rate\w+(?:\{[^}]*\})?\s*/\s*([\d.]+)")


def check_slo_budgets(report, dashboards, rules):
    """A burn rate on a dashboard (`<prefix>:ratio_rate<w> / budget`) divides
    by the budget the burn-rate alerts of that prefix use (`> (k * budget)`)."""
    budgets = {}
    for f in rules:
        for g in (load_yaml(f) or {}).get("groups") or []:
            for r in g.get("rules") or []:
                if r.get("alert"):
                    for prefix, b in SLO_ALERT.findall(str(r.get("expr", ""))):
                        budgets.setdefault(prefix, set()).add(float(b))
    for f, d in dashboards.items():
        for q in queries(d):
            for prefix, b in SLO_PANEL.findall(q.expr):
                if prefix not in budgets:
                    report(f, q.where, f"burn rate of {prefix}: no burn-rate alert of it in the rules")
                elif float(b) not in budgets[prefix]:
                    report(f, q.where, f"burn rate of {prefix} divides by {b}; the alerts use "
                           f"{', '.join(str(x) for x in sorted(budgets[prefix]))}")


def recording_rules(files):
    out = set()
    for f in files:
        doc = load_yaml(f) or {}
        for g in doc.get("groups") or []:
            for r in g.get("rules") or []:
                if r.get("record"):
                    out.add(r["record"])
    return out


def lint(dashboards, rules):
    report = Report()
    contract = load_contract()
    records = recording_rules(rules)
    loaded = {}
    for f in dashboards:
        try:
            loaded[f] = json.loads(Path(f).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            report(f, "file", f"not JSON: {e}")
    uids = [d.get("uid") for d in loaded.values()]
    for u in {u for u in uids if uids.count(u) > 1}:
        report("dashboards", "uid", f"{u!r} used by several dashboards")
    kpis = {}
    for f, d in loaded.items():
        for metric, vals in check_dashboard(report, f, d, contract, records, set(uids) - {None}).items():
            kpis.setdefault(metric, set()).update(vals)
    for name in ("keyshift_kpi_ratio", "keyshift_kpi_per_thousand"):
        m = contract.get(name)
        if m is None:
            report(str(METRICS_MD), name, "KPI gauge missing from the contract")
            continue
        for v in sorted((m.labels.get("kpi") or set()) - kpis.get(name, set())):
            report("dashboards", name, f'KPI {v!r} is on no dashboard panel (kpi="{v}")')
    check_rules(report, rules, contract, records)
    check_slo_budgets(report, loaded, rules)
    used = set()
    for d in loaded.values():
        for q in queries(d):
            try:
                used |= {s.name for s in analyze(variable_expr(q.expr)[0] or "")}
            except PromQLError:
                pass
    for f in rules:
        for g in (load_yaml(f) or {}).get("groups") or []:
            for r in g.get("rules") or []:
                try:
                    used |= {s.name for s in analyze(str(r.get("expr", "")))}
                except PromQLError:
                    pass
    unused = sorted(n for n, m in contract.items()
                    if n not in used and not (m.kind == "histogram" and any(
                        n + s in used for s in ("_bucket", "_sum", "_count")))
                    and not re.search(r"_(bucket|sum|count)$", n))
    if unused:
        print("note: metrics on no dashboard or rule: " + ", ".join(unused))
    for p in report.problems:
        print(p)
    if report.problems:
        print(f"{len(report.problems)} problem(s)")
        return 1
    print(f"lint: {len(loaded)} dashboard(s), {len(rules)} rules file(s): ok")
    return 0


def promql_rules(out, dashboards):
    """Every PromQL of the dashboards, variables replaced, as recording rules."""
    lines = ["# Generated by dashboards/check.py for `promtool check rules`.", "groups:"]
    for f in dashboards:
        d = json.loads(Path(f).read_text(encoding="utf-8"))
        values = dict(BUILTIN_VALUES)
        for v in (d.get("templating") or {}).get("list") or []:
            values.setdefault(v.get("name"), "keyshift_check_value")
        lines.append(f"  - name: {json.dumps(Path(f).name)}")
        lines.append("    rules:")
        for n, q in enumerate(queries(d)):
            expr = q.expr
            if q.kind == "variable":
                expr = variable_expr(expr)[0]
                if not expr:
                    continue
            lines.append(f"      # {q.where}")
            slug = re.sub(r"[^A-Za-z0-9]+", "_", Path(f).stem)
            lines.append(f"      - record: keyshift_dashboard_check:{slug}_{n}")
            lines.append(f"        expr: {json.dumps(substitute(expr, values), ensure_ascii=False)}")
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------
# Self-test mutations


def first_panel(d, pred):
    for p in all_panels(d):
        if p.get("type") not in NO_QUERY_TYPES and pred(p):
            return p
    raise SystemExit("mutate: no panel to mutate")


def mutate(kind, src, dst):
    d = json.loads(Path(src).read_text(encoding="utf-8"))
    t0 = lambda p: p["targets"][0]
    if kind == "no-description":
        del first_panel(d, lambda p: True)["description"]
    elif kind == "no-unit":
        del first_panel(d, lambda p: True)["fieldConfig"]["defaults"]["unit"]
    elif kind == "hardcoded-uid":
        first_panel(d, lambda p: True)["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    elif kind == "hardcoded-target-uid":
        t0(first_panel(d, lambda p: True))["datasource"] = {"type": "prometheus", "uid": "PBFA97CFB590B2093"}
    elif kind == "bogus-metric":
        p = first_panel(d, lambda p: "keyshift_events_total" in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace("keyshift_events_total", "keyshift_events_bogus_total", 1)
    elif kind == "bogus-label-value":
        p = first_panel(d, lambda p: any('event_type="auth.succeeded"' in t["expr"] for t in p["targets"]))
        for t in p["targets"]:
            t["expr"] = t["expr"].replace('event_type="auth.succeeded"', 'event_type="auth.success"')
    elif kind == "bogus-label":
        p = first_panel(d, lambda p: "keyshift_events_total{" in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace("keyshift_events_total{", 'keyshift_events_total{browser="safari", ', 1)
    elif kind == "broken-promql":
        p = first_panel(d, lambda p: t0(p)["expr"].rstrip().endswith(")"))
        t0(p)["expr"] = t0(p)["expr"].rstrip()[:-1] + " +"
    elif kind == "fixed-rate-window":
        p = first_panel(d, lambda p: "[$__rate_interval]" in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace("[$__rate_interval]", "[5m]")
    elif kind == "range-in-timeseries":
        p = first_panel(d, lambda p: p["type"] == "timeseries" and "[$__rate_interval]" in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace("rate(", "increase(", 1).replace("[$__rate_interval]", "[$__range]", 1)
    elif kind == "bare-counter":
        p = first_panel(d, lambda p: re.search(r"rate\((keyshift_\w+_total\{[^}]*\})\[\$__rate_interval\]\)", t0(p)["expr"]))
        t0(p)["expr"] = re.sub(r"\brate\((keyshift_\w+_total\{[^}]*\})\[\$__rate_interval\]\)", r"\1", t0(p)["expr"], count=1)
    elif kind == "no-rp-filter":
        p = first_panel(d, lambda p: 'rp_id=~"$rp_id", ' in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace('rp_id=~"$rp_id", ', "")
    elif kind == "undefined-variable":
        p = first_panel(d, lambda p: '"$rp_id"' in t0(p)["expr"])
        t0(p)["expr"] = t0(p)["expr"].replace('"$rp_id"', '"$relying_party"')
    elif kind == "no-targets":
        first_panel(d, lambda p: True)["targets"] = []
    elif kind == "no-datasource-variable":
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "datasource"]
    elif kind == "drop-kpi":
        d["panels"] = [p for p in d["panels"]
                       if not any('kpi="at_risk_holders"' in t.get("expr", "") for t in p.get("targets", []))]
    elif kind == "unknown-field":
        first_panel(d, lambda p: True)["bogusField"] = True
    elif kind == "unknown-option":
        first_panel(d, lambda p: p["type"] == "stat")["options"]["bogusOption"] = 1
    elif kind == "wrong-type":
        d["schemaVersion"] = str(d["schemaVersion"])
    elif kind == "old-panel-type":
        first_panel(d, lambda p: p["type"] == "timeseries")["type"] = "graph"
    elif kind == "no-links":
        d["links"] = []
    elif kind == "stale":
        first_panel(d, lambda p: True)["title"] += " (edited by hand)"
    else:
        raise SystemExit(f"mutate: unknown kind {kind!r}")
    Path(dst).write_text(json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def mutate_rules(kind, src, dst):
    text = Path(src).read_text(encoding="utf-8")
    if kind == "bogus-metric":
        new = text.replace("keyshift_events_total", "keyshift_events_bogus_total", 1)
    elif kind == "bad-anchor":
        new = re.sub(r"(runbook_url:\s*\S+#)([\w-]+)", r"\1no-such-section", text, count=1)
    elif kind == "broken-promql":
        new = re.sub(r"(expr:\s*)(\S.*)", r"\1(\2", text, count=1)
    elif kind == "lint":
        # promtool --lint=all: a rule that duplicates another.
        m = re.search(r"^(\s*)- record: .*\n(?:\1  .*\n)+", text, re.M)
        if not m:
            raise SystemExit("mutate-rules: no recording rule to duplicate")
        new = text[:m.end()] + m.group(0) + text[m.end():]
    else:
        raise SystemExit(f"mutate-rules: unknown kind {kind!r}")
    if new == text:
        raise SystemExit(f"mutate-rules: {kind} changed nothing")
    Path(dst).write_text(new, encoding="utf-8")
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("lint", "promql-rules"):
        s = sub.add_parser(name)
        if name == "promql-rules":
            s.add_argument("out")
        s.add_argument("--dashboards", nargs="*", default=None)
        s.add_argument("--rules", nargs="*", default=None)
    for name in ("mutate", "mutate-rules"):
        s = sub.add_parser(name)
        s.add_argument("kind")
        s.add_argument("src")
        s.add_argument("dst")
    a = ap.parse_args(argv[1:])
    if a.cmd in ("mutate", "mutate-rules"):
        return (mutate if a.cmd == "mutate" else mutate_rules)(a.kind, a.src, a.dst)
    dashboards = a.dashboards if a.dashboards is not None else sorted(str(p) for p in DASH_DIR.glob("*.json"))
    if not dashboards:
        print("no dashboards")
        return 1
    if a.cmd == "promql-rules":
        return promql_rules(a.out, dashboards)
    rules = a.rules if a.rules is not None else sorted(str(p) for p in ALERTS_DIR.glob("*.yml"))
    return lint(dashboards, rules)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
