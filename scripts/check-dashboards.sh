#!/usr/bin/env bash
# The dashboards' and alert rules' CI check. Fails on any problem.
#
# Usage: scripts/check-dashboards.sh              all checks (installs the tools first)
#        scripts/check-dashboards.sh --self-test  prove every check fails on a broken copy
#        scripts/check-dashboards.sh --no-install ... skip scripts/tools.sh (tools already there)
#
# Checks, on dashboards/*.json and dashboards/alerts/:
#   generated  dashboards/generate.py, run into a temporary folder, writes
#              exactly the committed dashboards/*.json (edit the generator,
#              never the JSON)
#   sdk        .tools/bin/dashcheck: the Grafana Foundation SDK's strict
#              unmarshal (unknown fields, wrong types) and Validate()
#   schema     check-jsonschema against dashboards/schema/dashboard.jsonschema.json
#   promql     every query (targets, annotations, variables), template
#              variables replaced, as a recording rule: promtool check rules
#   lint       dashboards/check.py lint: panels (title, description, unit,
#              data source variable, no hard-coded uid), rate windows,
#              counters, rp_id/rollout filters, metrics and labels against
#              docs/metrics.md and the recording rules, KPI gauges on a
#              panel, runbook anchors of the rules
#   rules      promtool check rules --lint=all --lint-fatal
#              dashboards/alerts/*.rules.yml
#   rule-tests promtool test rules dashboards/alerts/tests/*.yml
#
# Tools: .tools/bin/dashcheck, .tools/venv/bin/check-jsonschema and promtool
# (.tools/bin/promtool, else on PATH), installed by scripts/tools.sh. Each
# can be overridden for a run: DASHCHECK=… CHECK_JSONSCHEMA=… PROMTOOL=…
# PYTHON=… (the Python that runs check.py: needs PyYAML or ruamel.yaml; by
# default the .tools venv's). A missing tool, schema, rules or tests file
# fails the check; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

SELF_TEST=0
INSTALL=1
for arg in "$@"; do
  case $arg in
    --self-test) SELF_TEST=1 ;;
    --no-install) INSTALL=0 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [[ $INSTALL == 1 ]]; then
  if [[ ! -x scripts/tools.sh ]]; then
    echo "scripts/tools.sh is missing: it installs the tools these checks need" >&2
    exit 1
  fi
  echo "==> scripts/tools.sh"
  scripts/tools.sh
fi

DASHCHECK=${DASHCHECK:-.tools/bin/dashcheck}
CHECK_JSONSCHEMA=${CHECK_JSONSCHEMA:-.tools/venv/bin/check-jsonschema}
if [[ -z ${PROMTOOL:-} ]]; then
  if [[ -x .tools/bin/promtool ]]; then PROMTOOL=.tools/bin/promtool; else PROMTOOL=$(command -v promtool || echo promtool); fi
fi
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x .tools/venv/bin/python ]]; then PYTHON=.tools/venv/bin/python; else PYTHON=python3; fi
fi
SCHEMA=dashboards/schema/dashboard.jsonschema.json

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

need() { # need FILE WHAT: a required file or executable
  if [[ ! -e $1 ]]; then echo "missing $2: $1" >&2; return 1; fi
}

# --- the checks; each takes the dashboards (or the alerts folder) to check --

check_generated() { # check_generated DIR: DIR/*.json are what generate.py writes
  local dir=$1 out=$WORK/generated rc=0 f
  rm -rf "$out" && mkdir -p "$out"
  python3 dashboards/generate.py "$out" || return 1
  for f in "$out"/*.json; do
    if [[ ! -f $dir/$(basename "$f") ]]; then
      echo "$dir/$(basename "$f") is missing: run python3 dashboards/generate.py" >&2; rc=1
    elif ! diff -u "$dir/$(basename "$f")" "$f" >&2; then
      echo "$dir/$(basename "$f") differs from what dashboards/generate.py writes (above): edit the generator and regenerate" >&2; rc=1
    fi
  done
  for f in "$dir"/*.json; do
    [[ -e $f ]] || continue
    if [[ ! -f $out/$(basename "$f") ]]; then
      echo "$f is not written by dashboards/generate.py" >&2; rc=1
    fi
  done
  return $rc
}

check_sdk() {
  need "$DASHCHECK" "the Foundation SDK checker (scripts/tools.sh builds it)" || return 1
  "$DASHCHECK" "$@"
}

check_schema() {
  need "$CHECK_JSONSCHEMA" "check-jsonschema (scripts/tools.sh installs it)" || return 1
  need "$SCHEMA" "the dashboard JSON schema" || return 1
  "$CHECK_JSONSCHEMA" --schemafile "$SCHEMA" "$@"
}

check_promql() {
  local rules=$WORK/dashboard-promql.rules.yml
  "$PYTHON" dashboards/check.py promql-rules "$rules" --dashboards "$@" || return 1
  "$PROMTOOL" check rules --lint=all --lint-fatal "$rules"
}

check_lint() { # check_lint [--rules FILE...] -- DASHBOARD...
  local rules=()
  if [[ ${1:-} == --rules ]]; then
    shift
    while [[ $1 != -- ]]; do rules+=("$1"); shift; done
    shift
  else
    [[ ${1:-} == -- ]] && shift
    rules=(dashboards/alerts/*.yml)
    [[ -e ${rules[0]} ]] || rules=()
  fi
  "$PYTHON" dashboards/check.py lint --dashboards "$@" --rules "${rules[@]}"
}

check_rules() { # check_rules ALERTS_DIR
  local rules=("$1"/*.rules.yml)
  if [[ ! -e ${rules[0]} ]]; then echo "no rules: $1/*.rules.yml" >&2; return 1; fi
  "$PROMTOOL" check rules --lint=all --lint-fatal "${rules[@]}"
}

check_rule_tests() { # check_rule_tests ALERTS_DIR
  local tests=("$1"/tests/*.yml)
  if [[ ! -e ${tests[0]} ]]; then echo "no rule tests: $1/tests/*.yml" >&2; return 1; fi
  "$PROMTOOL" test rules "${tests[@]}"
}

FAILED=()
stage() { # stage NAME COMMAND...: run one check, remember a failure
  local name=$1; shift
  echo "==> $name"
  if "$@"; then echo "    $name: ok"; else echo "    $name: FAILED" >&2; FAILED+=("$name"); fi
}

run_all() {
  local dashboards=(dashboards/*.json)
  if [[ ! -e ${dashboards[0]} ]]; then echo "no dashboards/*.json" >&2; exit 1; fi
  need "$PROMTOOL" promtool || exit 1
  "$PROMTOOL" --version | head -1
  stage generated check_generated dashboards
  stage sdk check_sdk "${dashboards[@]}"
  stage schema check_schema "${dashboards[@]}"
  stage promql check_promql "${dashboards[@]}"
  stage lint check_lint -- "${dashboards[@]}"
  stage rules check_rules dashboards/alerts
  stage rule-tests check_rule_tests dashboards/alerts
  if ((${#FAILED[@]})); then
    echo "check-dashboards: FAILED: ${FAILED[*]}" >&2
    exit 1
  fi
  echo "check-dashboards: all checks passed"
}

# --- self-test: every check must catch its kind of breakage -----------------

# Runs the checks (default: all) on DIR/*.json, and the rules checks on
# DIR/alerts when it exists; prints the names of the checks that failed.
failing_checks() { # failing_checks DIR [CHECK...]
  local dir=$1 out=()
  shift
  local only=" ${*:-generated sdk schema promql lint rules rule-tests} "
  local dashboards=("$dir"/*.json)
  local rules=(dashboards/alerts/*.yml)
  [[ -d $dir/alerts ]] && rules=("$dir"/alerts/*.yml)
  run() { [[ $only == *" $1 "* ]]; }
  run generated && { check_generated "$dir" >/dev/null 2>&1 || out+=(generated); }
  run sdk && { check_sdk "${dashboards[@]}" >/dev/null 2>&1 || out+=(sdk); }
  run schema && { check_schema "${dashboards[@]}" >/dev/null 2>&1 || out+=(schema); }
  run promql && { check_promql "${dashboards[@]}" >/dev/null 2>&1 || out+=(promql); }
  run lint && { check_lint --rules "${rules[@]}" -- "${dashboards[@]}" >/dev/null 2>&1 || out+=(lint); }
  if [[ -d $dir/alerts ]]; then
    run rules && { check_rules "$dir/alerts" >/dev/null 2>&1 || out+=(rules); }
    run rule-tests && { check_rule_tests "$dir/alerts" >/dev/null 2>&1 || out+=(rule-tests); }
  fi
  echo "${out[*]:-}"
}

self_test() {
  local fails=0 n=0
  local base=$WORK/base
  mkdir -p "$base"
  cp dashboards/*.json "$base"/
  echo "==> baseline: the unmodified dashboards and rules pass every check"
  cp -r dashboards/alerts "$base/alerts"
  local caught
  caught=$(failing_checks "$base")
  if [[ -n $caught ]]; then
    echo "    the unmodified copy already fails: $caught (run scripts/check-dashboards.sh)" >&2
    exit 1
  fi
  rm -rf "$base/alerts"
  echo "    ok"

  # mutation  dashboard  checks that must catch it
  local cases=(
    "no-description          passkey-adoption.json  lint"
    "no-unit                 auth-reliability.json  lint"
    "hardcoded-uid           rollouts.json          lint"
    "hardcoded-target-uid    passkey-adoption.json  lint"
    "no-datasource-variable  auth-reliability.json  lint"
    "no-targets              rollouts.json          lint"
    "bogus-metric            passkey-adoption.json  lint"
    "bogus-label             passkey-adoption.json  lint"
    "bogus-label-value       auth-reliability.json  lint"
    "broken-promql           auth-reliability.json  promql"
    "fixed-rate-window       rollouts.json          lint"
    "range-in-timeseries     auth-reliability.json  lint"
    "bare-counter            passkey-adoption.json  lint"
    "no-rp-filter            auth-reliability.json  lint"
    "undefined-variable      passkey-adoption.json  lint"
    "drop-kpi                passkey-adoption.json  lint"
    "no-links                rollouts.json          lint"
    "old-panel-type          rollouts.json          lint"
    "unknown-field           auth-reliability.json  sdk"
    "unknown-option          passkey-adoption.json  sdk"
    "wrong-type              rollouts.json          sdk schema"
    "stale                   passkey-adoption.json  generated"
  )
  local line kind file expect dir want missing
  for line in "${cases[@]}"; do
    read -r kind file expect <<<"$line"
    expect=${line#*"$file"}
    n=$((n + 1))
    dir=$WORK/case-$n
    mkdir -p "$dir"
    cp dashboards/*.json "$dir"/
    if ! "$PYTHON" dashboards/check.py mutate "$kind" "dashboards/$file" "$dir/$file"; then
      printf '    FAIL  %-24s %-22s could not be made\n' "$kind" "$file" >&2
      fails=$((fails + 1))
      continue
    fi
    caught=$(failing_checks "$dir")
    missing=""
    for want in $expect; do
      [[ " $caught " == *" $want "* ]] || missing+=" $want"
    done
    if [[ -n $missing ]]; then
      printf '    FAIL  %-24s %-22s not caught by:%s (caught by: %s)\n' "$kind" "$file" "$missing" "${caught:-nothing}" >&2
      fails=$((fails + 1))
    else
      printf '    ok    %-24s %-22s caught by: %s\n' "$kind" "$file" "$caught"
    fi
  done

  # Rules: mutation, checks that must catch it.
  local rcases=(
    "bogus-metric   lint"
    "bad-anchor     lint"
    "broken-promql  rules"
    "lint           rules"
    "rename-alerts  rule-tests"
  )
  local rules_file
  for rules_file in dashboards/alerts/*.rules.yml; do
    for line in "${rcases[@]}"; do
      read -r kind expect <<<"$line"
      n=$((n + 1))
      dir=$WORK/case-$n
      mkdir -p "$dir"
      cp dashboards/*.json "$dir"/
      cp -r dashboards/alerts "$dir/alerts"
      if [[ $kind == rename-alerts ]]; then
        sed -E 's/^([[:space:]]*- alert:[[:space:]]*)Keyshift/\1Renamed/' "$rules_file" >"$dir/alerts/$(basename "$rules_file")"
      elif ! "$PYTHON" dashboards/check.py mutate-rules "$kind" "$rules_file" "$dir/alerts/$(basename "$rules_file")"; then
        printf '    FAIL  rules:%-18s %-22s could not be made\n' "$kind" "$(basename "$rules_file")" >&2
        fails=$((fails + 1))
        continue
      fi
      # (promtool test rules is slow: only run where expected)
      if [[ $expect == rule-tests ]]; then
        caught=$(failing_checks "$dir" lint rules rule-tests)
      else
        caught=$(failing_checks "$dir" lint rules)
      fi
      if [[ " $caught " != *" $expect "* ]]; then
        printf '    FAIL  rules:%-18s %-22s not caught by: %s (caught by: %s)\n' "$kind" "$(basename "$rules_file")" "$expect" "${caught:-nothing}" >&2
        fails=$((fails + 1))
      else
        printf '    ok    rules:%-18s %-22s caught by: %s\n' "$kind" "$(basename "$rules_file")" "$caught"
      fi
    done
  done

  # Missing inputs fail rather than skip.
  n=$((n + 1)); dir=$WORK/case-$n; mkdir -p "$dir/alerts"
  cp dashboards/*.json "$dir"/
  cp dashboards/alerts/*.yml "$dir/alerts"/   # rules, but no tests
  caught=$(failing_checks "$dir" rules rule-tests)
  if [[ " $caught " == *" rule-tests "* ]]; then
    printf '    ok    %-24s %-22s caught by: %s\n' "no-rule-tests" "alerts/tests" "$caught"
  else
    printf '    FAIL  %-24s %-22s not caught by: rule-tests\n' "no-rule-tests" "alerts/tests" >&2
    fails=$((fails + 1))
  fi

  if ((fails)); then
    echo "self-test: $fails of $n broken copies were not caught" >&2
    exit 1
  fi
  echo "self-test: all $n broken copies were caught"
}

if [[ $SELF_TEST == 1 ]]; then
  need "$PROMTOOL" promtool || exit 1
  self_test
else
  run_all
fi
