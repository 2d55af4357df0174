"""`--self-test`: break copies of the compose setup in known ways
(MUTATIONS) and expect each break to be reported."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from .util import ROOT
from .keyshift import Keyshift
from .project import check


MUTATIONS = [
    # (what, file, old, new, expected in a new problem)
    ("renamed flag", "docker-compose.yml", '"collector", "--brokers"', '"collector", "--broker"', "unknown flag --broker"),
    ("renamed subcommand", "docker-compose.yml", 'command: ["ingest", ', 'command: ["ingst", ', "unknown subcommand"),
    ("renamed config key", "docker-compose.yml", "KEYSHIFT__STORE__URI:", "KEYSHIFT__STORE__URL:", "check-config"),
    ("storage option typo", "docker-compose.yml", "STORAGE_OPTIONS__AWS_ENDPOINT:", "STORAGE_OPTIONS__AWS_ENDPONT:", "aws_endpont"),
    ("published port", "docker-compose.yml", '"8081:8080"', '"8081:8090"', "publishes container port 8090"),
    ("loopback listen", "docker-compose.yml", '"--topic", "keyshift.auth-events", "--listen", "0.0.0.0:8080"]\n    environment:\n      <<: *keyshift-env\n    ports',
     '"--topic", "keyshift.auth-events", "--listen", "127.0.0.1:8080"]\n    environment:\n      <<: *keyshift-env\n    ports', "listens on loopback"),
    ("health check port", "docker-compose.yml", "http://127.0.0.1:8080/healthz", "http://127.0.0.1:8090/healthz", "the health check calls port 8090"),
    ("topic not created", "docker-compose.yml", '"collector", "--brokers", "kafka:9092", "--topic", "keyshift.auth-events"',
     '"collector", "--brokers", "kafka:9092", "--topic", "keyshift.events"', "keyshift.events, which is not created"),
    ("broker port", "docker-compose.yml", '"ingest", "--brokers", "kafka:9092"', '"ingest", "--brokers", "kafka:9093"', "not an advertised listener"),
    ("secret file", "docker-compose.yml", "KEYSHIFT__INGEST__SECRET_FILE: /run/secrets/pseudonym.key",
     "KEYSHIFT__INGEST__SECRET_FILE: /run/secrets/other.key", "is not one of its secrets"),
    ("missing mount", "docker-compose.yml", "./dashboards/prometheus/prometheus.yml:", "./dashboards/prometheus/prometheus.yaml:", "does not exist"),
    ("undefined dependency", "docker-compose.yml", "      # ingest-1 creates the tables on first start; the others open them.\n      ingest-1:",
     "      # ingest-1 creates the tables on first start; the others open them.\n      ingest-9:", "composecheck"),
    ("unknown top-level key", "docker-compose.yml", "\nvolumes:\n", "\nvolumez: {}\nvolumes:\n", "composecheck"),
    ("unused env variable", ".env.example", "GRAFANA_ADMIN_PASSWORD=", "UNUSED_VARIABLE=x\nGRAFANA_ADMIN_PASSWORD=", "UNUSED_VARIABLE is set"),
    ("scrape port", "dashboards/prometheus/prometheus.yml", '"collector:8080"', '"collector:9100"', "listens on [8080], not 9100"),
    ("scrape unknown service", "dashboards/prometheus/prometheus.yml", '"ingest-2:8080"', '"ingest-3:8080"', "ingest-3 is not a service"),
    ("dashboard not mounted", "docker-compose.yml", "      - ./dashboards/rollouts.json:/var/lib/grafana/dashboards/rollouts.json:ro\n", "", "rollouts.json is not mounted"),
    ("non-dashboard mounted", "docker-compose.yml", "./dashboards/rollouts.json:/var/lib/grafana/dashboards/rollouts.json:ro",
     "./dashboards:/var/lib/grafana/dashboards:ro", "is no dashboard"),
    ("unknown cargo feature", "Dockerfile", "--features s3", "--features s4", "--features s4"),
    ("untested S3Proxy", "docker-compose.yml", "s3proxy:s3proxy-4.1.0", "s3proxy:s3proxy-4.0.0", "the version the object-storage tests run"),
]


def self_test(keyshift: Keyshift, compose: Path, env_file: Path) -> int:
    copied = {"docker-compose.yml": compose, ".env.example": env_file,
              "dashboards/prometheus/prometheus.yml": ROOT / "dashboards/prometheus/prometheus.yml",
              "Dockerfile": ROOT / "Dockerfile"}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def layout() -> None:
            for entry in ROOT.iterdir():
                if entry.name in (".git", "target", ".tools", "docker-compose.yml", ".env.example", "Dockerfile", "dashboards"):
                    continue
                (work / entry.name).symlink_to(entry)
            (work / "dashboards").mkdir()
            for entry in (ROOT / "dashboards").iterdir():
                if entry.name != "prometheus":
                    (work / "dashboards" / entry.name).symlink_to(entry)
            (work / "dashboards/prometheus").mkdir()
            for rel, src in copied.items():
                shutil.copyfile(src, work / rel)

        layout()
        baseline = set(check(work / "docker-compose.yml", work / ".env.example", keyshift).problems)
        for what, rel, old, new, expected in MUTATIONS:
            target = work / rel
            original = target.read_text()
            if old not in original:
                failures.append(f"{what}: the text to change is gone from {rel}: {old!r}")
                continue
            target.write_text(original.replace(old, new, 1))
            try:
                problems = check(work / "docker-compose.yml", work / ".env.example", keyshift).problems
            finally:
                target.write_text(original)
            fresh = [p for p in problems if p not in baseline]
            if any(expected in p for p in fresh):
                print(f"self-test: ok   {what}: reported")
            else:
                failures.append(f"{what}: expected a new problem containing {expected!r}, got {fresh}")
    if baseline:
        print(f"self-test: note: the unchanged files have {len(baseline)} problem(s) (see a normal run)")
    if failures:
        print("self-test: FAILED", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"self-test: all {len(MUTATIONS)} broken copies were caught")
    return 0
