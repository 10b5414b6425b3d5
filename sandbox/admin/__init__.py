"""The admin client side: the broker's HTTP client, ``apply`` of an agents file, and a tenant admin's login.

The product CLI (``mcp-sandbox broker``/``admin``/``tenants``/``agents``) and the test harness both drive the
broker through it; it imports nothing of the broker's server side.
"""

from __future__ import annotations

from sandbox.admin.apply import apply_agents_file, load_agents_file
from sandbox.admin.client import BrokerClient, BrokerRefused
from sandbox.admin.login import LoginFailed, admin_login, user_login

__all__ = [
    "BrokerClient",
    "BrokerRefused",
    "LoginFailed",
    "admin_login",
    "apply_agents_file",
    "load_agents_file",
    "user_login",
]
