// Command dashcheck checks Grafana dashboard JSON files against the Grafana
// Foundation SDK's dashboard model (the classic JSON model, schemaVersion 4x):
//
//	dashcheck FILE...
//
// For each file it decodes the dashboard strictly with the SDK
// (Dashboard.UnmarshalJSONStrict: unknown fields, wrong types, missing
// required fields; panel options, custom field config and targets through the
// SDK's registered panel and data-query plugins), then runs the SDK's
// Validate(). Two gaps of the SDK's strict decoder are closed here:
//
//   - it decodes each panel's fieldConfig leniently (only defaults.custom is
//     strict), so a typo such as "unitt" would pass: fieldConfig is decoded
//     again with FieldConfigSource.UnmarshalJSONStrict;
//   - it returns typed-nil error lists and drops the decoded panels in that
//     case, so Validate() runs on a leniently decoded copy, which keeps them.
//
// Prints "ok FILE" per clean file, "FILE: path: message" per problem; exits 1
// when any file has a problem, 2 on usage errors.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprintln(os.Stderr, "usage: dashcheck DASHBOARD.json...")
		os.Exit(2)
	}
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		problems := Check(raw)
		if len(problems) == 0 {
			fmt.Printf("ok %s\n", path)
			continue
		}
		failed = true
		for _, p := range problems {
			fmt.Printf("%s: %s\n", path, p)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// Check returns every problem of one dashboard JSON document, empty when it
// is valid. The SDK's plugins must be registered first
// (plugins.RegisterDefaultPlugins).
func Check(raw []byte) []string {
	var problems []string
	var strict dashboard.Dashboard
	problems = append(problems, flatten("", strict.UnmarshalJSONStrict(raw))...)

	var generic struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		// Not a JSON object at all: the strict decoder said so already.
		return dedup(problems)
	}
	problems = append(problems, checkFieldConfigs("panels", generic.Panels)...)

	var lenient dashboard.Dashboard
	if err := json.Unmarshal(raw, &lenient); err == nil {
		problems = append(problems, flatten("", lenient.Validate())...)
	}
	return dedup(problems)
}

// checkFieldConfigs decodes each panel's fieldConfig strictly, rows' nested
// panels included.
func checkFieldConfigs(prefix string, panels []json.RawMessage) []string {
	var problems []string
	for i, rawPanel := range panels {
		path := prefix + "[" + strconv.Itoa(i) + "]"
		var p struct {
			FieldConfig json.RawMessage   `json:"fieldConfig"`
			Panels      []json.RawMessage `json:"panels"`
		}
		if json.Unmarshal(rawPanel, &p) != nil {
			continue // reported by the strict decoder
		}
		if len(p.FieldConfig) > 0 && string(p.FieldConfig) != "null" {
			var fc dashboard.FieldConfigSource
			problems = append(problems, flatten(path+".fieldConfig", fc.UnmarshalJSONStrict(p.FieldConfig))...)
		}
		problems = append(problems, checkFieldConfigs(path+".panels", p.Panels)...)
	}
	return problems
}

// flatten turns an SDK error into one line per problem. The SDK returns
// cog.BuildErrors even when the list is empty (a typed nil), so an empty list
// is no error.
func flatten(prefix string, err error) []string {
	if err == nil {
		return nil
	}
	var list cog.BuildErrors
	if errors.As(err, &list) {
		out := make([]string, 0, len(list))
		for _, e := range list {
			if e != nil {
				out = append(out, join(prefix, e.Path)+": "+e.Message)
			}
		}
		return out
	}
	var one *cog.BuildError
	if errors.As(err, &one) {
		if one == nil {
			return nil
		}
		return []string{join(prefix, one.Path) + ": " + one.Message}
	}
	if prefix == "" {
		return []string{err.Error()}
	}
	return []string{prefix + ": " + err.Error()}
}

func join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	default:
		return prefix + "." + path
	}
}

func dedup(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
