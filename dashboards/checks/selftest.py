"""Broken copies of a dashboard or a rules file for
`scripts/check-dashboards.sh --self-test` (`check.py mutate` and
`check.py mutate-rules`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .sources import all_panels
from .lint import NO_QUERY_TYPES


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
