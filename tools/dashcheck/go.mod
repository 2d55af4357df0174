// dashcheck: checks Grafana dashboard JSON with the Grafana Foundation SDK
// (built into .tools/bin by scripts/tools.sh).
module keyshift/tools/dashcheck

go 1.24

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
