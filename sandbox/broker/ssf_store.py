"""The SSF transmitter's tables: one stream per receiver, and the events a receiver has not acknowledged yet."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.broker.store import Base


class SsfStream(Base):
    """An SSF event stream (SSF 1.0 §8.1): whom it is for (``aud``, the MCP server's canonical URL) and how."""

    __tablename__ = "ssf_streams"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    audience: Mapped[str] = mapped_column(String(512), unique=True)
    delivery_method: Mapped[str] = mapped_column(String(64))
    endpoint_url: Mapped[str | None] = mapped_column(String(512))  # push: the receiver's; poll: ours
    events_requested: Mapped[list[str]]
    description: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[datetime]


class SsfPendingEvent(Base):
    """A SET its stream's receiver has not acknowledged (push failed, or a poll stream): served by RFC 8936 poll.

    Its claims are kept, not the signed token: it is signed when it is handed out.
    """

    __tablename__ = "ssf_pending_events"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64), index=True)
    claims: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
