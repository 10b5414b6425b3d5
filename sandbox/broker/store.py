"""The broker's database: SQLAlchemy models and the engine (SQLite by default, PostgreSQL by URL).

Nothing secret is stored: credentials are kept as fingerprints (SHA-256 of the secret, or the public key's
thumbprint) and public keys only. The audit table is append-only: triggers refuse UPDATE and DELETE.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sandbox.config import DEFAULT_IDP, Settings
from sandbox.errors import SandboxError
from sandbox.idp.realm import delegation_scope


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC, timezone-aware on the way out whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


#: Statuses of an agent that still holds (or is getting, or is losing) a client at the IdP: its name is taken.
LIVE = ("provisioning", "pending_approval", "active", "rotating", "dormant", "suspended", "revoking")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[str]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(256))
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)  # its audit outlives it
    # Where its agents are: the realm (keycloak), or a Hydra of its own whose issuer signs their tokens.
    agents_idp: Mapped[str] = mapped_column(String(16), default=DEFAULT_IDP)
    agents_issuer: Mapped[str | None] = mapped_column(String(512), default=None)
    hydra: Mapped[str | None] = mapped_column(String(32), default=None)  # the pool Hydra it holds (pool-<n>)


class ResourceServer(Base):
    """An MCP server agents may be given as audience; it receives revocation events."""

    __tablename__ = "resource_servers"

    url: Mapped[str] = mapped_column(String(512), primary_key=True)  # canonical URL (the token audience)
    events_url: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime]


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(32))
    credential_type: Mapped[str] = mapped_column(String(32))
    binding: Mapped[str] = mapped_column(String(16), default="bearer", server_default="bearer")
    client_id: Mapped[str] = mapped_column(String(256), index=True)
    idp_id: Mapped[str | None] = mapped_column(String(64))  # the client's id inside its IdP
    service_account_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), index=True)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    audiences: Mapped[list[str]] = mapped_column(default=list)
    token_lifetime: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the caller's metadata
    source: Mapped[str] = mapped_column(String(32), default="api")  # api | apply
    requested_by: Mapped[str] = mapped_column(String(256))  # subject of the admin who provisioned it
    requested_by_name: Mapped[str] = mapped_column(String(256))
    approved_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    last_token_at: Mapped[datetime | None]
    last_tool_call_at: Mapped[datetime | None]
    dormant_since: Mapped[datetime | None]
    grace_ends_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    cleanup_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # IdP leftovers to remove
    zone: Mapped[str | None] = mapped_column(String(64), default=None)  # the source address it must call from
    suspended_at: Mapped[datetime | None] = mapped_column(default=None)
    # Anomalies count from here: a resumed agent is not suspended again for what led to its suspension.
    anomalies_counted_from: Mapped[datetime | None] = mapped_column(default=None)

    # One live agent per name and tenant, whichever broker process provisions it (a second one gets 409).
    __table_args__ = (
        Index(
            "agents_one_live_name",
            "tenant",
            "name",
            unique=True,
            sqlite_where=text(f"status IN {LIVE}"),
            postgresql_where=text(f"status IN {LIVE}"),
        ),
    )

    def as_public(self) -> dict[str, Any]:
        """What the API shows (no credential material at all)."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "owner": self.owner,
            "role": self.role,
            "environment": self.environment,
            "mode": self.mode,
            "credential_type": self.credential_type,
            "binding": self.binding,
            "client_id": self.client_id,
            "status": self.status,
            "scopes": list(self.scopes),
            "audiences": list(self.audiences),
            "token_lifetime": self.token_lifetime,
            "metadata": dict(self.attributes),
            "source": self.source,
            "requested_by": self.requested_by_name,
            "approved_by": self.approved_by,
            "created_at": self.created_at.isoformat(),
            "grace_ends_at": self.grace_ends_at.isoformat() if self.grace_ends_at else None,
            "dormant_since": self.dormant_since.isoformat() if self.dormant_since else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "zone": self.zone,
            "suspended_at": self.suspended_at.isoformat() if self.suspended_at else None,
            "delegation_scope": delegation_scope(self.client_id) if self.mode == "delegated" else None,
        }


class Credential(Base):
    """One credential of an agent, as a fingerprint: never the secret or the private key."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(128))
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # current | previous
    created_at: Mapped[datetime]
    not_after: Mapped[datetime | None]


class UsageEvent(Base):
    """One tool call an MCP server reported (POST /usage)."""

    __tablename__ = "usage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    issuer: Mapped[str] = mapped_column(String(512))
    client_id: Mapped[str] = mapped_column(String(256))
    resource: Mapped[str] = mapped_column(String(512))
    tool: Mapped[str] = mapped_column(String(256))
    allowed: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(String(64), default=None)  # the caller's address, when reported
    outside_zone: Mapped[bool] = mapped_column(Boolean, default=False)  # refused: not from the agent's zone


class GeneratedConfig(Base):
    """An MCP client config the broker generated for an agent, and where the caller said it will live."""

    __tablename__ = "generated_configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    path: Mapped[str | None] = mapped_column(String(1024))
    servers: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime]


class TenantClockMove(Base):
    """A move of a tenant's clock (sandbox only): from ``at`` (the broker's own time) on, ``offset_seconds`` ahead."""

    __tablename__ = "tenant_clock_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    at: Mapped[datetime]
    offset_seconds: Mapped[float] = mapped_column(Float)


class Delegation(Base):
    """A user let a delegated agent act for them with these scopes (seen in the IdP's token exchanges)."""

    __tablename__ = "delegations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[list[str]] = mapped_column(default=list)  # what the exchanged token carried, sorted
    first_at: Mapped[datetime]  # the first and latest exchange, in the tenant's time
    last_at: Mapped[datetime]
    exchanges: Mapped[int] = mapped_column(Integer, default=0)
    consented_at: Mapped[datetime | None]  # when the user consented to the agent at login (Keycloak's record)

    def as_public(self) -> dict[str, Any]:
        return {
            "user": self.username,
            "user_id": self.user_id,
            "scopes": list(self.scopes),
            "first_exchange_at": self.first_at.isoformat(),
            "last_exchange_at": self.last_at.isoformat(),
            "exchanges": self.exchanges,
            "consented_at": self.consented_at.isoformat() if self.consented_at else None,
        }


class AuditEntry(Base):
    """One transition or admin act; chained per tenant by hash (see sandbox.broker.audit)."""

    __tablename__ = "audit"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[str] = mapped_column(Text)  # canonical JSON
    after: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[str] = mapped_column(String(40))  # ISO 8601, part of the hash
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest entry of each tenant's audit chain, updated with every append in the same transaction.

    It anchors the chain's end, so removing the newest entries is detected like any other change; and its row
    lock serializes appends to one chain across broker processes (PostgreSQL: ``SELECT … FOR UPDATE``).
    """

    __tablename__ = "audit_heads"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


_APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql",
        "DROP TRIGGER IF EXISTS audit_append_only ON audit",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    ],
}


#: Columns renamed since a broker database could first be made: (table, old name, new name). A database made
#: before the rename is renamed in place when the broker opens it; its rows keep their values.
_RENAMED_COLUMNS = [("agents", "keycloak_id", "idp_id")]


def _rename_columns(connection: Any) -> None:
    found = inspect(connection)
    for table, old, new in _RENAMED_COLUMNS:
        if not found.has_table(table):
            continue
        columns = {column["name"] for column in found.get_columns(table)}
        if old in columns and new not in columns:
            connection.execute(text(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"))


def default_database_url(settings: Settings) -> str:
    return f"sqlite:///{broker_dir(settings) / 'broker.db'}"


def broker_dir(settings: Settings) -> Path:
    return settings.state_dir / "broker"


class StorageError(SandboxError):
    """The broker's database refused or failed."""


class StorageConflict(StorageError):
    """The database refused a change that would break a uniqueness rule (another caller got there first)."""


class Busy(StorageError):
    """Another broker process holds the lock this operation needs for longer than the wait allowed."""


class Database:
    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not read_only:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_read_only if read_only else _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def existing(cls, url: str) -> Database:
        """The database at ``url``, to read only: one that is not there is an error, never created."""
        try:
            parsed = make_url(url)
            if parsed.get_backend_name() != "sqlite":
                return cls(url, read_only=True)
        except (ArgumentError, ImportError) as exc:  # not a URL, or a database without a driver here
            raise StorageError(
                f"{url!r} is not a database URL this broker can open ({exc})",
                "give one like sqlite:////path/to/broker.db or postgresql+psycopg://user@host/database",
            ) from None
        path = Path(parsed.database or "")
        if not parsed.database or parsed.database == ":memory:" or not path.is_file():
            raise StorageError(
                f"no database file at {path}", "check the path: the stack's is <state dir>/broker/broker.db"
            )
        return cls(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true", read_only=True)

    def create_schema(self) -> None:
        try:
            with self.engine.begin() as connection:
                _rename_columns(connection)
            Base.metadata.create_all(self.engine)
            with self.engine.begin() as connection:
                for statement in _APPEND_ONLY.get(self.engine.dialect.name, []):
                    connection.execute(text(statement))
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot prepare the broker database {self.engine.url.render_as_string(hide_password=True)}: "
                f"{type(exc).__name__}",
                "check SANDBOX_BROKER_DATABASE_URL and that the database is reachable and writable",
            ) from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise StorageConflict(
                    f"the broker database refused a duplicate: {str(exc.orig).splitlines()[0][:200]}",
                    "another caller made the same change a moment ago; read the current state and retry if needed",
                ) from exc
            except SQLAlchemyError as exc:
                session.rollback()
                raise StorageError(
                    f"the broker database failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    "check the database (disk space, permissions, connectivity) and retry",
                ) from exc
            except BaseException:
                session.rollback()
                raise

    @asynccontextmanager
    async def exclusive(self, name: str, wait: float = 30.0) -> AsyncIterator[None]:
        """Hold the lock ``name`` against every other broker process on this database while the block runs.

        PostgreSQL: a session advisory lock on a connection of its own (released on exit, or when the process
        dies and its connection closes); polled, so the event loop keeps serving meanwhile. SQLite serves one
        broker process, whose in-process locks suffice: nothing to do.
        """
        if self.engine.dialect.name != "postgresql":
            yield
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        deadline = time.monotonic() + wait
        try:
            connection = self.engine.connect()
        except SQLAlchemyError as exc:
            raise StorageError(f"the broker database failed: {type(exc).__name__}", "check the database") from exc
        try:
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                connection.rollback()
                if time.monotonic() > deadline:
                    raise Busy(
                        f"{name} is busy in another broker process for more than {wait:.0f}s",
                        "retry in a moment",
                    )
                await asyncio.sleep(0.05)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        finally:
            connection.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_read_only(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
