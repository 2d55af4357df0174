// Proves that dashcheck fails on the mistakes it exists to catch, and passes a
// minimal valid dashboard.
package main

import (
	"os"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
)

func TestMain(m *testing.M) {
	plugins.RegisterDefaultPlugins()
	os.Exit(m.Run())
}

// minimal is the smallest dashboard the SDK accepts (templating and
// annotations are required); extra fields go after it.
const minimal = `"title": "t", "schemaVersion": 41, "templating": {"list": []}, "annotations": {"list": []}`

// dash wraps one panel in a minimal dashboard.
func dash(panel string) string {
	return `{` + minimal + `, "panels": [` + panel + `]}`
}

const goodPanel = `{
  "type": "timeseries", "id": 1, "title": "p",
  "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
  "datasource": {"type": "prometheus", "uid": "${datasource}"},
  "targets": [{"refId": "A", "expr": "up", "datasource": {"type": "prometheus", "uid": "${datasource}"}}],
  "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
  "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": true, "calcs": []},
              "tooltip": {"mode": "single", "sort": "none"}}
}`

func TestValidDashboardPasses(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":     `{` + minimal + `}`,
		"one panel": dash(goodPanel),
		"row":       dash(`{"type": "row", "id": 2, "title": "r", "collapsed": true, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": [` + goodPanel + `]}`),
	} {
		if problems := Check([]byte(doc)); len(problems) != 0 {
			t.Errorf("%s: want no problems, got %q", name, problems)
		}
	}
}

func TestBadDashboardsFail(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"unknown panel field",
			dash(strings.Replace(goodPanel, `"title": "p"`, `"title": "p", "titel": "typo"`, 1)),
			"unexpected field 'titel'"},
		{"wrong type of the dashboard title",
			`{` + strings.Replace(minimal, `"title": "t"`, `"title": 5`, 1) + `}`,
			"title: json: cannot unmarshal number"},
		{"wrong type of a panel title",
			dash(strings.Replace(goodPanel, `"title": "p"`, `"title": 5`, 1)),
			"title: json: cannot unmarshal number"},
		{"wrong option type",
			dash(strings.Replace(goodPanel, `"showLegend": true`, `"showLegend": "yes"`, 1)),
			"options.legend"},
		{"unknown option",
			dash(strings.Replace(goodPanel, `"tooltip": {`, `"tooltipp": {}, "tooltip": {`, 1)),
			"tooltipp"},
		{"fieldConfig typo",
			dash(strings.Replace(goodPanel, `"unit": "s"`, `"unitt": "s"`, 1)),
			"unitt"},
		{"fieldConfig typo in a row's panel",
			dash(`{"type": "row", "id": 2, "title": "r", "collapsed": true, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0}, "panels": [` +
				strings.Replace(goodPanel, `"unit": "s"`, `"unitt": "s"`, 1) + `]}`),
			"panels[0].panels[0].fieldConfig"},
		{"unknown dashboard field",
			`{` + minimal + `, "refreshh": "5s"}`,
			"unexpected field 'refreshh'"},
		{"Validate: grid width over 24",
			dash(strings.Replace(goodPanel, `"w": 12`, `"w": 30`, 1)),
			"gridPos.w: must be <= 24"},
		{"Validate: fiscal year month",
			`{` + minimal + `, "fiscalYearStartMonth": 12}`,
			"fiscalYearStartMonth: must be < 12"},
		{"not JSON", `{"title": `, "unexpected end of JSON input"},
	}
	for _, c := range cases {
		problems := Check([]byte(c.doc))
		if len(problems) == 0 {
			t.Errorf("%s: want a problem containing %q, got none", c.name, c.want)
			continue
		}
		if !strings.Contains(strings.Join(problems, "\n"), c.want) {
			t.Errorf("%s: want a problem containing %q, got %q", c.name, c.want, problems)
		}
	}
}
