"""Who listens where: the ports each service listens on, and the checks of
addresses and Kafka brokers that name a service."""

from __future__ import annotations

from urllib.parse import urlparse

from .util import command_of, flag_values, host_port, image_repo


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
