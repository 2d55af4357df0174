"""The checks across files and the `lint` command: unique uids, every KPI
gauge on a panel, the rules files' metrics and runbook anchors, the SLO
budgets of the dashboards against the burn-rate alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .sources import (
    METRICS_MD, ROOT, load_contract, load_yaml, queries, rules_of, variable_expr,
)
from .promql import PromQLError, analyze
from .lint import Report, check_dashboard, check_expr


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
    for _, r in rules_of(rules):
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
    return {r["record"] for _, r in rules_of(files) if r.get("record")}


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
    for _, r in rules_of(rules):
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
