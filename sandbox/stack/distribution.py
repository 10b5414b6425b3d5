"""The Keycloak server distribution: obtain the zip, check it, unpack it once, build it once.

Sources, in order: the user's own zip or directory (``SANDBOX_KEYCLOAK_DIST``), the local cache,
``mvn dependency:copy`` (which honours the user's Maven mirrors), then a direct HTTPS download.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
from filelock import FileLock

from sandbox.config import Settings
from sandbox.errors import DistributionError
from sandbox.stack.download import download
from sandbox.stack.java import Jdk
from sandbox.stack.providers import ensure_provider_jar, source_hash

Report = Callable[[str], None]
ARTIFACT = "org.keycloak:keycloak-quarkus-dist"

#: Build-time options. Runtime ones (ports, host, cache, database URL) are given at start.
#: ``--https-client-auth`` is one: the HTTPS port (on only when the stack gives it a certificate) requests a client
#: certificate, for certificate-bound tokens (RFC 8705); a request without one is served as before.
BUILD_OPTIONS = (
    "--db=dev-file",
    "--health-enabled=true",
    "--metrics-enabled=true",
    "--https-client-auth=request",
)
BUILD_OPTIONS_HASH = hashlib.sha256("\n".join(BUILD_OPTIONS).encode()).hexdigest()[:8]


def build_options(settings: Settings) -> list[str]:
    """``kc.sh build`` options: the same for the local distribution and every Keycloak image."""
    return [*BUILD_OPTIONS, f"--features={','.join(settings.keycloak_features)}"]


def run_files_options(data_dir: Path, class_archive: Path | None = None) -> str:
    """``JAVA_OPTS_APPEND``: keeps one Keycloak run's own files (transaction log, temp) in ``data_dir``, so several
    runs can share one built distribution.

    ``class_archive``, when the file exists, is a class-data sharing archive of this build (made by the seeding
    export, :mod:`sandbox.stack.keycloak_seed`): the JVM maps the classes it holds instead of loading and
    verifying them again. One that does not match the build or the JDK is refused by the JVM with a warning in
    the log, and the start goes on without it; a missing one is not named at all."""
    options = [
        f"-Dquarkus.transaction-manager.object-store.directory={data_dir / 'tx'}",
        f"-Djava.io.tmpdir={data_dir / 'tmp'}",
    ]
    if class_archive is not None and class_archive.is_file():
        options.append(f"-XX:SharedArchiveFile={class_archive}")
    return " ".join(options)


def class_archive_at_exit(archive: Path) -> str:
    """The ``JAVA_OPTS_APPEND`` addition that makes a run write the classes it loaded into ``archive`` as it exits."""
    return f"-XX:ArchiveClassesAtExit={archive}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class KeycloakDistribution:
    """One Keycloak version in the cache directory, ready to start with ``kc.sh start --optimized``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = settings.keycloak_version
        self.cache = settings.cache_dir / "keycloak"
        self.zip_path = self.cache / f"keycloak-quarkus-dist-{self.version}.zip"
        # The build carries the sandbox's own provider, so it is named by the provider's hash too: a build with
        # other providers (another checkout's) lives beside it and is never rebuilt under a running Keycloak.
        self.provider_hash = source_hash(self.version)
        # The fixed build options name it too: a checkout with others is never rebuilt under it either.
        self.home = self.cache / f"keycloak-{self.version}-{self.provider_hash}-{BUILD_OPTIONS_HASH}"

    @property
    def kc_sh(self) -> Path:
        return self.home / "bin" / "kc.sh"

    def build_options(self) -> list[str]:
        return build_options(self.settings)

    def ensure_built(self, jdk: Jdk, report: Report) -> Path:
        """The built distribution's home directory; each slow step runs only when needed."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache / ".lock"), timeout=600):
            user_dir = self.settings.keycloak_dist
            if user_dir is not None and user_dir.is_dir():
                self.home = user_dir
            elif not (self.home / ".unpacked").exists():
                self._unpack(self._obtain(report), report)
            self._install_provider(jdk, report)
            self._build(jdk, report)
        return self.home

    def ensure_zip(self, report: Report) -> Path:
        """The verified distribution zip (for building an image from it); fetched only when not cached."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache / ".lock"), timeout=600):
            return self._obtain(report)

    # Obtaining the zip.
    def _obtain(self, report: Report) -> Path:
        user_zip = self.settings.keycloak_dist
        if user_zip is not None:
            if not user_zip.is_file():
                raise DistributionError(
                    f"SANDBOX_KEYCLOAK_DIST={user_zip} does not exist",
                    "point it at a keycloak-quarkus-dist zip or an unpacked Keycloak directory, or unset it",
                )
            self._verify(user_zip, "the zip named by SANDBOX_KEYCLOAK_DIST", f"replace {user_zip}")
            return user_zip
        if self.zip_path.exists():
            self._verify(self.zip_path, "the cached Keycloak zip", f"delete {self.zip_path} and run again")
            return self.zip_path
        if shutil.which("mvn"):
            report(f"fetching Keycloak {self.version} with Maven")
            if self._maven_copy():
                self._verify(self.zip_path, "the Keycloak zip Maven fetched", f"delete {self.zip_path} and run again")
                return self.zip_path
        report(f"downloading Keycloak {self.version} from {self.settings.maven_central_url}")
        self._download()
        self._verify(self.zip_path, "the downloaded Keycloak zip", f"delete {self.zip_path} and run again")
        return self.zip_path

    def _maven_copy(self) -> bool:
        command = [
            "mvn", "-q", "-B", "dependency:copy",
            f"-Dartifact={ARTIFACT}:{self.version}:zip",
            f"-DoutputDirectory={self.cache}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.cache)
        return result.returncode == 0 and self.zip_path.is_file()

    def _download(self) -> None:
        group, artifact = ARTIFACT.split(":")
        url = (
            f"{self.settings.maven_central_url}/{group.replace('.', '/')}/{artifact}/{self.version}/"
            f"{artifact}-{self.version}.zip"
        )
        try:
            download(url, self.zip_path, timeout=60)
        except httpx.HTTPError as exc:
            raise DistributionError(
                f"could not obtain Keycloak {self.version}: Maven failed or is missing, and {url} gave {exc}",
                "install Maven (it honours your mirrors) or set SANDBOX_KEYCLOAK_DIST to a downloaded zip",
            ) from exc

    def _verify(self, path: Path, what: str, fix: str) -> None:
        expected = self.settings.expected_keycloak_sha256
        if expected is None:
            raise DistributionError(
                f"no checksum is known for Keycloak {self.version}",
                "set SANDBOX_KEYCLOAK_SHA256 to the zip's sha256, or use the default version",
            )
        actual = sha256_of(path)
        if actual != expected:
            raise DistributionError(
                f"{what} at {path} is corrupt (sha256 {actual[:12]}… is not the expected {expected[:12]}…)",
                fix,
            )

    # Unpacking and building.
    def _unpack(self, zip_path: Path, report: Report) -> None:
        report("unpacking")
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=self.cache))
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(staging)
            (top,) = list(staging.iterdir())
            for script in (top / "bin").glob("*.sh"):
                script.chmod(0o755)
            shutil.rmtree(self.home, ignore_errors=True)
            top.rename(self.home)
            (self.home / ".unpacked").write_text(zip_path.name)
        except (zipfile.BadZipFile, ValueError) as exc:
            raise DistributionError(
                f"{zip_path} is not a usable Keycloak zip ({exc})", f"delete {zip_path} and run again"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _install_provider(self, jdk: Jdk, report: Report) -> None:
        installed = self.home / "providers" / "mcp-sandbox-zone.jar"
        jar = self.cache / "providers" / f"mcp-sandbox-zone-{self.provider_hash}.jar"
        if not jar.is_file():
            report("building the sandbox's Keycloak provider (network zones; once per source change)")
        jar = ensure_provider_jar(jdk, self.home, self.cache / "providers", self.version)
        if not installed.is_file() or installed.read_bytes() != jar.read_bytes():
            installed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(jar, installed)

    def _build(self, jdk: Jdk, report: Report) -> None:
        marker = self.home / ".sandbox-build.json"
        wanted = {"options": self.build_options(), "java": str(jdk.home), "provider": self.provider_hash}
        if marker.exists() and json.loads(marker.read_text()) == wanted:
            return
        report("building (once per version and feature set)")
        result = subprocess.run(
            [str(self.kc_sh), "build", *self.build_options()],
            capture_output=True,
            text=True,
            env={"JAVA_HOME": str(jdk.home), "PATH": f"{jdk.home / 'bin'}:/usr/bin:/bin"},
        )
        if result.returncode != 0:
            tail = " | ".join(result.stdout.strip().splitlines()[-3:])
            raise DistributionError(
                f"kc.sh build failed with exit {result.returncode}: {tail}",
                f"check the features in SANDBOX_KEYCLOAK_FEATURES, or delete {self.home} to unpack afresh",
            )
        marker.write_text(json.dumps(wanted))
