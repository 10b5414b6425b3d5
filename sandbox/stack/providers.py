"""The sandbox's own Keycloak provider: the ``sandbox-source-zone`` client policy executor.

Keycloak has no built-in client policy condition or executor, and no client authenticator, that refuses a
client_credentials token request by the caller's source address (``client-updater-source-host`` only covers
client registration). The executor in ``sandbox/stack/zone_provider`` does: a client whose attribute
``sandbox.zone`` names an address gets its token requests refused (403 ``unauthorized_client``) from any other
source. It is compiled with the JDK that runs Keycloak, against the very Keycloak jars it runs in, and the jar is
cached by the hash of its sources and the Keycloak version, so it is built once.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbox.errors import DistributionError
from sandbox.stack.java import Jdk

SOURCES = Path(__file__).parent / "zone_provider"


def source_hash(keycloak_version: str) -> str:
    """The content hash that names the provider's build: every source file and the Keycloak version."""
    digest = hashlib.sha256(keycloak_version.encode())
    for path in sorted(p for p in SOURCES.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(SOURCES)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_provider_jar(jdk: Jdk, keycloak_home: Path, cache: Path, keycloak_version: str) -> Path:
    """The provider jar for this Keycloak, built into ``cache`` when it is not there yet."""
    jar_path = cache / f"mcp-sandbox-zone-{source_hash(keycloak_version)}.jar"
    if jar_path.is_file():
        return jar_path
    javac, jar = jdk.home / "bin" / "javac", jdk.home / "bin" / "jar"
    if not (javac.is_file() and jar.is_file()):
        raise DistributionError(
            f"the Java runtime at {jdk.home} has no javac or jar to build the sandbox's Keycloak provider",
            "install a full JDK 17+ (Debian/Ubuntu: sudo apt-get install openjdk-17-jdk-headless) "
            "or set JAVA_HOME to one",
        )
    cache.mkdir(parents=True, exist_ok=True)
    lib = keycloak_home / "lib" / "lib"
    classpath = f"{lib / 'main'}/*:{lib / 'boot'}/*"
    with tempfile.TemporaryDirectory(prefix="zone-provider-", dir=cache) as work:
        classes = Path(work) / "classes"
        shutil.copytree(SOURCES / "resources", classes)
        sources = [str(p) for p in sorted((SOURCES / "src").rglob("*.java"))]
        _run([str(javac), "--release", "17", "-nowarn", "-d", str(classes), "-cp", classpath, *sources], "javac")
        partial = Path(work) / "provider.jar"
        _run([str(jar), "--create", "--file", str(partial), "-C", str(classes), "."], "jar")
        partial.replace(jar_path)
    return jar_path


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise DistributionError(
            f"building the sandbox's Keycloak provider failed ({what} exit {result.returncode}: {tail})",
            f"check the sources in {SOURCES} against this Keycloak version",
        )
