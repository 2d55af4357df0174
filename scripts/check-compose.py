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
   - every variable of the env file is used, every secret it feeds is set.
Exits 1 with the list of problems. Without --keyshift, the checks that need
the binary are skipped (and said so).

--self-test copies the compose setup into a temporary directory, breaks it in
several ways (a renamed flag, a renamed config key, a wrong published port, a
wrong scrape target, ...) and fails unless every break is reported.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "bin"

# object_store's S3 keys (AmazonS3ConfigKey, ClientConfigKey with `aws_`) and
# deltalake's own S3 keys that keyshift passes through in store.storage_options.
KNOWN_STORAGE_OPTIONS = {
    # object_store AmazonS3ConfigKey (and aliases)
    "aws_access_key_id", "access_key_id", "aws_secret_access_key", "secret_access_key",
    "aws_default_region", "default_region", "aws_region", "region",
    "aws_bucket", "aws_bucket_name", "bucket_name", "bucket",
    "aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint", "aws_endpoint_url_s3",
    "aws_session_token", "aws_token", "session_token", "token",
    "aws_virtual_hosted_style_request", "virtual_hosted_style_request",
    "aws_s3_express", "s3_express", "aws_imdsv1_fallback", "imdsv1_fallback",
    "aws_metadata_endpoint", "metadata_endpoint", "aws_unsigned_payload", "unsigned_payload",
    "aws_checksum_algorithm", "checksum_algorithm",
    "aws_container_credentials_relative_uri", "container_credentials_relative_uri",
    "aws_container_credentials_full_uri", "container_credentials_full_uri",
    "aws_container_authorization_token_file", "container_authorization_token_file",
    "aws_web_identity_token_file", "web_identity_token_file",
    "aws_role_arn", "role_arn", "aws_role_session_name", "role_session_name",
    "aws_endpoint_url_sts", "endpoint_url_sts", "aws_skip_signature", "skip_signature",
    "aws_copy_if_not_exists", "copy_if_not_exists", "aws_conditional_put", "conditional_put",
    "aws_disable_tagging", "disable_tagging", "aws_request_payer", "request_payer",
    "aws_server_side_encryption", "server_side_encryption", "aws_sse_kms_key_id",
    "sse_kms_key_id", "aws_sse_bucket_key_enabled", "sse_bucket_key_enabled",
    "aws_sse_customer_key_base64", "sse_customer_key_base64",
    # object_store ClientConfigKey (bare or with the aws_ prefix)
    *(p + k for p in ("", "aws_") for k in (
        "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type",
        "http1_only", "http2_only", "http2_keep_alive_interval", "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle", "http2_max_frame_size", "pool_idle_timeout",
        "pool_max_idle_per_host", "proxy_url", "proxy_ca_certificate", "proxy_excludes",
        "randomize_addresses", "timeout", "user_agent")),
    # deltalake-aws
    "aws_s3_allow_unsafe_rename", "aws_s3_locking_provider", "delta_dynamo_table_name",
    "aws_s3_pool_idle_timeout_seconds", "aws_sts_pool_idle_timeout_seconds",
    "aws_s3_get_internal_server_error_retries", "aws_profile",
}

# Command-line flags of keyshift that override a configuration key
# (src/main.rs, `Overrides`).
FLAG_TO_KEY = {
    "--listen": "KEYSHIFT__SERVER__LISTEN",
    "--data-dir": "KEYSHIFT__SERVER__DATA_DIR",
    "--table-uri": "KEYSHIFT__STORE__URI",
    "--brokers": "KEYSHIFT__KAFKA__BROKERS",
    "--kafka-brokers": "KEYSHIFT__KAFKA__BROKERS",
    "--topic": "KEYSHIFT__KAFKA__TOPIC",
    "--group": "KEYSHIFT__KAFKA__GROUP_ID",
}
# Subcommands that run the store pipeline (pseudonymize and write).
STORE_SUBCOMMANDS = {"run", "ingest"}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def note(self, what: str) -> None:
        self.notes.append(what)


# ----------------------------------------------------------------- helpers --


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def image_repo(image: str | None) -> str:
    """`prom/prometheus:v3.5.0` -> `prom/prometheus` (registry prefix kept)."""
    if not image:
        return ""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: len(image) - len(last)] + last.split(":", 1)[0]
    return image


def parse_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def host_port(addr: str) -> tuple[str, int | None]:
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return host, None


def yaml_docs(path: Path, where: str, report: Report) -> list:
    tool = TOOLS / "yaml2json"
    if not tool.exists():
        report.problem(where, f"{tool} is missing: run scripts/tools.sh")
        return []
    out = run([str(tool), str(path)])
    if out.returncode != 0:
        report.problem(where, f"{path} is not valid YAML: {out.stderr.strip()}")
        return []
    return [d for d in json.loads(out.stdout) if d is not None]


def to_host(service: dict, container_path: str) -> Path | None:
    """The host path a container path comes from, through bind mounts."""
    best = None
    for v in service.get("volumes") or []:
        if v.get("type") != "bind":
            continue
        target = v["target"].rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, v["source"])
    if best is None:
        return None
    return Path(best[1] + container_path[len(best[0]):])


def command_of(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return [cmd] if isinstance(cmd, str) else list(cmd)


def flag_values(args: list[str]) -> list[tuple[str, str | None]]:
    """(--flag, value) pairs of an argument list, `--flag=value` included."""
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                name, value = a.split("=", 1)
                out.append((name, value))
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                out.append((a, args[i + 1]))
                i += 1
            else:
                out.append((a, None))
        i += 1
    return out


# --------------------------------------------------------------- keyshift --


class Keyshift:
    """What the keyshift binary accepts, from its --help output."""

    def __init__(self, binary: Path):
        self.binary = binary
        self._flags: dict[str, set[str] | None] = {}
        out = run([str(binary), "--help"])
        if out.returncode != 0:
            raise RuntimeError(f"{binary} --help failed: {out.stderr}")
        self.subcommands = set(self._section(out.stdout, "Commands"))

    @staticmethod
    def _section(text: str, title: str) -> list[str]:
        items, inside = [], False
        for line in text.splitlines():
            if line.startswith(title + ":"):
                inside = True
                continue
            if inside:
                if line and not line.startswith(" "):
                    break
                m = re.match(r"\s+(?:-\w, )?(--?[\w-]+|[\w-]+)", line)
                if m:
                    items.append(m.group(1))
        return items

    def flags(self, sub: str) -> set[str]:
        if sub not in self._flags:
            out = run([str(self.binary), sub, "--help"])
            self._flags[sub] = set(self._section(out.stdout, "Options")) if out.returncode == 0 else None
        return self._flags[sub] or set()

    def check_config(self, env: dict[str, str], config: Path | None) -> tuple[dict | None, str]:
        cmd = [str(self.binary), "check-config"]
        if config is not None:
            cmd += ["--config", str(config)]
        with tempfile.TemporaryDirectory() as cwd:
            base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": cwd}
            out = run(cmd, env={**base, **env}, cwd=cwd)
        if out.returncode != 0:
            return None, (out.stderr or out.stdout).strip()
        return json.loads(out.stdout), ""


def dockerfile_info(path: Path) -> dict:
    """ENTRYPOINT, ENV (of the last stage) and cargo --features of a Dockerfile."""
    text = path.read_text()
    joined = re.sub(r"\\\n", " ", text)
    info = {"entrypoint": None, "env": {}, "features": set()}
    for line in joined.splitlines():
        s = line.strip()
        if s.upper().startswith("FROM "):
            info["env"] = {}
            info["entrypoint"] = None
        elif s.upper().startswith("ENTRYPOINT "):
            rest = s[len("ENTRYPOINT "):].strip()
            try:
                info["entrypoint"] = json.loads(rest)
            except json.JSONDecodeError:
                info["entrypoint"] = rest.split()
        elif s.upper().startswith("ENV "):
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", s[4:]):
                info["env"][m.group(1)] = m.group(2).strip('"')
        if "cargo build" in s:
            for m in re.finditer(r"--features[ =]([\w,\-\"' ]+?)(?=\s--|\s&&|$)", s):
                for f in re.split(r"[ ,]+", m.group(1).strip("\"' ")):
                    if f:
                        info["features"].add(f)
    return info


# ------------------------------------------------------------------ checks --


def listen_ports(name: str, svc: dict, effective: dict[str, dict]) -> set[int] | None:
    """Ports the service listens on, by what it is; None: unknown."""
    repo = image_repo(svc.get("image"))
    env = svc.get("environment") or {}
    cmd = command_of(svc)
    if name in effective:
        _, port = host_port(effective[name]["server"]["listen"])
        return {port} if port else set()
    if svc.get("build"):  # keyshift, its configuration not loaded: flag, env, default
        listen = (env.get("KEYSHIFT__SERVER__LISTEN") or "127.0.0.1:8080").strip('"')
        for flag, value in flag_values(cmd[1:]):
            if flag == "--listen" and value:
                listen = value
        return {host_port(listen)[1]}
    if repo.endswith("prom/prometheus"):
        for a in cmd:
            if a.startswith("--web.listen-address="):
                return {host_port(a.split("=", 1)[1])[1]}
        return {9090}
    if repo.endswith("grafana/grafana"):
        return {int(env.get("GF_SERVER_HTTP_PORT") or 3000)}
    if repo.endswith("apache/kafka"):
        ports = set()
        for item in (env.get("KAFKA_LISTENERS") or "").split(","):
            if "://" in item and not item.startswith("CONTROLLER"):
                ports.add(host_port(item.split("://", 1)[1])[1])
        return ports
    if repo.endswith("s3proxy"):
        return {urlparse(env.get("S3PROXY_ENDPOINT") or "http://0.0.0.0:80").port or 80}
    return None


def check(compose: Path, env_file: Path, keyshift: Keyshift | None) -> Report:
    report = Report()
    root = compose.parent
    tool = TOOLS / "composecheck"
    if not tool.exists():
        report.problem("tools", f"{tool} is missing: run scripts/tools.sh")
        return report
    out = run([str(tool), str(compose), "--env-file", str(env_file)])
    if out.returncode != 0:
        report.problem("composecheck", out.stderr.strip())
        return report
    project = json.loads(out.stdout)
    services: dict[str, dict] = project.get("services") or {}
    report.note(f"{len(services)} services: {', '.join(sorted(services))}")
    dotenv = parse_dotenv(env_file)

    # -- env file: every variable used, every required one present ----------
    text = compose.read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    used |= {s.get("environment") for s in (project.get("secrets") or {}).values() if s.get("environment")}
    for var in sorted(set(dotenv) - used):
        report.problem(env_file.name, f"{var} is set but docker-compose.yml never uses it")
    for name, sec in (project.get("secrets") or {}).items():
        if sec.get("environment"):
            var = sec["environment"]
            if var not in dotenv:
                report.problem(f"secrets.{name}", f"its variable {var} is not in {env_file.name}")
            elif name.endswith("pseudonym-secret") and not re.fullmatch(r"[0-9a-fA-F]{64}", dotenv[var]):
                report.problem(f"secrets.{name}", f"{var} must be 64 hex characters (32 bytes)")
        elif sec.get("file") and not Path(sec["file"]).exists():
            report.problem(f"secrets.{name}", f"file {sec['file']} does not exist")

    # -- mounts, build context ------------------------------------------------
    for name, svc in services.items():
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind" and not Path(v["source"]).exists():
                report.problem(name, f"mounts {v['source']} (at {v['target']}), which does not exist")
        build = svc.get("build")
        if build:
            ctx = Path(build["context"])
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if not ctx.is_dir():
                report.problem(name, f"build context {ctx} does not exist")
            elif not dockerfile.is_file():
                report.problem(name, f"Dockerfile {dockerfile} does not exist")

    keyshift_services = {n: s for n, s in services.items() if s.get("build")}
    dockerfiles = {}
    for name, svc in keyshift_services.items():
        ctx = Path(svc["build"]["context"])
        dockerfile = ctx / svc["build"].get("dockerfile", "Dockerfile")
        if dockerfile.is_file() and dockerfile not in dockerfiles:
            dockerfiles[dockerfile] = dockerfile_info(dockerfile)
            check_image_build(dockerfile, dockerfiles[dockerfile], ctx, report)

    # -- keyshift commands, flags and configuration ---------------------------
    effective: dict[str, dict] = {}
    subcommand: dict[str, str] = {}
    for name, svc in keyshift_services.items():
        dockerfile = Path(svc["build"]["context"]) / svc["build"].get("dockerfile", "Dockerfile")
        info = dockerfiles.get(dockerfile, {"entrypoint": None, "env": {}})
        entry = svc.get("entrypoint") or info["entrypoint"] or []
        if not entry or Path(entry[-1]).name != "keyshift":
            report.problem(name, f"the entrypoint {entry} is not keyshift")
            continue
        args = command_of(svc)
        if not args:
            report.problem(name, "has no command (keyshift SUBCOMMAND …)")
            continue
        sub = args[0]
        subcommand[name] = sub
        if keyshift is None:
            continue
        if sub not in keyshift.subcommands:
            report.problem(name, f"unknown subcommand `keyshift {sub}` (has: {', '.join(sorted(keyshift.subcommands))})")
            continue
        known = keyshift.flags(sub)
        flags = flag_values(args[1:])
        for flag, _ in flags:
            if flag not in known:
                report.problem(name, f"unknown flag {flag} of `keyshift {sub}` (has: {', '.join(sorted(known))})")
        env = {k: v for k, v in info["env"].items() if k.startswith("KEYSHIFT__")}
        env.update({k: v for k, v in (svc.get("environment") or {}).items()
                    if k.startswith("KEYSHIFT") and v is not None})
        config_path = None
        container_config = env.pop("KEYSHIFT_CONFIG", None)
        for flag, value in flags:
            if flag == "--config":
                container_config = value
            elif flag in FLAG_TO_KEY and value is not None:
                env[FLAG_TO_KEY[flag]] = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if container_config:
            config_path = to_host(svc, container_config)
            if config_path is None:
                report.problem(name, f"--config {container_config} is not inside a bind mount")
                continue
            if not config_path.is_file():
                report.problem(name, f"--config {container_config} comes from {config_path}, which does not exist")
                continue
        cfg, err = keyshift.check_config(env, config_path)
        if cfg is None:
            report.problem(name, "`keyshift check-config` with its environment and flags fails:\n      "
                           + err.replace("\n", "\n      "))
            continue
        effective[name] = cfg

    if keyshift is None:
        report.note("SKIPPED: subcommands, flags and configuration keys (no --keyshift BIN)")
    check_effective_config(services, effective, subcommand, report)

    # -- ports and health checks ----------------------------------------------
    ports_of = {n: listen_ports(n, s, effective) for n, s in services.items()}
    completed = {dep for s in services.values() for dep, d in (s.get("depends_on") or {}).items()
                 if d.get("condition") == "service_completed_successfully"}
    for name, svc in services.items():
        ports = ports_of[name]
        for p in svc.get("ports") or []:
            if ports is None:
                report.problem(name, f"publishes {p['target']}, but this check does not know what {svc.get('image')} listens on")
            elif p["target"] not in ports:
                report.problem(name, f"publishes container port {p['target']}, but it listens on {sorted(ports)}")
        if name in effective and svc.get("ports"):
            host, _ = host_port(effective[name]["server"]["listen"])
            if host in ("127.0.0.1", "::1", "localhost"):
                report.problem(name, f"publishes a port but listens on loopback ({effective[name]['server']['listen']})")
        hc = svc.get("healthcheck") or {}
        test = " ".join(hc.get("test") or [])
        for m in re.finditer(r"(?:127\.0\.0\.1|localhost)[:/](\d+)", test):
            if ports is not None and int(m.group(1)) not in ports:
                report.problem(name, f"the health check calls port {m.group(1)}, but it listens on {sorted(ports)}")
        if name in keyshift_services and "/healthz" not in test:
            report.problem(name, "the health check does not call /healthz")
        if name not in completed:  # long-running
            if not test or hc.get("disable"):
                report.problem(name, "a long-running service without a health check")
            if svc.get("restart") in (None, "no"):
                report.problem(name, "a long-running service without a restart policy")
        for dep, d in (svc.get("depends_on") or {}).items():
            if d.get("condition") == "service_healthy" and not (services.get(dep, {}).get("healthcheck") or {}).get("test"):
                report.problem(name, f"waits for {dep} to be healthy, but {dep} has no health check")

    check_prometheus(services, ports_of, keyshift_services, report)
    check_grafana(services, report)
    return report


def check_image_build(dockerfile: Path, info: dict, ctx: Path, report: Report) -> None:
    where = dockerfile.name
    cargo = tomllib.loads((ctx / "Cargo.toml").read_text()) if (ctx / "Cargo.toml").is_file() else {}
    features = set((cargo.get("features") or {}).keys())
    for f in sorted(info["features"]):
        if f not in features:
            report.problem(where, f"builds with --features {f}, which Cargo.toml does not define")
    ignore = ctx / ".dockerignore"
    if ignore.is_file():
        patterns = [ln.strip().rstrip("/") for ln in ignore.read_text().splitlines()
                    if ln.strip() and not ln.strip().startswith(("#", "!"))]
        members = (cargo.get("workspace") or {}).get("members") or []
        needed = ["Cargo.toml", "Cargo.lock", *[m for m in members if m != "."]]
        for t in cargo.get("test") or []:
            needed.append(t["path"].split("/", 1)[0])
        for path in needed:
            for pat in patterns:
                if fnmatch.fnmatch(path, pat):
                    report.problem(".dockerignore", f"`{pat}` leaves {path} out of the build context")


def check_effective_config(services: dict, effective: dict, subcommand: dict, report: Report) -> None:
    env_of = {n: s.get("environment") or {} for n, s in services.items()}
    created_topics = set()
    buckets = set()
    for name, svc in services.items():
        cmd = " ".join(command_of(svc) + list(svc.get("entrypoint") or []))
        if "kafka-topics" in cmd:
            created_topics |= set(re.findall(r"--topic[ =]([\w.\-]+)", cmd))
        if "create-bucket" in cmd:
            for b in re.findall(r"--bucket[ =]\"?(\$?\{?\w+\}?|[\w.\-]+)\"?", cmd):
                b = b.strip("${}")
                buckets.add(env_of[name].get(b, b) if b.isupper() else b)
    secrets_used = set()
    controllers, groups = [], {}
    for name, cfg in effective.items():
        svc = services[name]
        sub = subcommand.get(name)
        store, kafka = cfg["store"], cfg["kafka"]
        # object store
        uri = store.get("uri")
        if sub in STORE_SUBCOMMANDS and uri:
            u = urlparse(uri)
            if u.scheme == "s3":
                if buckets and u.netloc not in buckets:
                    report.problem(name, f"store.uri {uri}: bucket {u.netloc} is not the one created ({', '.join(sorted(buckets))})")
                opts = store.get("storage_options") or {}
                for key in sorted(opts):
                    if key not in KNOWN_STORAGE_OPTIONS:
                        report.problem(name, f"store.storage_options.{key} is not a known object_store / deltalake S3 storage option")
                endpoint = opts.get("aws_endpoint") or opts.get("aws_endpoint_url") or opts.get("endpoint")
                if endpoint:
                    check_address(name, "store.storage_options.aws_endpoint", urlparse(endpoint).hostname,
                                  urlparse(endpoint).port or 80, services, effective, report)
        # kafka
        brokers = kafka.get("brokers")
        if brokers:
            for b in brokers.split(","):
                host, port = host_port(b.strip())
                check_broker(name, host, port, services, report)
            topics = {kafka["topic"]}
            if cfg["rollout"]["rollouts"]:
                topics.add(cfg["rollout"]["decisions_topic"])
            for t in sorted(topics):
                if created_topics and t not in created_topics:
                    report.problem(name, f"uses Kafka topic {t}, which is not created ({', '.join(sorted(created_topics))})")
            if sub in STORE_SUBCOMMANDS:
                groups.setdefault(kafka["group_id"], []).append(name)
        # the pseudonymization secret
        if sub in STORE_SUBCOMMANDS:
            secret_file = cfg["ingest"].get("secret_file")
            mounted = {f"/run/secrets/{s.get('target') or s['source']}": s["source"]
                       for s in svc.get("secrets") or []}
            if not secret_file:
                report.problem(name, "ingest.secret_file is unset: each process would make its own secret in its data dir")
            elif secret_file not in mounted:
                report.problem(name, f"ingest.secret_file {secret_file} is not one of its secrets ({', '.join(mounted) or 'none'})")
            else:
                secrets_used.add(mounted[secret_file])
        if cfg["rollout"]["rollouts"]:
            controllers.append(name)
    if len(secrets_used) > 1:
        report.problem("secrets", f"store writers use different pseudonymization secrets: {sorted(secrets_used)}")
    if len(controllers) > 1:
        report.problem("rollout", f"rollouts are configured in {controllers}: one controller only")
    for group, members in sorted(groups.items()):
        report.note(f"consumer group {group}: {', '.join(members)}")
    if controllers:
        report.note(f"rollout controller: {controllers[0]}")


def check_address(name, what, host, port, services, effective, report) -> None:
    if host not in services:
        report.problem(name, f"{what} names {host}, which is not a service")
        return
    ports = listen_ports(host, services[host], effective)
    if ports is not None and port not in ports:
        report.problem(name, f"{what} uses port {port} of {host}, which listens on {sorted(ports)}")


def check_broker(name, host, port, services, report) -> None:
    svc = services.get(host)
    if svc is None:
        report.problem(name, f"Kafka broker {host}:{port}: {host} is not a service")
        return
    advertised = (svc.get("environment") or {}).get("KAFKA_ADVERTISED_LISTENERS") or ""
    pairs = {host_port(item.split("://", 1)[1]) for item in advertised.split(",") if "://" in item}
    if (host, port) not in pairs:
        report.problem(name, f"Kafka broker {host}:{port} is not an advertised listener of {host} ({advertised})")


def check_prometheus(services, ports_of, keyshift_services, report) -> None:
    proms = {n: s for n, s in services.items() if image_repo(s.get("image")).endswith("prom/prometheus")}
    for name, svc in proms.items():
        cfg_path = "/etc/prometheus/prometheus.yml"
        for a in command_of(svc):
            if a.startswith("--config.file="):
                cfg_path = a.split("=", 1)[1]
        host = to_host(svc, cfg_path)
        if host is None or not host.is_file():
            report.problem(name, f"its config {cfg_path} is not a mounted file")
            continue
        if shutil.which("promtool"):
            out = run(["promtool", "check", "config", "--syntax-only", str(host)])
            if out.returncode != 0:
                report.problem(name, f"promtool check config {host}: {(out.stdout + out.stderr).strip()}")
        docs = yaml_docs(host, name, report)
        if not docs:
            continue
        cfg = docs[0]
        rule_files = []
        for pattern in cfg.get("rule_files") or []:
            hp = to_host(svc, pattern)
            matched = sorted(glob.glob(str(hp))) if hp else []
            if not matched:
                report.problem(name, f"rule_files {pattern}: no mounted file matches")
            rule_files += matched
        if rule_files and shutil.which("promtool"):
            out = run(["promtool", "check", "rules", *rule_files])
            if out.returncode != 0:
                report.problem(name, f"promtool check rules: {(out.stdout + out.stderr).strip()}")
        scraped = set()
        for job in cfg.get("scrape_configs") or []:
            for sc in job.get("static_configs") or []:
                for target in sc.get("targets") or []:
                    h, p = host_port(target)
                    where = f"{host.name} job {job.get('job_name')} target {target}"
                    if h in ("localhost", "127.0.0.1"):
                        h = name
                    if h not in services:
                        report.problem(where, f"{h} is not a service")
                        continue
                    scraped.add(h)
                    ports = ports_of.get(h)
                    if ports is not None and p not in ports:
                        report.problem(where, f"{h} listens on {sorted(ports)}, not {p}")
        for ks in sorted(set(keyshift_services) - scraped):
            report.problem(host.name, f"keyshift service {ks} is not scraped")


def check_grafana(services, report) -> None:
    grafanas = {n: s for n, s in services.items() if image_repo(s.get("image")).endswith("grafana/grafana")}
    for name, svc in grafanas.items():
        prov = to_host(svc, "/etc/grafana/provisioning")
        if prov is None or not prov.is_dir():
            report.problem(name, "/etc/grafana/provisioning is not a mounted directory")
            continue
        for kind in ("datasources", "dashboards"):
            files = sorted(glob.glob(str(prov / kind / "*.yml")) + glob.glob(str(prov / kind / "*.yaml")))
            if not files:
                report.problem(name, f"no {kind} provisioning: {prov / kind}/*.yml matches nothing")
            for f in files:
                for doc in yaml_docs(Path(f), name, report):
                    if kind == "datasources":
                        for ds in doc.get("datasources") or []:
                            u = urlparse(ds.get("url") or "")
                            if u.hostname:
                                check_address(f"{name} {Path(f).name}", f"data source {ds.get('name')} url",
                                              u.hostname, u.port or (443 if u.scheme == "https" else 80),
                                              services, {}, report)
                    else:
                        for p in doc.get("providers") or []:
                            path = (p.get("options") or {}).get("path")
                            if path:
                                check_dashboard_provider(name, svc, f"{Path(f).name} provider {p.get('name')}", path, report)


def json_files(folder: Path) -> list[Path]:
    """*.json under folder, at any depth, through symbolic links too."""
    return sorted(Path(d) / f for d, _, files in os.walk(folder, followlinks=True)
                  for f in files if f.endswith(".json"))


def is_dashboard(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "$schema" not in doc and ("panels" in doc or "schemaVersion" in doc)


def check_dashboard_provider(name: str, svc: dict, where: str, path: str, report: Report) -> None:
    """What Grafana's file provider finds under `path`: dashboards only, and
    every dashboard of the folders the mounted ones come from."""
    where = f"{name} {where}"
    path = path.rstrip("/")
    found: list[Path] = []
    folder = to_host(svc, path)
    if folder is not None:
        if not folder.is_dir():
            report.problem(where, f"path {path} comes from {folder}, which is not a directory")
            return
        found = json_files(folder)
    else:
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind" and v["target"].startswith(path + "/"):
                src = Path(v["source"])
                found += json_files(src) if src.is_dir() else [src]
    if not found:
        report.problem(where, f"no dashboard JSON is mounted under {path}")
        return
    for f in found:
        if f.exists() and not is_dashboard(f):
            report.problem(where, f"{f} is mounted under {path} but is no dashboard (Grafana would try to load it)")
    for folder in sorted({f.parent for f in found}):
        for f in sorted(folder.glob("*.json")):
            if is_dashboard(f) and f not in found:
                report.problem(where, f"dashboard {f} is not mounted under {path}")


# --------------------------------------------------------------- self-test --

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
