#!/usr/bin/env bash
# Installs the check tools used by scripts/test.sh, idempotently (a second
# run only checks and skips). Usable on a fresh Debian machine and in CI, as
# root or with sudo for the apt step:
#
#   - promtool + prometheus      Debian package `prometheus` (its service is
#                                kept from starting: policy-rc.d during the
#                                install, then disabled; verified with pgrep)
#   - .tools/venv                Python venv with check-jsonschema, and delta-rs's
#                                `deltalake` + pyarrow for the interoperability test (pinned)
#   - .tools/bin/dashcheck       Grafana dashboards vs the Grafana Foundation SDK (tools/dashcheck)
#   - .tools/bin/composecheck    docker-compose.yml as Docker Compose v2 loads it (tools/composecheck)
#   - .tools/bin/yaml2json       YAML → JSON for scripts/check-compose.py (tools/composecheck/cmd/yaml2json)
#   - chromium                   Debian package `chromium`: the status page's headless-browser test
#
# The dashboard JSON schema is committed (dashboards/schema/), nothing to fetch.
# Usage: scripts/tools.sh        (.tools/ is git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CHECK_JSONSCHEMA_VERSION=0.39.0
DELTALAKE_VERSION=1.6.6
PYARROW_VERSION=26.0.1
TOOLS=$ROOT/.tools
mkdir -p "$TOOLS/bin"

say() { echo "tools: $*"; }

# shellcheck source=lib/packages.sh
. "$ROOT/scripts/lib/packages.sh"

# --- promtool / prometheus (Debian) -----------------------------------------
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
restore_policy() {
  if [[ -n $POLICY_BACKUP ]]; then
    as_root cp -p "$POLICY_BACKUP" "$POLICY"
    rm -f "$POLICY_BACKUP"
  else
    as_root rm -f "$POLICY"
  fi
}

install_prometheus() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    say "prometheus/promtool: present ($(promtool --version 2>&1 | head -1))"
    return
  fi
  say "prometheus/promtool: installing Debian package prometheus (service kept stopped)"
  # The package's postinst starts its service (invoke-rc.d, or systemd);
  # policy-rc.d exit 101 forbids that for the duration of the install.
  POLICY_BACKUP=""
  if [[ -e $POLICY ]]; then
    POLICY_BACKUP=$(mktemp)
    as_root cp -p "$POLICY" "$POLICY_BACKUP"
  fi
  trap restore_policy EXIT
  printf '#!/bin/sh\n# scripts/tools.sh: no service starts during this install\nexit 101\n' |
    as_root tee "$POLICY" >/dev/null
  as_root chmod 755 "$POLICY"
  apt_install prometheus
  restore_policy
  trap - EXIT
  # Keep it from starting at boot as well.
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/prometheus ]]; then
    as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
}

# The Debian service runs as user `prometheus`; stop it if it runs anyway.
ensure_no_prometheus_service() {
  if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    say "the Debian prometheus service is running; stopping it"
    if [[ -d /run/systemd/system ]]; then
      as_root systemctl stop prometheus.service || true
    else
      as_root invoke-rc.d prometheus stop || as_root /etc/init.d/prometheus stop || true
    fi
  fi
  if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    echo "tools: the Debian prometheus service is still running (pgrep -u prometheus -x prometheus)" >&2
    exit 1
  fi
  say "no Debian prometheus service running (pgrep)"
}

# --- check-jsonschema, deltalake (venv) --------------------------------------
install_venv() {
  local venv=$TOOLS/venv
  local want="check-jsonschema $CHECK_JSONSCHEMA_VERSION, deltalake $DELTALAKE_VERSION, pyarrow $PYARROW_VERSION"
  if [[ -x $venv/bin/check-jsonschema ]] &&
    [[ $("$venv/bin/check-jsonschema" --version 2>/dev/null) == *" $CHECK_JSONSCHEMA_VERSION"* ]] &&
    [[ $("$venv/bin/python" -c 'import deltalake, pyarrow; print(deltalake.__version__, pyarrow.__version__)' 2>/dev/null) == "$DELTALAKE_VERSION $PYARROW_VERSION" ]]; then
    say "$want: present ($venv)"
    return
  fi
  say "$want: installing into $venv"
  make_venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" \
    "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION"
  "$venv/bin/check-jsonschema" --version
  "$venv/bin/python" -c 'import deltalake; print("deltalake", deltalake.__version__)'
}

# --- Go programs ------------------------------------------------------------
GO=$(command -v go || true)
[[ -z $GO && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go

# build_go NAME MODULE [PACKAGE]: .tools/bin/NAME from tools/MODULE, rebuilt
# when a source, go.mod or go.sum of that module is newer than the binary.
build_go() {
  local name=$1 src=$ROOT/tools/$2 pkg=${3:-.} bin=$TOOLS/bin/$1
  if [[ -x $bin ]] && [[ -z $(find "$src" -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -newer "$bin" -print -quit) ]]; then
    say "$name: up to date ($bin)"
    return
  fi
  if [[ -z $GO ]]; then
    echo "tools: no Go toolchain (go on PATH or /usr/local/go/bin/go) to build $name" >&2
    exit 1
  fi
  say "$name: building from tools/$2 ($("$GO" version | cut -d' ' -f3))"
  (cd "$src" && "$GO" build -mod=readonly -trimpath -buildvcs=false -o "$bin.tmp" "$pkg" && mv "$bin.tmp" "$bin")
}

# --- chromium (Debian) -------------------------------------------------------
install_chromium() {
  local c
  for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null; then
      say "chromium: present ($("$c" --version 2>/dev/null | head -1))"
      return
    fi
  done
  say "chromium: installing Debian package chromium (headless browser for the status page test)"
  apt_install chromium
  chromium --version
}

install_prometheus
ensure_no_prometheus_service
install_chromium
install_venv
build_go dashcheck dashcheck
build_go composecheck composecheck
build_go yaml2json composecheck ./cmd/yaml2json
say "done"
