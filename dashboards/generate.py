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

The dashboards are built by the package dashboards/grafana/:
- builders.py     panel, query, threshold and layout helpers;
- dashboard.py    the dashboard frame: variables, annotations, links, shared
                  selectors and texts;
- adoption.py, rollouts.py, reliability.py   one dashboard each.

Edit those, never the JSON: `scripts/check-dashboards.sh` fails when the
committed JSON differs from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in dashboards/grafana/

from grafana.adoption import adoption  # noqa: E402
from grafana.builders import DASHBOARDS  # noqa: E402
from grafana.reliability import auth_reliability  # noqa: E402
from grafana.rollouts import rollouts  # noqa: E402


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
