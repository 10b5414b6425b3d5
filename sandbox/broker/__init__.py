"""The credential broker: the control plane of agent identities (provision, role change, rotation, revocation,
dormancy review, approvals, audit, MCP client configs). It drives each tenant's IdP through ``sandbox.idp`` and tells
resource servers about revocations; it never sits in an agent's token path."""

from __future__ import annotations

from sandbox.broker.app import build_service, create_app
from sandbox.broker.service import BrokerContext, BrokerService, ProvisionRequest

__all__ = [
    "BrokerContext",
    "BrokerService",
    "ProvisionRequest",
    "build_service",
    "create_app",
]
