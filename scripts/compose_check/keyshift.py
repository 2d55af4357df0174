"""The keyshift side: what the binary accepts (subcommands and flags from
--help, `check-config`), its image build (Dockerfile ENTRYPOINT, ENV, cargo
features, .dockerignore) and the check of the keyshift services' commands
and configuration."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
import tomllib
from pathlib import Path

from .util import Report, build_paths, command_of, flag_values, run, to_host


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


def check_commands(keyshift_services: dict, dockerfiles: dict, keyshift: Keyshift | None,
                   report: Report) -> tuple[dict[str, dict], dict[str, str]]:
    """The keyshift services' entrypoint, subcommand and flags against the
    binary, and their configuration through `keyshift check-config`; returns
    (service -> effective configuration, service -> subcommand)."""
    effective: dict[str, dict] = {}
    subcommand: dict[str, str] = {}
    for name, svc in keyshift_services.items():
        _, dockerfile = build_paths(svc)
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
    return effective, subcommand
