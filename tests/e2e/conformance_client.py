"""The client the conformance suite runs: it hands the scenario's credential to ``mcp-sandbox tools``.

The suite runs ``<this> <server url>`` with the scenario's credential in ``MCP_CONFORMANCE_CONTEXT`` (a client id
and a secret, or a PEM private key). The secret goes by environment variable and the key by a file of mode 0600,
as a user would give them; everything else (discovery, client authentication, the MCP session) is the agent code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SECRET_VARIABLE = "CONFORMANCE_AGENT_SECRET"


def main() -> int:
    server_url = sys.argv[-1]
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    command = [str(Path(sys.executable).with_name("mcp-sandbox")), "tools", "--url", server_url]
    command += ["--client-id", context["client_id"]]
    environment = dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        if "private_key_pem" in context:
            key = Path(scratch) / "agent.pem"
            descriptor = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(context["private_key_pem"])
            command += ["--key-file", str(key)]
        else:
            environment[SECRET_VARIABLE] = context["client_secret"]
            command += ["--secret-env", SECRET_VARIABLE]
        return subprocess.run(command, env=environment, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
