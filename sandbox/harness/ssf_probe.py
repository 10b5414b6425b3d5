"""Measure which of the broker's IdP changes Keycloak's own SSF transmitter turns into events.

``python -m sandbox.harness.ssf_probe [--dist ZIP]`` unpacks the Keycloak distribution into a temporary
directory, starts it in development mode with the ``ssf`` feature on free loopback ports, makes a realm whose
transmitter is on, a receiver client with a poll stream, an agent (a confidential client with a service
account, as the broker makes them) and, as the control, a human user. It then does to the agent what the
broker does (secret rotation, session logout, disable, delete) and to the user what Keycloak documents as
transmitted (password reset, logout), polls the stream after each act, and prints which SETs arrived. Each
SET is also checked by the reference MCP server's own receiver code (signature from the transmitter's
``jwks_uri``, issuer, audience), so the table says whether our receiver takes Keycloak's real events.
Keycloak is stopped and the directory removed at the end. It takes a few minutes: Keycloak builds itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.config import load_settings
from sandbox.idp.realm import TOKEN_PATH
from sandbox.jwt_signature import KeyCache, peek
from sandbox.mcp_server.events import EventReceiver, RejectedEvent
from sandbox.mcp_server.revocations import RevocationList
from sandbox.ssf import ACCESS_ENDING, POLL, WELL_KNOWN
from sandbox.stack.java import find_jdk
from sandbox.stack.ports import free_port

REALM = "ssf-probe"
#: Seconds to wait after an act for Keycloak's outbox to hand its events to the poll stream.
SETTLE = 3.0


@dataclass
class Finding:
    act: str
    events: list[str] = field(default_factory=list)
    subjects: list[Any] = field(default_factory=list)
    accepted_by_our_receiver: list[bool] = field(default_factory=list)


@contextlib.contextmanager
def keycloak(zip_path: Path) -> Iterator[str]:
    settings = load_settings()
    jdk = find_jdk(settings)
    workdir = Path(tempfile.mkdtemp(prefix="ssf-probe-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(workdir)
        home = next(workdir.glob("keycloak-*"))
        (home / "bin" / "kc.sh").chmod(0o755)
        port, management = free_port(), free_port()
        password = secrets.token_urlsafe(18)
        environment = {
            **os.environ,
            "JAVA_HOME": str(jdk.home),
            "KC_BOOTSTRAP_ADMIN_USERNAME": "probe-admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": password,
        }
        command = [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            "--features=ssf",
            "--http-host=127.0.0.1",
            f"--http-port={port}",
            f"--http-management-port={management}",
            "--cache=local",
            "--health-enabled=true",
        ]
        log = (workdir / "keycloak.log").open("wb")
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 900
        base = f"http://127.0.0.1:{port}"
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{management}/health/ready", timeout=5).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Keycloak did not start; see {workdir / 'keycloak.log'}")
            time.sleep(2)
        os.environ["SSF_PROBE_ADMIN_PASSWORD"] = password
        yield base
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=60)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


class Probe:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(timeout=60)
        password = os.environ.pop("SSF_PROBE_ADMIN_PASSWORD")
        token = self.http.post(
            f"{base}/realms/master{TOKEN_PATH}",
            data={"grant_type": "password", "client_id": "admin-cli", "username": "probe-admin", "password": password},
        )
        token.raise_for_status()
        self.admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
        self.admin_url = f"{base}/admin/realms/{REALM}"

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, f"{self.admin_url}{path}", headers=self.admin, **kwargs)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response

    def client_id_of(self, client_id: str) -> str:
        return str(self.call("GET", "/clients", params={"clientId": client_id}).json()[0]["id"])

    def setup(self) -> tuple[str, dict[str, str], str]:
        realm = {
            "realm": REALM,
            "enabled": True,
            "sslRequired": "none",
            "eventsEnabled": True,
            "eventsListeners": ["jboss-logging", "ssf-events"],
            "adminEventsEnabled": True,
            "adminEventsDetailsEnabled": True,
            "attributes": {"ssf.transmitterEnabled": "true"},
        }
        created = self.http.post(f"{self.base}/admin/realms", headers=self.admin, json=realm)
        if created.status_code >= 400:
            raise SystemExit(f"creating the realm: HTTP {created.status_code} {created.text[:300]}")
        receiver_secret = secrets.token_urlsafe(24)
        receiver = {
            "clientId": "ssf-receiver",
            "secret": receiver_secret,
            "publicClient": False,
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "attributes": {"ssf.enabled": "true", "ssf.defaultSubjects": "ALL"},
        }
        self.call("POST", "/clients", json=receiver)
        receiver_uuid = self.client_id_of("ssf-receiver")
        for scope in self.call("GET", "/client-scopes").json():
            if scope["name"] in ("ssf.read", "ssf.manage"):
                self.call("PUT", f"/clients/{receiver_uuid}/default-client-scopes/{scope['id']}")
        token = self.http.post(
            f"{self.base}/realms/{REALM}{TOKEN_PATH}",
            data={"grant_type": "client_credentials", "scope": "ssf.read ssf.manage"},
            auth=("ssf-receiver", receiver_secret),
        )
        token.raise_for_status()
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        metadata = self.http.get(f"{self.base}/.well-known/ssf-configuration/realms/{REALM}")
        if metadata.status_code != 200:
            metadata = self.http.get(f"{self.base}/realms/{REALM}{WELL_KNOWN}")
        metadata.raise_for_status()
        configuration = metadata.json()
        stream = self.http.post(
            configuration["configuration_endpoint"],
            headers=bearer,
            json={"delivery": {"method": POLL}, "events_requested": list(ACCESS_ENDING), "description": "probe"},
        )
        if stream.status_code >= 400:
            raise SystemExit(f"creating the stream: HTTP {stream.status_code} {stream.text[:300]}")
        self.stream = stream.json()
        self.configuration = configuration
        return str(stream.json()["delivery"]["endpoint_url"]), bearer, receiver_uuid

    def poll(self, url: str, bearer: dict[str, str]) -> dict[str, str]:
        time.sleep(SETTLE)
        sets: dict[str, str] = {}
        for _ in range(10):
            body = {"maxEvents": 50, "returnImmediately": True, "ack": list(sets)}
            answer = self.http.post(url, headers=bearer, json=body).json()
            sets.update(answer.get("sets") or {})
            if not answer.get("sets") and not answer.get("moreAvailable"):
                break
        return sets


def accepted(configuration: dict[str, Any], stream: dict[str, Any], value: str) -> bool:
    """Whether the reference MCP server's receiver code verifies and takes this SET."""
    audience = stream.get("aud")
    audience = audience[0] if isinstance(audience, list) else audience

    async def check() -> bool:
        async with httpx.AsyncClient() as http:

            async def jwks_uri() -> str:
                return str(configuration["jwks_uri"])

            receiver = EventReceiver(
                KeyCache(http, jwks_uri, refetch_interval=1),
                RevocationList(max_token_lifetime=3600, leeway=5),
                issuer=configuration["issuer"],
                audience=str(audience),
                leeway=5,
            )
            try:
                await receiver.receive(value)
            except RejectedEvent as rejected:
                print(f"    our receiver refused it: {rejected.err}: {rejected.description}")
                return False
            return True

    return asyncio.run(check())


def run(base: str) -> list[Finding]:
    probe = Probe(base)
    poll_url, bearer, _ = probe.setup()
    probe.poll(poll_url, bearer)  # whatever the set-up itself caused (a verification event)
    agent_secret = secrets.token_urlsafe(24)
    probe.call(
        "POST",
        "/clients",
        json={"clientId": "agent-1", "secret": agent_secret, "serviceAccountsEnabled": True, "publicClient": False},
    )
    agent = probe.client_id_of("agent-1")
    account = probe.call("GET", f"/clients/{agent}/service-account-user").json()["id"]
    probe.http.post(
        f"{base}/realms/{REALM}{TOKEN_PATH}",
        data={"grant_type": "client_credentials"},
        auth=("agent-1", agent_secret),
    ).raise_for_status()
    probe.call("POST", "/users", json={"username": "control-user", "enabled": True})
    user = probe.call("GET", "/users", params={"username": "control-user"}).json()[0]["id"]
    acts = [
        ("agent: client secret regenerated", lambda: probe.call("POST", f"/clients/{agent}/client-secret")),
        ("agent: service account's sessions logged out", lambda: probe.call("POST", f"/users/{account}/logout")),
        (
            "agent: client disabled",
            lambda: probe.call("PUT", f"/clients/{agent}", json={"clientId": "agent-1", "enabled": False}),
        ),
        ("agent: service account disabled", lambda: probe.call("PUT", f"/users/{account}", json={"enabled": False})),
        ("agent: client deleted", lambda: probe.call("DELETE", f"/clients/{agent}")),
        (
            "control: user's password reset by an admin",
            lambda: probe.call(
                "PUT", f"/users/{user}/reset-password", json={"type": "password", "value": secrets.token_urlsafe(16)}
            ),
        ),
        ("control: user logged out by an admin", lambda: probe.call("POST", f"/users/{user}/logout")),
    ]
    findings = []
    for name, act in acts:
        act()
        finding = Finding(name)
        for value in probe.poll(poll_url, bearer).values():
            _, claims = peek(value)
            finding.events.extend(claims.get("events", {}))
            finding.subjects.append(
                claims.get("sub_id") or next(iter(claims.get("events", {}).values()), {}).get("subject")
            )
            finding.accepted_by_our_receiver.append(accepted(probe.configuration, probe.stream, value))
        findings.append(finding)
        print(json.dumps(finding.__dict__), flush=True)
    return findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load_settings()
    default = settings.cache_dir / "keycloak" / f"keycloak-quarkus-dist-{settings.keycloak_version}.zip"
    parser.add_argument("--dist", type=Path, default=default, help="the keycloak-quarkus-dist zip")
    arguments = parser.parse_args()
    with keycloak(arguments.dist) as base:
        findings = run(base)
    print("\n| act | events Keycloak transmitted | our receiver took them |\n| --- | --- | --- |")
    for finding in findings:
        events = ", ".join(e.rsplit("/", 1)[-1] for e in finding.events) or "none"
        taken = "—" if not finding.events else ("yes" if all(finding.accepted_by_our_receiver) else "no")
        print(f"| {finding.act} | {events} | {taken} |")


if __name__ == "__main__":
    main()
