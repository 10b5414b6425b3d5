"""A Keycloak database made once per built distribution: the schema, the master realm and its admin.

A Keycloak started on an empty database spends about six seconds creating its schema and its master
realm. The local stack does that once, with ``kc.sh export`` (which initialises the database and exits,
serving nothing), keeps the result beside the built distribution, and copies it for every ``up``. The
copy's admin user and admin service account then get the stack's own credentials (see
:meth:`sandbox.idp.keycloak.KeycloakAdapter.take_over_master_admin`), so those are still new on every
``up``; the seed's own credentials never leave its 0600 file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from sandbox.config import Settings
from sandbox.errors import DistributionError
from sandbox.stack.component import Report
from sandbox.stack.distribution import KeycloakDistribution, class_archive_at_exit, run_files_options
from sandbox.stack.java import Jdk

DATABASE_FILE = "keycloakdb.mv.db"  # H2's one file for a database named keycloakdb
CLASS_ARCHIVE = "classes.jsa"  # the classes the export loaded: every start of this build maps them


def h2_url(directory: Path) -> str:
    """Keycloak's ``--db-url`` for the H2 database kept in ``directory``."""
    return f"jdbc:h2:file:{directory / 'keycloakdb'};NON_KEYWORDS=VALUE"


@dataclass(frozen=True)
class BootstrapAdmin:
    """The admin user and admin service account Keycloak makes when it creates its master realm."""

    username: str
    password: str
    client_id: str
    client_secret: str

    def environment(self) -> dict[str, str]:
        """Keycloak's ``KC_BOOTSTRAP_ADMIN_*`` settings for these credentials."""
        return {
            "KC_BOOTSTRAP_ADMIN_USERNAME": self.username,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.password,
            "KC_BOOTSTRAP_ADMIN_CLIENT_ID": self.client_id,
            "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET": self.client_secret,
        }


class SeededDatabase:
    """The seed of one built distribution, made when missing or when the build it was made by has changed."""

    def __init__(self, settings: Settings, distribution: KeycloakDistribution) -> None:
        self.settings = settings
        self.distribution = distribution

    @property
    def directory(self) -> Path:
        """One seed per build (named after the build's directory): builds of other provider sources, such as
        another checkout's, keep seeds of their own instead of replacing each other's."""
        return self.distribution.cache / f"database-{self.distribution.home.name}"

    def ensure(self, jdk: Jdk, report: Report, *, username: str, client_id: str) -> BootstrapAdmin:
        """The seed's admin credentials; the seed is made first if it is missing or stale."""
        made_by = {
            "home": str(self.distribution.home),
            "options": self.distribution.build_options(),
            "java": str(jdk.home),
            "class_archive": CLASS_ARCHIVE,  # seeds made before the archive existed are made again
        }
        with FileLock(str(self.distribution.cache / ".lock"), timeout=600):
            marker, admin_file = self.directory / "made-by.json", self.directory / "admin.json"
            present = all(path.is_file() for path in (marker, admin_file, self.directory / DATABASE_FILE))
            if present and json.loads(marker.read_text()) == made_by:
                return self.admin()
            report("seeding its database (once per build)")
            admin = BootstrapAdmin(username, secrets.token_urlsafe(24), client_id, secrets.token_urlsafe(32))
            self._make(jdk, admin, made_by)
            return admin

    def admin(self) -> BootstrapAdmin:
        """The credentials the seed's admins were made with."""
        return BootstrapAdmin(**json.loads((self.directory / "admin.json").read_text()))

    @property
    def class_archive(self) -> Path:
        """The build's class-data sharing archive, written by the seeding export; absent if the JDK made none."""
        return self.directory / CLASS_ARCHIVE

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.directory / DATABASE_FILE, directory / DATABASE_FILE)

    def _make(self, jdk: Jdk, admin: BootstrapAdmin, made_by: dict[str, object]) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".database-", dir=self.distribution.cache))
        try:
            (staging / "tmp").mkdir()
            command = [
                str(self.distribution.kc_sh),
                "export",
                "--optimized",
                "--cache=local",
                # export serves no HTTP, but Keycloak still opens its management interface: on loopback.
                f"--http-host={self.settings.host}",
                f"--http-management-port={self.settings.keycloak_management_port}",
                f"--db-url={h2_url(staging / 'db')}",
                f"--dir={staging / 'export'}",
                "--realm=master",
            ]
            env = {
                "JAVA_HOME": str(jdk.home),
                "PATH": f"{jdk.home / 'bin'}:/usr/bin:/bin",
                # The export loads most of the classes a server start does: they are archived as it exits.
                "JAVA_OPTS_APPEND": f"{run_files_options(staging)} {class_archive_at_exit(staging / CLASS_ARCHIVE)}",
                **admin.environment(),
            }
            log = self.settings.log_dir / "keycloak-seed.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w") as out:
                result = subprocess.run(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=self.settings.startup_timeout
                )
            if result.returncode != 0 or not (staging / "db" / DATABASE_FILE).is_file():
                raise DistributionError(
                    f"Keycloak could not create its database (kc.sh export exited {result.returncode})",
                    f"read {log}; delete {self.distribution.home} to unpack and build afresh",
                )
            seed = staging / "seed"
            seed.mkdir()
            shutil.copyfile(staging / "db" / DATABASE_FILE, seed / DATABASE_FILE)
            if (staging / CLASS_ARCHIVE).is_file():  # a JDK without a base archive writes none: starts go without
                os.replace(staging / CLASS_ARCHIVE, seed / CLASS_ARCHIVE)
            admin_file = seed / "admin.json"
            admin_file.touch(mode=0o600)
            admin_file.write_text(json.dumps(asdict(admin)))
            (seed / "made-by.json").write_text(json.dumps(made_by))
            shutil.rmtree(self.directory, ignore_errors=True)
            os.replace(seed, self.directory)
        except subprocess.TimeoutExpired as exc:
            raise DistributionError(
                f"Keycloak did not create its database within {self.settings.startup_timeout:.0f} s",
                "raise SANDBOX_STARTUP_TIMEOUT on a slow machine",
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
