"""`check()`: loads the compose project with .tools/bin/composecheck and runs
every check in order: env file and secrets, mounts and build context,
keyshift commands and configuration, ports and health checks, Prometheus,
Grafana."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .util import Report, TOOLS, build_paths, host_port, parse_dotenv, run
from .keyshift import Keyshift, check_commands, check_image_build, dockerfile_info
from .network import listen_ports
from .config import check_effective_config
from .monitoring import check_grafana, check_prometheus


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
        if svc.get("build"):
            ctx, dockerfile = build_paths(svc)
            if not ctx.is_dir():
                report.problem(name, f"build context {ctx} does not exist")
            elif not dockerfile.is_file():
                report.problem(name, f"Dockerfile {dockerfile} does not exist")

    keyshift_services = {n: s for n, s in services.items() if s.get("build")}
    dockerfiles = {}
    for name, svc in keyshift_services.items():
        ctx, dockerfile = build_paths(svc)
        if dockerfile.is_file() and dockerfile not in dockerfiles:
            dockerfiles[dockerfile] = dockerfile_info(dockerfile)
            check_image_build(dockerfile, dockerfiles[dockerfile], ctx, report)

    # -- keyshift commands, flags and configuration ---------------------------
    effective, subcommand = check_commands(keyshift_services, dockerfiles, keyshift, report)

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

    # -- S3Proxy: the version the object-storage tests run ---------------------
    pom = root / "scripts/s3/pom.xml"
    tested = re.search(r"<s3proxy.version>([^<]+)</s3proxy.version>", pom.read_text()) if pom.is_file() else None
    for name, svc in services.items():
        image = svc.get("image") or ""
        if "s3proxy" in image and tested and not image.endswith(f":s3proxy-{tested.group(1)}"):
            report.problem(name, f"runs {image}, not S3Proxy {tested.group(1)}, the version the "
                                 "object-storage tests run (scripts/s3/pom.xml)")

    check_prometheus(services, ports_of, keyshift_services, report)
    check_grafana(services, report)
    return report
