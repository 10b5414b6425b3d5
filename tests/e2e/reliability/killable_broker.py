"""A broker process of its own for the tests that kill one: ``python killable_broker.py [--keycloak-admin-url URL]``.

It is the stack's broker (``create_app``, the stack's settings from the environment: its own port and database
given as SANDBOX_BROKER_PORT and SANDBOX_BROKER_DATABASE_URL), except that its Keycloak Admin REST calls may go
through a test proxy, while tokens and issuers stay Keycloak's own.
"""

from __future__ import annotations

import sys

import uvicorn

from sandbox.broker.app import create_app
from sandbox.config import load_settings
from sandbox.http_limits import MAX_HEADER_BYTES
from sandbox.idp.keycloak import KeycloakAdapter
from sandbox.log import configure_logging


def main(arguments: list[str]) -> None:
    settings = load_settings()
    configure_logging()
    adapter = KeycloakAdapter.from_settings(settings)
    if arguments[:1] == ["--keycloak-admin-url"]:
        adapter = KeycloakAdapter(arguments[1], adapter.client_id, adapter._secret)
    app = create_app(settings, adapter=adapter)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.broker_port,
        log_config=None,
        access_log=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
