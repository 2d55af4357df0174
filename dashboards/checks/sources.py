"""The inputs of the checks: the repository's paths, the metric contract
(docs/metrics.md's table), YAML (PyYAML or ruamel.yaml) and the rules of
rules files, and the queries of a dashboard (targets, annotations,
variables)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
DASH_DIR = ROOT / "dashboards"
ALERTS_DIR = DASH_DIR / "alerts"
METRICS_MD = ROOT / "docs" / "metrics.md"


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


def rules_of(files):
    """(file, rule) for every rule of every group of the rules files."""
    for f in files:
        for g in (load_yaml(f) or {}).get("groups") or []:
            for r in g.get("rules") or []:
                yield f, r


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
