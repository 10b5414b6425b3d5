"""A PostgreSQL cluster of the test's own (Debian's `postgresql` package), on a free port on 127.0.0.1.

initdb and pg_ctl refuse to run as root, so as root they run as the package's `postgres` user (runuser). The
cluster lives in a temporary directory (its socket too) with a generated password, and is removed afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from sandbox.errors import SandboxError
from sandbox.issued import remember
from sandbox.stack.ports import free_port
from sandbox.stack.postgres import as_owner, server_binaries


def _binaries() -> Path:
    try:
        return server_binaries()
    except SandboxError as error:
        pytest.fail(f"the scale-out tests need a PostgreSQL server: {error}", pytrace=False)


@dataclass(frozen=True)
class Cluster:
    port: int
    password: str

    def url(self, database: str = "broker") -> str:
        return f"postgresql+psycopg://sandbox:{self.password}@127.0.0.1:{self.port}/{database}"


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    binaries = _binaries()
    home = Path(tempfile.mkdtemp(prefix="mcp-sandbox-postgres-"))
    data, password_file = home / "data", home / "password"
    password = secrets.token_urlsafe(24)
    remember(password)  # the secret scan then proves no log or database of the run holds it
    password_file.write_text(password)
    owner = as_owner()
    if owner:
        shutil.chown(home, "postgres")
        shutil.chown(password_file, "postgres")

    def run(*command: str) -> None:
        done = subprocess.run([*owner, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()[-400:]}", pytrace=False)

    port = free_port()
    run(str(binaries / "initdb"), "-D", str(data), "-U", "sandbox", "--auth=scram-sha-256", f"--pwfile={password_file}")
    password_file.unlink()
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c max_connections=100"
    run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "postgres.log"), "-w", "start")
    try:
        cluster = Cluster(port, password)
        with psycopg.connect(cluster.url("postgres").replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute("CREATE DATABASE broker")
        yield cluster
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)
