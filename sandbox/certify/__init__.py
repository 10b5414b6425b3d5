"""``mcp-sandbox certify``: the auth behaviour of any MCP server, checked against the sandbox's real Keycloak.

One check per row of the requirements table (``checks/``), each with its positive control; agents, hostile
tokens and the sandbox-side set-up come from :mod:`.world`; :mod:`.runner` runs them; ``report/`` writes the
official conformance suite's ``checks.json`` shape, JUnit XML and HTML.
"""

from __future__ import annotations

from sandbox.certify.manifest import Manifest, load_manifest
from sandbox.certify.runner import run_checks

__all__ = [
    "Manifest",
    "load_manifest",
    "run_checks",
]
