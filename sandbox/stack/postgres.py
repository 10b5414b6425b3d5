"""PostgreSQL as a stack component: the database server the stack's Hydras keep their data in, on loopback.

Hydra on SQLite serialises every write behind one file lock, and concurrent token requests write (each
``private_key_jwt`` assertion's ``jti``, each token's session): on a busy machine some of them failed with HTTP
500 or ``invalid_client``. On PostgreSQL they do not wait for each other. One cluster serves every Hydra of the
stack, a database each (:meth:`PostgresServer.recreate_database`), with a generated password (a stack secret).

The server is Debian's ``postgresql`` package (``apt-get install postgresql``; ``.ci/run`` installs it). PostgreSQL
refuses to run as root, so as root it runs as the package's ``postgres`` user, its cluster in a directory of the
system's temporary directory that user can reach (a root's state directory is private to root); otherwise the
cluster is in the state directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.stack.component import Port, ProcessComponent, Report
from sandbox.stack.readiness import wait_until
from sandbox.stack.state import ComponentState
from sandbox.stack_secrets import Secrets

INSTALL = "install PostgreSQL (Debian/Ubuntu: sudo apt-get install postgresql; .ci/run does it when missing)"
#: The superuser of the stack's cluster, and the stack secret that holds its password.
SUPERUSER = "sandbox"
PASSWORD_SECRET = "postgres/sandbox"
#: Seconds initdb, createdb or dropdb may take on a busy machine.
COMMAND_TIMEOUT = 300


def server_binaries() -> Path:
    """The directory of PostgreSQL's server programs (initdb, postgres, pg_isready); the newest installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise SandboxError(
            "found no PostgreSQL server (its initdb is neither on PATH nor in /usr/lib/postgresql)", INSTALL
        )
    return Path(initdb).resolve().parent


def as_owner() -> list[str]:
    """The prefix that runs a PostgreSQL program as a user it accepts: as root, the package's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PostgresServer(ProcessComponent):
    """One PostgreSQL cluster on 127.0.0.1, made afresh whenever the stack starts from nothing."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.port = settings.postgres_port

    @property
    def home(self) -> Path:
        """The cluster's directory (its data, its socket): the state directory's, or, as root, one in /tmp."""
        if os.geteuid() != 0:
            return self.settings.state_dir / self.name
        digest = hashlib.sha256(str(self.settings.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"mcp-sandbox-postgres-{digest}"

    @property
    def url(self) -> str:
        return f"postgresql://{self.settings.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.url

    @property
    def password(self) -> str:
        return Secrets(self.settings).get_or_create(PASSWORD_SECRET)

    def dsn(self, database: str) -> str:
        """A connection URL to one of its databases, as Go's pgx (Hydra) reads it."""
        return (
            f"postgres://{SUPERUSER}:{self.password}@{self.settings.host}:{self.port}/{database}"
            "?sslmode=disable&max_conns=20&max_idle_conns=4"
        )

    def ports(self) -> list[Port]:
        return [Port(self.port, "PostgreSQL (the Hydras' databases)", "SANDBOX_POSTGRES_PORT")]

    def prepare(self, report: Report) -> None:
        server_binaries()  # says what to install before anything starts

    def command(self) -> list[str]:
        options = [
            f"listen_addresses={self.settings.host}",
            f"unix_socket_directories={self.home}",
            "max_connections=200",
            "fsync=off",  # a sandbox's data is remade on every `up`; no crash has to be survived
            "synchronous_commit=off",
            "full_page_writes=off",
        ]
        settings = [argument for option in options for argument in ("-c", option)]
        return [
            *as_owner(),
            str(server_binaries() / "postgres"),
            "-D",
            str(self.home / "data"),
            "-p",
            str(self.port),
            *settings,
        ]

    def clear_data(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def stop(self, state: ComponentState) -> None:
        # Its databases are remade whenever a Hydra starts, so nothing of a stopped cluster is worth keeping.
        super().stop(state)
        self.clear_data()

    def start(self) -> ComponentState:
        if not (self.home / "data" / "PG_VERSION").is_file():
            self._initdb()
        return super().start()

    def _initdb(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True, mode=0o700)
        password_file = self.home / "password"
        password_file.write_text(self.password)
        if as_owner():
            for path in (self.home, password_file):
                shutil.chown(path, "postgres")
        try:
            self._run(
                [
                    *as_owner(),
                    str(server_binaries() / "initdb"),
                    *("-D", str(self.home / "data"), "-U", SUPERUSER, "--auth=scram-sha-256"),
                    f"--pwfile={password_file}",
                ],
                "initdb",
            )
        finally:
            password_file.unlink(missing_ok=True)

    def wait_ready(self, state: ComponentState) -> None:
        wait_until(
            self.name,
            self.url,
            lambda: self.is_healthy(state),
            timeout=self.settings.startup_timeout,
            alive=lambda: self.is_running(state),
            log=self.log_path,
        )

    def is_healthy(self, state: ComponentState) -> bool:
        command = [str(server_binaries() / "pg_isready"), "-q", "-h", self.settings.host, "-p", str(self.port)]
        try:
            return subprocess.run(command, capture_output=True, timeout=5).returncode == 0
        except (subprocess.TimeoutExpired, OSError, SandboxError):
            return False

    def recreate_database(self, database: str) -> None:
        """Drop ``database`` if it exists and create it empty (a Hydra's, whenever that Hydra starts)."""
        server = ["-h", self.settings.host, "-p", str(self.port), "-U", SUPERUSER]
        self._run([str(server_binaries() / "dropdb"), "--if-exists", *server, database], "dropdb")
        self._run([str(server_binaries() / "createdb"), *server, database], "createdb")

    def _run(self, command: list[str], what: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PGPASSWORD": self.password}
        fix = f"read its log (mcp-sandbox logs {self.name}); {INSTALL}"
        self.run_once(command, env=env, timeout=COMMAND_TIMEOUT, what=f"PostgreSQL's {what}", fix=fix)
