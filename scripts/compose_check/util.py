"""Shared helpers of the compose check: the repository's paths, the problem
report, subprocesses, YAML through .tools/bin/yaml2json, the env file, and
reading services (image, command, flags, bind mounts, build)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS = ROOT / ".tools" / "bin"


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def note(self, what: str) -> None:
        self.notes.append(what)


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


def build_paths(service: dict) -> tuple[Path, Path]:
    """(build context, Dockerfile) of a service that is built."""
    build = service["build"]
    ctx = Path(build["context"])
    return ctx, ctx / build.get("dockerfile", "Dockerfile")
