"""Prometheus and Grafana: config and rule files mounted and valid, scrape
targets, data source URLs, dashboard providers and the dashboards they
mount."""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from .util import Report, command_of, host_port, image_repo, run, to_host, yaml_docs
from .network import check_address


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
