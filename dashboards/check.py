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

The checks live in the package dashboards/checks/: sources.py (inputs: the
metric contract, YAML, dashboard queries), promql.py (PromQL parsing and the
promql-rules export), lint.py (per-dashboard checks), crosscheck.py (checks
across files, the lint command), selftest.py (the mutations).
"""

from __future__ import annotations

import argparse
import sys

sys.dont_write_bytecode = True  # no __pycache__ in dashboards/checks/

from checks.crosscheck import lint  # noqa: E402
from checks.promql import promql_rules  # noqa: E402
from checks.selftest import mutate, mutate_rules  # noqa: E402
from checks.sources import ALERTS_DIR, DASH_DIR  # noqa: E402


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
