"""Ory Hydra, built once per version from its Go module and kept in the cache.

``go install`` refuses the module (its go.mod has replace directives), so the build runs inside a writable copy
of the module's own source: ``go mod download`` fetches it through the Go module proxy, ``go mod edit
-dropreplace`` drops the replace of the nested client (whose directory the module zip lacks, so the published
client is used; ``go mod download`` records its checksum), and ``go build`` without cgo makes one binary (the
stack's Hydras keep their data on PostgreSQL, so neither the SQLite driver nor a C compiler is needed). The
binary and a marker naming its version sit under ``<cache>/hydra/<version>/``; a later ``up`` finds them and
builds nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from sandbox.config import HYDRA_MODULE, HYDRA_NESTED_CLIENT_MODULE, Settings
from sandbox.errors import DistributionError, GoNotFound
from sandbox.stack.go_toolchain import GoToolchain

Report = Callable[[str], None]

#: The oldest Go that builds Hydra 2.3.0 (its go.mod says go 1.22; older ones cannot switch toolchains).
MINIMUM_GO = (1, 22)
#: Seconds between "still building" lines while ``go build`` runs (minutes on a busy machine).
PROGRESS_EVERY = 30.0


class HydraBuild:
    """One Hydra version in the cache directory (or the user's own binary), ready to run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = settings.hydra_version
        self.home = settings.cache_dir / "hydra" / self.version
        self.marker = self.home / ".sandbox-build.json"

    @property
    def binary(self) -> Path:
        return self.settings.hydra_binary or self.home / "hydra"

    def wanted(self) -> dict[str, str]:
        return {"module": HYDRA_MODULE, "version": self.version, "cgo": "off"}

    def is_built(self) -> bool:
        if self.settings.hydra_binary is not None:
            return self.settings.hydra_binary.is_file()
        return self.binary.is_file() and self.marker.is_file() and json.loads(self.marker.read_text()) == self.wanted()

    def ensure_built(self, report: Report) -> Path:
        """The path of a Hydra binary of the configured version; the slow steps run only when it is missing."""
        if self.settings.hydra_binary is not None:
            if not self.settings.hydra_binary.is_file():
                raise DistributionError(
                    f"SANDBOX_HYDRA_BINARY={self.settings.hydra_binary} does not exist",
                    "point it at a hydra binary, or unset it to build one",
                )
            return self.settings.hydra_binary
        self.home.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.home / ".lock"), timeout=3600):
            if not self.is_built():
                self._build(self._go(report), report)
        return self.binary

    def _go(self, report: Report) -> str:
        """The machine's go when it is 1.22+; else the sandbox's own Go toolchain (installed into the cache once)."""
        found = shutil.which(self.settings.go_command)
        if found is not None:
            version = subprocess.run([found, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
            numbers = re.match(r"go(\d+)\.(\d+)", version)
            if numbers is None or (int(numbers[1]), int(numbers[2])) >= MINIMUM_GO:
                return found
            report(f"{found} is {version}, too old to build Ory Hydra {self.version}: using the sandbox's own Go")
        else:
            report(
                f"no `{self.settings.go_command}` on PATH to build Ory Hydra {self.version}: using the sandbox's own Go"
            )
        try:
            return str(GoToolchain(self.settings).ensure(report))
        except DistributionError as exc:
            raise GoNotFound(
                f"no Go 1.22+ to build Ory Hydra {self.version}, and the sandbox could not install one: {exc.cause}",
                f"{exc.fix}; or set SANDBOX_HYDRA_BINARY to a hydra binary",
            ) from exc

    def _build(self, go: str, report: Report) -> None:
        report(f"fetching Ory Hydra {self.version} from the Go module proxy")
        source = self._download(go)
        staging = Path(tempfile.mkdtemp(prefix="build-", dir=self.home))
        try:
            tree = staging / "src"
            shutil.copytree(source, tree)
            for directory, _, files in os.walk(tree):
                os.chmod(directory, 0o755)
                for name in files:
                    os.chmod(Path(directory) / name, 0o644)
            self._go_run(go, ["mod", "edit", f"-dropreplace={HYDRA_NESTED_CLIENT_MODULE}"], tree, "go mod edit")
            # The module's go.sum has no line for the published client; downloading it records one (checked
            # against the checksum database like any other module).
            self._go_run(go, ["mod", "download", HYDRA_NESTED_CLIENT_MODULE], tree, "go mod download")
            report(f"building Ory Hydra {self.version} (once per version; minutes)")
            output = staging / "hydra"
            self._go_build(go, tree, output, report)
            output.replace(self.binary)
            self.marker.write_text(json.dumps(self.wanted()))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        report(f"Ory Hydra {self.version} built into {self.home}")

    def _download(self, go: str) -> Path:
        module = f"{HYDRA_MODULE}@v{self.version}"
        result = self._go_run(go, ["mod", "download", "-json", module], self.home, "go mod download")
        try:
            directory = Path(json.loads(result.stdout)["Dir"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DistributionError(
                f"`go mod download {module}` named no source directory", "check your GOPROXY and GOFLAGS settings"
            ) from exc
        return directory

    def _go_run(self, go: str, arguments: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([go, *arguments], cwd=cwd, capture_output=True, text=True, env=self._environment())
        if result.returncode != 0:
            raise DistributionError(
                f"{what} for Ory Hydra {self.version} failed with exit {result.returncode}: {_tail(result)}",
                "check your Go module proxy (GOPROXY) and network, or set SANDBOX_HYDRA_BINARY to a built hydra",
            )
        return result

    def _go_build(self, go: str, tree: Path, output: Path, report: Report) -> None:
        log = output.with_suffix(".log")
        started = time.monotonic()
        with log.open("w") as stream:
            build = subprocess.Popen(
                [go, "build", "-o", str(output), "."],
                cwd=tree,
                stdin=subprocess.DEVNULL,
                stdout=stream,
                stderr=subprocess.STDOUT,
                env={**self._environment(), "CGO_ENABLED": "0"},
            )
            try:
                while True:
                    try:
                        code = build.wait(timeout=PROGRESS_EVERY)
                        break
                    except subprocess.TimeoutExpired:
                        report(f"still building Ory Hydra ({time.monotonic() - started:.0f} s)")
            except BaseException:
                build.kill()  # interrupted: leave no compiler behind
                build.wait()
                raise
        if code != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise DistributionError(
                f"go build of Ory Hydra {self.version} failed with exit {code}: {tail}",
                "check the Go toolchain (go version, GOPROXY), or set SANDBOX_HYDRA_BINARY to a hydra built elsewhere",
            )

    @staticmethod
    def _environment() -> dict[str, str]:
        env = dict(os.environ)
        env.pop("GOFLAGS", None)  # a -mod=vendor or similar from the caller would break the module build
        return env


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
