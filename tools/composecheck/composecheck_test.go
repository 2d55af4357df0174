// Proves that composecheck refuses what Docker Compose refuses: depends_on
// naming an undefined service, unknown top-level keys, unset required
// variables; and loads a valid file with its env file.
package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const valid = `name: t
services:
  db:
    image: postgres:17
    healthcheck:
      test: ["CMD", "pg_isready"]
  app:
    image: example/app:1
    command: ["serve", "--listen", "0.0.0.0:8080"]
    environment:
      TOKEN: ${TOKEN:?set TOKEN in .env}
    ports: ["8080:8080"]
    depends_on:
      db:
        condition: service_healthy
`

func load(t *testing.T, compose, env string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options{files: []string{file}}
	if env != "" {
		envFile := filepath.Join(dir, "test.env")
		if err := os.WriteFile(envFile, []byte(env), 0o644); err != nil {
			t.Fatal(err)
		}
		o.envFiles = []string{envFile}
	}
	project, err := Load(context.Background(), o)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := writeJSON(&b, project); err != nil {
		t.Fatal(err)
	}
	return b.String(), nil
}

func TestValidFileLoadsWithItsEnvFile(t *testing.T) {
	out, err := load(t, valid, "TOKEN=from-the-env-file\n")
	if err != nil {
		t.Fatalf("want success, got %v", err)
	}
	var p struct {
		Services map[string]struct {
			Environment map[string]string         `json:"environment"`
			DependsOn   map[string]map[string]any `json:"depends_on"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if got := p.Services["app"].Environment["TOKEN"]; got != "from-the-env-file" {
		t.Errorf("TOKEN = %q, want it interpolated from the env file", got)
	}
	if got := p.Services["app"].DependsOn["db"]["condition"]; got != "service_healthy" {
		t.Errorf("depends_on.db.condition = %v", got)
	}
}

func TestInvalidFilesFail(t *testing.T) {
	cases := []struct {
		name, compose, env, want string
	}{
		{"depends_on an undefined service",
			strings.Replace(valid, "      db:\n        condition", "      dbb:\n        condition", 1),
			"TOKEN=x\n", "dbb"},
		{"unknown top-level key",
			valid + "servicess: {}\n", "TOKEN=x\n", "servicess"},
		{"unknown service key",
			strings.Replace(valid, "    ports:", "    portz: [\"1:1\"]\n    ports:", 1), "TOKEN=x\n", "portz"},
		{"required variable unset",
			valid, "OTHER=x\n", "set TOKEN in .env"},
		{"wrong type",
			strings.Replace(valid, `ports: ["8080:8080"]`, `ports: 8080`, 1), "TOKEN=x\n", "ports"},
	}
	for _, c := range cases {
		_, err := load(t, c.compose, c.env)
		if err == nil {
			t.Errorf("%s: want an error mentioning %q, got success", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error mentioning %q, got %v", c.name, c.want, err)
		}
	}
}

func TestArgs(t *testing.T) {
	o, err := parseArgs([]string{"docker-compose.yml", "--env-file", ".env.example", "--env-file=b"})
	if err != nil || len(o.files) != 1 || strings.Join(o.envFiles, ",") != ".env.example,b" {
		t.Fatalf("got %+v, %v", o, err)
	}
	for _, bad := range [][]string{{}, {"--env-file"}, {"x.yml", "--bogus"}} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("%q: want a usage error", bad)
		}
	}
}
