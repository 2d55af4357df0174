# Shared by scripts/tools.sh, scripts/lib/java-service.sh (kafka.sh, s3.sh) and
# scripts/interop-spark.sh: Debian packages and Python venvs, the one way.
# Source it after defining `say`.

# as_root CMD…: as root directly, otherwise through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG…: `apt-get update` only when the install fails (stale lists).
apt_install() {
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@")
  if ! as_root "${apt[@]}"; then
    say "apt-get install $* failed; running apt-get update and retrying"
    as_root apt-get update
    as_root "${apt[@]}"
  fi
}

# make_venv DIR: a Python venv at DIR. Debian's python3 lacks ensurepip
# until python3-venv is installed; install it then and retry once.
make_venv() {
  local dir=$1
  if python3 -m venv "$dir" 2>/dev/null; then return; fi
  say "python3 -m venv failed; installing Debian package python3-venv"
  rm -rf "$dir"
  apt_install python3-venv
  python3 -m venv "$dir"
}
