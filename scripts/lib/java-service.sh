# Shared by scripts/kafka.sh and scripts/s3.sh: a Java server whose jars
# come from Maven Central, run with `java -cp`, tracked by a pid file.
# Source it after defining `say`.

# shellcheck source=packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/packages.sh"

# Java and Maven, from Debian's packages when missing and run as root.
install_java_maven() {
  if command -v java >/dev/null && command -v mvn >/dev/null; then return; fi
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing Java and Maven from Debian packages"
    apt_install default-jre-headless maven >/dev/null
  fi
  command -v java >/dev/null || { say "java not found (need 17+)"; exit 1; }
  command -v mvn >/dev/null || { say "mvn not found"; exit 1; }
}

# fetch_jars POM LIBS WHAT: the runtime dependencies of POM into LIBS, once.
fetch_jars() {
  local pom=$1 libs=$2 what=$3
  if [[ -f $libs/.complete ]]; then return; fi
  install_java_maven
  say "fetching $what jars from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$libs" -DincludeScope=runtime
  touch "$libs/.complete"
}

# pid_running PIDFILE: the process it names is alive.
pid_running() {
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# port_answers PORT: something accepts connections on 127.0.0.1:PORT.
port_answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pid PIDFILE SECONDS WHAT: SIGTERM, then SIGKILL after SECONDS.
stop_pid() {
  local pidfile=$1 seconds=$2 what=$3
  if ! pid_running "$pidfile"; then rm -f "$pidfile"; return; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((seconds * 2))); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return; }
    sleep 0.5
  done
  say "$what ignored SIGTERM for $seconds s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
