#!/usr/bin/env python3
"""Cross-checks docker-compose.yml against the code (stdlib only; no Docker).

    scripts/check-compose.py [--keyshift BIN] [--compose FILE] [--env-file FILE]
    scripts/check-compose.py --keyshift BIN --self-test

1. Loads the compose file as Docker Compose v2 does (.tools/bin/composecheck,
   from scripts/tools.sh): interpolation from the env file, schema, depends_on.
2. Checks what it refers to against the repository and the keyshift binary:
   - host files and directories mounted, the build context and Dockerfile
     exist; the Dockerfile's `--features` exist in Cargo.toml; .dockerignore
     keeps the workspace members in;
   - every keyshift subcommand and `--flag` of a `command:` exists
     (`BIN --help`, `BIN SUB --help`);
   - every service's KEYSHIFT__* variables, flags and --config file load:
     `BIN check-config` is run with them (a renamed key fails), and the
     effective configuration is checked: the listen address, the S3 endpoint,
     bucket and storage options, the Kafka brokers and topics, the
     pseudonymization secret shared by every store writer, one controller;
   - every published port and health-check port is one the service listens
     on; services others wait on (service_healthy) have a health check; every
     long-running service has a health check and a restart policy;
   - Prometheus: its config and rule files are mounted and valid (promtool),
     every scrape target is a service and the port it listens on, every
     keyshift service is scraped;
   - Grafana: the provisioning is mounted; data source URLs name a service
     and its port; dashboard provider paths are mounted dashboards;
   - every variable of the env file is used, every secret it feeds is set;
   - the S3Proxy image is the version the object-storage tests run.
Exits 1 with the list of problems. Without --keyshift, the checks that need
the binary are skipped (and said so).

--self-test copies the compose setup into a temporary directory, breaks it in
several ways (a renamed flag, a renamed config key, a wrong published port, a
wrong scrape target, ...) and fails unless every break is reported.

The checks live in the package scripts/compose_check/: util.py (helpers),
keyshift.py (the binary, its image and the keyshift services' commands and
configuration), network.py (listen ports, addresses), config.py (the
effective configuration), monitoring.py (Prometheus, Grafana), project.py
(check(): every check, in order), selftest.py (the mutations).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in scripts/compose_check/

from compose_check.keyshift import Keyshift  # noqa: E402
from compose_check.project import check  # noqa: E402
from compose_check.selftest import self_test  # noqa: E402
from compose_check.util import ROOT  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keyshift", type=Path, help="the keyshift binary (target/debug/keyshift)")
    ap.add_argument("--compose", type=Path, default=ROOT / "docker-compose.yml")
    ap.add_argument("--env-file", type=Path, default=ROOT / ".env.example")
    ap.add_argument("--self-test", action="store_true", help="break copies of the files and expect failures")
    args = ap.parse_args()
    keyshift = None
    if args.keyshift:
        if not os.access(args.keyshift, os.X_OK):
            print(f"check-compose: {args.keyshift} is not an executable", file=sys.stderr)
            return 2
        keyshift = Keyshift(args.keyshift.resolve())
    if args.self_test:
        if keyshift is None:
            print("check-compose: --self-test needs --keyshift BIN", file=sys.stderr)
            return 2
        return self_test(keyshift, args.compose.resolve(), args.env_file.resolve())
    report = check(args.compose.resolve(), args.env_file.resolve(), keyshift)
    for n in report.notes:
        print(f"check-compose: {n}")
    if report.problems:
        print(f"check-compose: {len(report.problems)} problem(s) in {args.compose}:", file=sys.stderr)
        for p in report.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"check-compose: ok ({args.compose.name}, {args.env_file.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
