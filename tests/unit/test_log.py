import io
import json
import logging

from sandbox.log import configure_logging, redact

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLWJ5dGVz"


def test_secret_keys_are_masked_at_any_depth() -> None:
    cleaned = redact({"client_secret": "s3cr3t", "nested": {"password": "pw", "access_token": "x"}, "name": "ok"})
    assert cleaned == {
        "client_secret": "[redacted]",
        "nested": {"password": "[redacted]", "access_token": "[redacted]"},
        "name": "ok",
    }


def test_urls_named_like_endpoints_are_kept() -> None:
    assert redact({"token_endpoint": "http://127.0.0.1/t"}) == {"token_endpoint": "http://127.0.0.1/t"}


def test_tokens_inside_free_text_are_cut() -> None:
    text = redact(f"sending Authorization: Bearer {TOKEN} now, also {TOKEN}")
    assert TOKEN not in text and "[redacted]" in text


def test_log_lines_are_json_and_carry_extra_fields_without_secrets(monkeypatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    configure_logging(stream=stream)
    logging.getLogger("t").info("provisioned", extra={"agent": "a1", "client_secret": "s3cr3t"})
    entry = json.loads(stream.getvalue())
    assert entry["event"] == "provisioned" and entry["agent"] == "a1" and entry["level"] == "info"
    assert "s3cr3t" not in stream.getvalue()


def test_a_challenge_keeps_its_parameters_and_loses_only_credentials() -> None:
    challenge = (
        'Bearer error="insufficient_scope", scope="mcp:tool:invoices.write", resource_metadata="http://127.0.0.1/m"'
    )
    assert redact({"www-authenticate": challenge}) == {"www-authenticate": challenge}
    assert redact("Bearer error=invalid_token") == "Bearer error=invalid_token"
    for credential in ("dGVzdA==", "opaque-token.value", "abc=def"):
        assert redact(f"Authorization: Bearer {credential}") == "Authorization: Bearer [redacted]"
