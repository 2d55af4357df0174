"""The dashboard and alert-rule checks behind dashboards/check.py (run by
scripts/check-dashboards.sh): sources, promql, lint, crosscheck, selftest."""
