"""The admin client side: the broker's HTTP client, ``apply`` of an agents file, a tenant admin's login and
the platform operator's token.

The product CLI (``mcp-sandbox broker``/``admin``/``tenants``/``agents``) and the test harness both drive the
broker through it; it imports nothing of the broker's server side.
"""

from __future__ import annotations

from sandbox.admin.apply import apply_agents_file, load_agents_file
from sandbox.admin.client import BrokerClient, BrokerRefused
from sandbox.admin.login import LoginFailed, admin_login, user_login
from sandbox.admin.operator import operator_token

__all__ = [
    "BrokerClient",
    "BrokerRefused",
    "LoginFailed",
    "admin_login",
    "apply_agents_file",
    "load_agents_file",
    "operator_token",
    "user_login",
]
