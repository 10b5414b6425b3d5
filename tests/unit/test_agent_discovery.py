"""Where an agent looks for a server's protected resource metadata and its authorization server's metadata."""

from __future__ import annotations

from sandbox.agent.discovery import authorization_server_metadata_urls, resource_metadata_urls


def test_resource_metadata_follows_the_challenge_then_the_path_then_the_origin() -> None:
    assert resource_metadata_urls("http://127.0.0.1:9/mcp", "http://127.0.0.1:9/meta") == [
        "http://127.0.0.1:9/meta",
        "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp",
        "http://127.0.0.1:9/.well-known/oauth-protected-resource",
    ]
    assert resource_metadata_urls("http://127.0.0.1:9/", None) == [
        "http://127.0.0.1:9/.well-known/oauth-protected-resource"
    ]


def test_authorization_server_metadata_in_the_mcp_order() -> None:
    assert authorization_server_metadata_urls("http://127.0.0.1:8/realms/acme") == [
        "http://127.0.0.1:8/.well-known/oauth-authorization-server/realms/acme",
        "http://127.0.0.1:8/.well-known/openid-configuration/realms/acme",
        "http://127.0.0.1:8/realms/acme/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("http://127.0.0.1:8") == [
        "http://127.0.0.1:8/.well-known/oauth-authorization-server",
        "http://127.0.0.1:8/.well-known/openid-configuration",
    ]
