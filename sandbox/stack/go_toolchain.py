"""A Go toolchain of the sandbox's own, for machines whose go is missing or too old to build Ory Hydra.

The Go module proxy serves every Go release as a version of the module ``golang.org/toolchain`` (``v0.0.1-go<version>.
<os>-<arch>``), which is where the go command's own ``GOTOOLCHAIN`` switch fetches it from. An old go (Debian's 1.19)
cannot switch, so the sandbox fetches that module zip itself, checks it against the checksum database's ``h1:`` hash
(the Go module "dirhash": a SHA-256 over the sorted list of each file's SHA-256 and name), unpacks it under
``<cache>/go/<version>/`` and marks it done. A later build finds it and fetches nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
from filelock import FileLock

from sandbox.config import GO_TOOLCHAIN_MODULE, KNOWN_GO_TOOLCHAIN_SUMS, Settings
from sandbox.errors import DistributionError
from sandbox.stack.download import download

Report = Callable[[str], None]

_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def go_platform() -> str:
    """This machine as Go names it (``linux-amd64``)."""
    machine = platform.machine().lower()
    return f"{platform.system().lower()}-{_ARCHES.get(machine, machine)}"


def zip_hash(path: Path) -> str:
    """The ``h1:`` hash of a module zip, as the checksum database records it (Go's dirhash.HashZip)."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(info.filename for info in archive.infolist() if not info.is_dir()):
            if "\n" in name:
                raise DistributionError(f"the module zip {path} holds a file name with a newline", "delete it")
            digest = hashlib.sha256(archive.read(name)).hexdigest()
            summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


class GoToolchain:
    """One Go version in the cache, fetched from the Go module proxy when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = settings.go_toolchain_version
        self.platform = go_platform()
        self.home = settings.cache_dir / "go" / f"{self.version}.{self.platform}"
        self.marker = self.home / ".sandbox-toolchain.json"

    @property
    def module_version(self) -> str:
        return f"v0.0.1-go{self.version}.{self.platform}"

    @property
    def url(self) -> str:
        return f"{self.settings.go_proxy_url.rstrip('/')}/{GO_TOOLCHAIN_MODULE}/@v/{self.module_version}.zip"

    @property
    def go(self) -> Path:
        return self.home / "go" / "bin" / "go"

    @property
    def expected_hash(self) -> str | None:
        return self.settings.go_toolchain_sum or KNOWN_GO_TOOLCHAIN_SUMS.get((self.version, self.platform))

    def wanted(self) -> dict[str, str]:
        return {"module": GO_TOOLCHAIN_MODULE, "version": self.module_version, "hash": self.expected_hash or ""}

    def is_installed(self) -> bool:
        return self.go.is_file() and self.marker.is_file() and json.loads(self.marker.read_text()) == self.wanted()

    def ensure(self, report: Report) -> Path:
        """The path of this toolchain's ``go``; fetched, checked and unpacked only when it is not there yet."""
        if self.expected_hash is None:
            raise DistributionError(
                f"no known checksum for Go {self.version} on {self.platform}, so the sandbox will not install it",
                "install Go 1.22+ yourself, or set SANDBOX_GO_TOOLCHAIN_SUM to the h1: hash the Go checksum "
                f"database lists for {GO_TOOLCHAIN_MODULE}@{self.module_version}",
            )
        self.home.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.home / ".lock"), timeout=3600):
            if not self.is_installed():
                self._install(report)
        return self.go

    def _install(self, report: Report) -> None:
        report(f"fetching Go {self.version} ({self.platform}) from the Go module proxy (once; about 70 MB)")
        archive = self.home / f"{self.module_version}.zip"
        self._download(archive)
        actual = zip_hash(archive)
        if actual != self.expected_hash:
            archive.unlink(missing_ok=True)
            raise DistributionError(
                f"the Go toolchain from {self.url} does not match its checksum ({actual} is not {self.expected_hash})",
                "check SANDBOX_GO_PROXY_URL (a proxy that serves the real module), then retry",
            )
        target = self.home / "go"
        shutil.rmtree(target, ignore_errors=True)
        self._unpack(archive, target)
        archive.unlink()
        self.marker.write_text(json.dumps(self.wanted()))
        report(f"Go {self.version} installed into {target}")

    def _download(self, archive: Path) -> None:
        try:
            download(self.url, archive, timeout=120)
        except httpx.HTTPError as exc:
            raise DistributionError(
                f"could not fetch Go {self.version} from {self.url} ({type(exc).__name__})",
                "check the network path to the Go module proxy (SANDBOX_GO_PROXY_URL), or install Go 1.22+",
            ) from exc

    def _unpack(self, archive: Path, target: Path) -> None:
        """The zip's files without their ``golang.org/toolchain@<version>/`` prefix, executables kept executable."""
        prefix = f"{GO_TOOLCHAIN_MODULE}@{self.module_version}/"
        with zipfile.ZipFile(archive) as source:
            for info in source.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                relative = Path(info.filename[len(prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise DistributionError(f"the Go toolchain zip names {info.filename!r}", "delete it and retry")
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                with source.open(info) as data, destination.open("wb") as out:
                    shutil.copyfileobj(data, out)
                # Module zips keep no file modes; like the go command's own switch, bin/ and pkg/tool/ are programs.
                if relative.parts[:1] == ("bin",) or relative.parts[:2] == ("pkg", "tool"):
                    os.chmod(destination, destination.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
