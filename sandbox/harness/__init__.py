"""Drives the sandbox from the outside, as a user would: human logins, scenarios, checks."""

from __future__ import annotations

from sandbox.harness.provisioning import ProvisionedAgent, credential_for, new_key, provision_agent
from sandbox.harness.tenants import Tenant, TenantAdmin, create_tenant, delete_tenant

__all__ = [
    "ProvisionedAgent",
    "Tenant",
    "TenantAdmin",
    "create_tenant",
    "credential_for",
    "delete_tenant",
    "new_key",
    "provision_agent",
]
