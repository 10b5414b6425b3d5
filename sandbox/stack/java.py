"""Find a JDK 17+ to run Keycloak: ``JAVA_HOME`` first, then the platform's JVM directories."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import JavaNotFound

MINIMUM_MAJOR = 17


@dataclass(frozen=True)
class Jdk:
    home: Path
    major: int

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"


def java_major(home: Path) -> int | None:
    """The major version of the JDK at ``home``, or None if there is no working ``bin/java`` there."""
    if not (home / "bin" / "java").is_file():
        return None
    release = home / "release"
    if release.is_file():
        found = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"), re.M)
        if found:
            return _major(found.group(1), found.group(2))
    try:
        out = subprocess.run(
            [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    return _major(found.group(1), found.group(2)) if found else None


def _major(first: str, second: str | None) -> int:
    return int(second) if first == "1" and second else int(first)  # "1.8" means 8


def find_jdk(settings: Settings) -> Jdk:
    """The JDK to use, or :class:`JavaNotFound` saying where we looked and what to install."""
    looked: list[str] = []
    if settings.java_home is not None:
        major = java_major(settings.java_home)
        if major is not None and major >= MINIMUM_MAJOR:
            return Jdk(settings.java_home, major)
        looked.append(f"JAVA_HOME={settings.java_home} ({'no bin/java' if major is None else f'Java {major}'})")
    candidates: dict[Path, Jdk] = {}
    for directory in settings.jvm_dirs:
        looked.append(str(directory))
        if not directory.is_dir():
            continue
        for home in sorted(directory.iterdir()):
            for candidate in (home, home / "Contents" / "Home"):  # macOS bundles keep the JDK one level down
                major = java_major(candidate)
                if major is not None and major >= MINIMUM_MAJOR:
                    candidates.setdefault(candidate.resolve(), Jdk(candidate.resolve(), major))
    if candidates:
        # The oldest supported release is the one Keycloak is tested on most.
        return min(candidates.values(), key=lambda jdk: (jdk.major, str(jdk.home)))
    raise JavaNotFound(
        f"no JDK {MINIMUM_MAJOR}+ found to run Keycloak (looked at {', '.join(looked) or 'nothing'})",
        "install one (Debian/Ubuntu: sudo apt-get install openjdk-17-jdk-headless) or set JAVA_HOME to a JDK 17+",
    )
