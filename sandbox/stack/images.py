"""Build the container runtime's images on a machine that reaches no container registry.

Three images, each tagged with a hash of its inputs and built only when that tag is missing:

- a Debian base root made with ``debootstrap`` from the Debian mirror this machine's apt uses
  (:mod:`sandbox.stack.apt_sources`; ``SANDBOX_DEBIAN_MIRROR`` overrides it), brought in with ``docker import``;
- Keycloak (``compose/keycloak.Dockerfile``) from the same verified distribution zip as the local runtime;
- the project (``compose/Dockerfile``) from wheels built on the host, installed with no index.

``python -m sandbox.stack.images`` prepares the engine (:mod:`sandbox.stack.docker_engine`), builds
what is missing and prints the settings that select the images, as ``SANDBOX_*=...`` lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound
from filelock import FileLock

from sandbox import __version__
from sandbox.config import PACKAGE_DIR, Settings, load_settings
from sandbox.errors import SandboxError
from sandbox.stack.apt_sources import debian_mirror
from sandbox.stack.distribution import KeycloakDistribution, build_options
from sandbox.stack.docker_engine import ensure_engine

Report = Callable[[str], None]

REPOSITORY = PACKAGE_DIR.parent
COMPOSE_DIR = REPOSITORY / "compose"
KEYCLOAK_DOCKERFILE = COMPOSE_DIR / "keycloak.Dockerfile"
PROJECT_DOCKERFILE = COMPOSE_DIR / "Dockerfile"
WHEELHOUSE = REPOSITORY / "build" / "wheelhouse"
#: What goes into the project image (the allow-list of .dockerignore); hashed for its tag.
PROJECT_SOURCES = ("pyproject.toml", "README.md", "sandbox", "fixtures")
DEBOOTSTRAP_OPTIONS = ("--variant=minbase",)
#: How compose/Dockerfile's pip installs here: from the wheels built on the host, without an index.
OFFLINE = f"--no-index --find-links /src/{WHEELHOUSE.relative_to(REPOSITORY)}"


class ImageBuildFailed(SandboxError):
    pass


@dataclass(frozen=True)
class Images:
    """The names of the locally built images, as the settings that select them."""

    base: str
    keycloak: str
    project: str

    def as_environment(self) -> dict[str, str]:
        return {"SANDBOX_KEYCLOAK_IMAGE": self.keycloak, "SANDBOX_PROJECT_IMAGE": self.project}


def _digest(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def _files(roots: Iterable[Path]) -> list[Path]:
    found = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        found += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts]
    return found


def _present(engine: docker.DockerClient, tag: str) -> bool:
    try:
        engine.images.get(tag)
    except ImageNotFound:
        return False
    return True


class ImageBuilder:
    def __init__(self, settings: Settings, engine: docker.DockerClient, report: Report) -> None:
        self.settings = settings
        self.engine = engine
        self.report = report
        self.work = settings.cache_dir / "docker"
        self.prefix = settings.local_image_prefix

    def all(self) -> Images:
        self.work.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.work / ".build.lock"), timeout=1800):
            base = self.base()
            return Images(base=base, keycloak=self.keycloak(base), project=self.project(base))

    # The Debian base root.
    def base(self) -> str:
        suite, mirror = self.settings.debian_suite, debian_mirror(self.settings)
        tag = f"{self.prefix}/debian:{suite}-{_digest(suite, mirror.url, *DEBOOTSTRAP_OPTIONS)}"
        if _present(self.engine, tag):
            return tag
        self.report(f"making a Debian {suite} root with debootstrap from {mirror.url} (from {mirror.source})")
        with tempfile.TemporaryDirectory(dir=self.work, prefix="rootfs-") as scratch:
            root, archive = Path(scratch) / "root", Path(scratch) / "root.tar"
            self._run(
                ["debootstrap", *DEBOOTSTRAP_OPTIONS, suite, str(root), mirror.url],
                "debootstrap failed",
                f"check that {mirror.url} (from {mirror.source}) answers, or set SANDBOX_DEBIAN_MIRROR to another",
            )
            for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (root / leftovers).glob("*"):
                    if path.is_file():
                        path.unlink()
            self._run(["tar", "-C", str(root), "-cf", str(archive), "."], "packing the root failed", "free disk space")
            self.report(f"importing it as {tag}")
            repository, version = tag.rsplit(":", 1)
            self.engine.api.import_image_from_file(str(archive), repository=repository, tag=version)
        return tag

    # Keycloak.
    def keycloak(self, base: str) -> str:
        options = build_options(self.settings)
        distribution = KeycloakDistribution(self.settings)
        checksum = self.settings.expected_keycloak_sha256 or ""
        inputs = _digest(base, KEYCLOAK_DOCKERFILE.read_bytes(), checksum, *options)
        tag = f"{self.prefix}/keycloak:{self.settings.keycloak_version}-{inputs}"
        if _present(self.engine, tag):
            return tag
        zip_path = distribution.ensure_zip(self.report)
        with tempfile.TemporaryDirectory(dir=self.work, prefix="keycloak-context-") as context:
            shutil.copyfile(zip_path, Path(context) / "keycloak.zip")
            self._build(
                tag,
                context,
                KEYCLOAK_DOCKERFILE,
                {"BASE_IMAGE": base, "KC_BUILD_OPTIONS": " ".join(options)},
            )
        return tag

    # The project: its dependencies in an image of their own, rebuilt only when pyproject.toml's change.
    def project(self, base: str) -> str:
        if not (REPOSITORY / "pyproject.toml").is_file():
            raise ImageBuildFailed(
                "the project image is built from a checkout, and this package is not one",
                "run this from a clone of the repository, or set SANDBOX_PROJECT_IMAGE to an image you have",
            )
        dependencies = self.dependencies(base)
        sources = _files(REPOSITORY / name for name in PROJECT_SOURCES)
        inputs = _digest(
            dependencies,
            PROJECT_DOCKERFILE.read_bytes(),
            *(f"{p.relative_to(REPOSITORY)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sources),
        )
        tag = f"{self.prefix}/project:{__version__}-{inputs}"
        if _present(self.engine, tag):
            return tag
        self._wheels("--no-deps")  # the dependencies are in the base already
        install = f"{OFFLINE} mcp-agent-sandbox=={__version__}"
        self._build(tag, str(REPOSITORY), PROJECT_DOCKERFILE, {"BASE_IMAGE": dependencies, "PIP_INSTALL": install})
        return tag

    def dependencies(self, base: str) -> str:
        declared = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["dependencies"]
        tag = f"{self.prefix}/project-deps:{_digest(base, PROJECT_DOCKERFILE.read_bytes(), *declared)}"
        if _present(self.engine, tag):
            return tag
        self._wheels()
        wheels = sorted(w.name for w in WHEELHOUSE.glob("*.whl") if not w.name.startswith("mcp_agent_sandbox-"))
        install = " ".join([OFFLINE, *(f"/src/{WHEELHOUSE.relative_to(REPOSITORY)}/{name}" for name in wheels)])
        self._build(tag, str(REPOSITORY), PROJECT_DOCKERFILE, {"BASE_IMAGE": base, "PIP_INSTALL": install})
        return tag

    def _wheels(self, *options: str) -> None:
        """Build the project's wheel on the host (with every dependency's, unless told otherwise) into WHEELHOUSE."""
        self.report(f"building wheels into {WHEELHOUSE}")
        shutil.rmtree(WHEELHOUSE, ignore_errors=True)
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check"]
        self._run(
            [*pip_wheel, *options, "-w", str(WHEELHOUSE), "."],
            "building the wheels failed",
            "check that the package index answers: pip wheel .",
            cwd=REPOSITORY,
        )

    # Helpers.
    def _build(self, tag: str, context: str, dockerfile: Path, arguments: dict[str, str]) -> None:
        self.report(f"building {tag} from {dockerfile.name}")
        log = self.work / f"build-{tag.replace('/', '_').replace(':', '_')}.log"
        try:
            _, lines = self.engine.images.build(
                path=context,
                dockerfile=str(dockerfile),
                tag=tag,
                buildargs=arguments,
                network_mode="host",  # no bridge here: RUN steps reach the Debian mirror as the host does
                rm=True,
                forcerm=True,
            )
        except (BuildError, APIError) as exc:
            output = getattr(exc, "build_log", [])
            log.write_text("".join(json.dumps(line) + "\n" for line in output))
            reason = str(exc).splitlines()[0][:200]
            raise ImageBuildFailed(f"building {tag} failed: {reason}", f"read {log}") from exc
        log.write_text("".join(line.get("stream", "") for line in lines))
        self._forget_older(tag)

    def _forget_older(self, tag: str, keep_for: timedelta = timedelta(hours=1)) -> None:
        """Remove the earlier builds of this image (other input hashes), unless recent or in use by a container."""
        repository = tag.rsplit(":", 1)[0]
        for image in self.engine.images.list(name=repository):
            created = datetime.fromisoformat(image.attrs["Created"][:26].rstrip("Z")).replace(tzinfo=UTC)
            if datetime.now(UTC) - created < keep_for:
                continue  # another session on this machine may be about to run it
            for older in image.tags:
                if older != tag and older.rsplit(":", 1)[0] == repository:
                    with contextlib.suppress(APIError):
                        self.engine.images.remove(older)

    def _run(self, command: list[str], what: str, fix: str, cwd: Path | None = None) -> None:
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
            raise ImageBuildFailed(f"{what} (exit {result.returncode}): {tail}", fix)


def prepare(settings: Settings, report: Report) -> Images:
    """Engine running, images built (or found in the cache): what the docker runtime and its tests need."""
    return ImageBuilder(settings, ensure_engine(settings, report), report).all()


def main() -> None:
    settings = load_settings()

    def report(step: str) -> None:
        print(f"images: {step}", file=sys.stderr, flush=True)

    try:
        images = prepare(settings, report)
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    for name, value in images.as_environment().items():
        print(f"{name}={value}")


if __name__ == "__main__":
    main()
