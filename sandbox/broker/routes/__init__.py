"""The broker's HTTP API, one FastAPI router per concern; :func:`sandbox.broker.app.create_app` assembles them.

Each route checks nothing itself beyond its input: it hands the caller (:data:`~sandbox.broker.routes.common.Caller`)
to the part of :class:`~sandbox.broker.service.BrokerService` it serves, and shapes the answer with
:mod:`sandbox.broker.schemas`.
"""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.broker.routes import (
    agents,
    clocks,
    delegation,
    dormancy,
    public,
    reporting,
    reviews,
    revocation,
    rotation,
    tenants,
)

#: In the order the app includes them (the OpenAPI document lists paths in this order).
ROUTERS: list[APIRouter] = [
    public.router,
    reporting.router,
    tenants.router,
    delegation.router,
    clocks.router,
    agents.router,
    rotation.router,
    revocation.router,
    dormancy.router,
    reviews.router,
]

__all__ = ["ROUTERS"]
