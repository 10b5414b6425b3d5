"""Look through what a stack and a test run left on disk for credentials that should never be stored there.

What is looked for: every credential in the issued registry (:mod:`sandbox.issued`) and in the stack's
own secrets file, the broker's event-signing key, and anything shaped like a full signed JWT or a PEM private
key. Where: every file under the stack's state directory (logs of every component, the broker's database and
its audit, generated configs), and any further directories given (reports, the test run's temporary files),
except the places that hold credentials by design: the stack's secrets file, the registry itself, the broker's
signing key, Keycloak's own data (the IdP must store its keys and clients' secrets), the loopback CA's directory
(its private key and those of the certificates it issued, for TLS and mTLS), and files a user asked a
credential to be written to (``mcp-sandbox apply --credentials-dir``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import Settings
from sandbox.issued import kept_on_purpose, remembered
from sandbox.loopback_ca import CA_FILE
from sandbox.stack.distribution import KeycloakDistribution
from sandbox.stack.keycloak_seed import DATABASE_FILE, SeededDatabase

FULL_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    path: Path
    what: str  # never the credential itself: its kind and first characters

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass(frozen=True)
class ScanReport:
    files: int
    credentials: int
    findings: list[Finding]


def by_design(settings: Settings, registry: Path | None) -> set[Path]:
    """Files and directories that hold credentials on purpose."""
    places = {
        settings.secrets_file,
        settings.signing_key_file,
        settings.state_dir / "keycloak",
    }
    if registry is not None:
        places |= {registry, *kept_on_purpose(registry)}  # e.g. `apply --credentials-dir`: the agents' own files
    return {p.resolve() for p in places}


def known_credentials(settings: Settings, registry: Path | None) -> set[str]:
    values = remembered(registry) if registry else set()
    if settings.secrets_file.exists():
        values |= {v for v in json.loads(settings.secrets_file.read_text()).values() if isinstance(v, str)}
    signing_key = settings.signing_key_file
    if signing_key.exists():
        values.add(json.loads(signing_key.read_text()).get("d", ""))
    seed = SeededDatabase(settings, KeycloakDistribution(settings))
    if (seed.directory / "admin.json").exists():  # the seeded database's own admin (in the cache, not scanned)
        values |= {seed.admin().password, seed.admin().client_secret}
    return {v for v in values if len(v) >= 8}


def scan(roots: Iterable[Path], credentials: set[str], skip: set[Path]) -> ScanReport:
    encoded = [(value, value.encode()) for value in sorted(credentials)]
    findings: list[Finding] = []
    files = 0
    for path in _files(roots, skip):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            content = path.read_bytes()
        except OSError:
            continue
        files += 1
        findings += [Finding(path, f"an issued credential ({value[:4]}…)") for value, raw in encoded if raw in content]
        if match := FULL_JWT.search(content):
            findings.append(Finding(path, f"a full signed token ({match.group()[:12].decode()}…)"))
        if PRIVATE_KEY.search(content):
            findings.append(Finding(path, "a PEM private key"))
    return ScanReport(files, len(encoded), findings)


def _files(roots: Iterable[Path], skip: set[Path]) -> Iterable[Path]:
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            resolved = path.resolve()
            if resolved in seen or not path.is_file() or path.is_symlink():
                continue
            if resolved in skip or any(parent in skip for parent in resolved.parents):
                continue
            if path.name == DATABASE_FILE:  # a Keycloak database, of any stack a test made: the IdP's own store
                continue
            if _in_loopback_ca(path):  # the loopback CA's keys, of any stack a test made: mTLS needs them
                continue
            seen.add(resolved)
            yield path


def _in_loopback_ca(path: Path) -> bool:
    """Whether ``path`` is in a loopback CA's directory (``<state>/tls``, with the CA's certificate at its top)."""
    return any(parent.name == "tls" and (parent / CA_FILE).is_file() for parent in path.parents)
