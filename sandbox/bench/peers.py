"""Peers: the mock IdP a user might pick instead of the sandbox, side by side with what the sandbox proves.

``no.nav.security:mock-oauth2-server`` (resolved with Maven into the sandbox cache when Maven Central serves it),
started on 127.0.0.1 only: its time to ready, then what it does with the lifecycle the sandbox checks. Each row is
measured, not assumed: a token is issued; the token is revoked at its revocation endpoint (RFC 7009) when the
server advertises one; then whether introspection still says ``active``, whether the same client still gets a new
token, and whether a token is issued with a secret the client was never given (no rotation, so no grace to end).
Keycloak started with ``start-dev`` is measured by ``stack-start``; the SDK's bearer middleware by
``auth-overhead``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from sandbox.bench.registry import BenchContext, benchmark
from sandbox.config import Settings
from sandbox.stack.java import find_jdk
from sandbox.stack.ports import free_port
from sandbox.stack.process import is_alive, rss_bytes, spawn, stop
from sandbox.stack.readiness import wait_for_http

ARTIFACT = "no.nav.security:mock-oauth2-server"
MAIN = "no.nav.security.mock.oauth2.StandaloneMockOAuth2ServerKt"
ISSUER_ID = "bench"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.mcp-sandbox.bench</groupId><artifactId>peers</artifactId><version>1</version>
  <dependencies><dependency>
    <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
  </dependency></dependencies>
</project>
"""


def resolve(settings: Settings) -> Path | str:
    """The directory of the mock server's jars (resolved once into the cache), or why it could not be had."""
    version = settings.mock_oauth2_server_version
    home = settings.cache_dir / "peers" / f"mock-oauth2-server-{version}"
    lib = home / "lib"
    if (home / ".resolved").exists():
        return lib
    if shutil.which("mvn") is None:
        return "Maven (mvn) is not installed"
    home.mkdir(parents=True, exist_ok=True)
    group, artifact = ARTIFACT.split(":")
    (home / "pom.xml").write_text(POM.format(group=group, artifact=artifact, version=version))
    command = ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={lib}"]
    result = subprocess.run(command, cwd=home, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not any(lib.glob("mock-oauth2-server-*.jar")):
        tail = " | ".join(result.stdout.strip().splitlines()[-2:])
        return f"Maven could not resolve {ARTIFACT}:{version} ({tail or 'no jar'})"
    (home / ".resolved").write_text(version)
    return lib


async def _lifecycle(base: str) -> dict[str, Any]:
    """What the mock does with a token and a client the sandbox would revoke and rotate."""
    async with httpx.AsyncClient(timeout=30.0) as http:
        metadata = (await http.get(f"{base}/.well-known/openid-configuration")).json()
        token_url = metadata["token_endpoint"]
        client_id, secret = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)

        async def grant(client_secret: str) -> httpx.Response:
            body = {"grant_type": "client_credentials", "scope": "mcp:tool:analytics.read"}
            return await http.post(token_url, data=body, auth=(client_id, client_secret))

        issued = await grant(secret)
        token = issued.json().get("access_token", "") if issued.status_code == 200 else ""
        revocation_url = metadata.get("revocation_endpoint")
        revoked_status = None
        if revocation_url and token:
            answer = await http.post(revocation_url, data={"token": token}, auth=(client_id, secret))
            revoked_status = answer.status_code
        introspection_url = metadata.get("introspection_endpoint")
        active = None
        if introspection_url and token:
            answer = await http.post(introspection_url, data={"token": token}, auth=(client_id, secret))
            active = answer.json().get("active") if answer.status_code == 200 else None
        again = await grant(secret)
        never_given = await grant(secrets.token_urlsafe(16))
    return {
        "token_issued": issued.status_code == 200,
        "revocation_endpoint_advertised": revocation_url is not None,
        "revocation_answer_status": revoked_status,
        "introspection_active_after_revocation": active,
        "same_client_gets_a_new_token_after_revocation": again.status_code == 200,
        "a_secret_never_given_gets_a_token": never_given.status_code == 200,
    }


def _cannot(found: dict[str, Any]) -> list[dict[str, str]]:
    """The table of what it cannot do that the sandbox proves, each row from what was measured above."""
    rows = []
    status = found["revocation_answer_status"]
    asked = f"revoking its token was asked (the revocation endpoint answered {status})" if status else ""
    if found["token_issued"] and found["same_client_gets_a_new_token_after_revocation"]:
        rows.append(
            {
                "what": "a revoked client's credential still works",
                "measured": "a new token was issued to the same client after "
                + (asked or "its token was issued (it advertises no revocation endpoint)"),
                "sandbox": "the broker disables the client at Keycloak: the token endpoint refuses it",
            }
        )
    if found["introspection_active_after_revocation"] is True:
        rows.append(
            {
                "what": "introspection still active after revocation",
                "measured": "introspection answered active: true for the token after " + (asked or "issuing it"),
                "sandbox": "a disabled or deleted client's tokens introspect inactive",
            }
        )
    if found["a_secret_never_given_gets_a_token"]:
        rows.append(
            {
                "what": "no rotation grace (any secret is accepted)",
                "measured": "a token was issued for a secret the client was never given",
                "sandbox": "after a rotation the old secret works for the grace only, then is refused",
            }
        )
    return rows


@benchmark("peers", "Peers: a mock IdP (mock-oauth2-server) beside the sandbox, time to ready and what it cannot do")
async def peers(context: BenchContext) -> dict[str, Any]:
    settings = context.settings
    version = settings.mock_oauth2_server_version
    lib = await asyncio.to_thread(resolve, settings)
    if isinstance(lib, str):
        return {"mock_oauth2_server": {"version": version, "not_measured": lib}}
    jdk = find_jdk(settings)
    port = free_port(settings.host)
    env = {
        "JAVA_HOME": str(jdk.home),
        "PATH": f"{jdk.home / 'bin'}:/usr/bin:/bin",
        "SERVER_HOSTNAME": settings.host,  # loopback only
        "SERVER_PORT": str(port),
    }
    command = [str(jdk.java), "-cp", f"{lib}/*", MAIN]
    base = f"http://{settings.host}:{port}/{ISSUER_ID}"
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        log = Path(scratch) / "mock-oauth2-server.log"
        began = time.perf_counter()
        record = spawn(command, env=env, log_path=log)
        try:
            alive = lambda: is_alive(record)  # noqa: E731
            ready = f"{base}/.well-known/openid-configuration"
            await asyncio.to_thread(wait_for_http, "mock-oauth2-server", ready, timeout=300, alive=alive, log=log)
            seconds = time.perf_counter() - began
            rss = round(rss_bytes(record) / 2**20, 1)
            found = await _lifecycle(base)
        finally:
            await asyncio.to_thread(stop, record)
    return {
        "mock_oauth2_server": {
            "version": version,
            "seconds_to_ready": round(seconds, 2),
            "rss_mib_at_ready": rss,
            "measured": found,
            "cannot_do": _cannot(found),
        }
    }
