"""keyshift's Grafana dashboards as Python, written to JSON by
dashboards/generate.py: builders (panels, queries, layout), dashboard (the
shared frame), and one module per dashboard (adoption, rollouts,
reliability)."""
