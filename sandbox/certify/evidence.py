"""Evidence of a check: each HTTP exchange, with every token reduced to its header and claims.

A token certify sent is never written anywhere in full: ``Authorization`` headers and query parameters become
the token's (unverified) header and claims, and any known token, or its signature, found in a URL or a body
is replaced by ``[token]``. What is left also passes through the log redaction of :mod:`sandbox.log`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from sandbox.certify.forge import unverified
from sandbox.log import redact

REQUEST_HEADERS = ("content-type", "mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "origin", "host")
RESPONSE_HEADERS = ("www-authenticate", "content-type", "mcp-session-id", "retry-after", "location", "allow")
BODY_EXCERPT = 600


def describe_token(value: str) -> dict[str, Any]:
    """What evidence shows of a token: its header and claims, or only its length when it is not a JWS."""
    parts = unverified(value)
    if parts is None:
        return {"opaque": f"{len(value)} characters"}
    header, claims = parts
    return {"header": header, "claims": claims}


@dataclass
class KnownTokens:
    """Every token certify obtained or forged: what must never appear in evidence, logs or upstream traffic."""

    _values: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # checks add side by side

    def add(self, token: str) -> str:
        signature = token.rsplit(".", 1)[-1]
        with self._lock:
            self._values.add(token)
            if len(signature) >= 16:
                self._values.add(signature)
        return token

    def _known(self) -> list[str]:
        with self._lock:
            return list(self._values)

    def found_in(self, text: str) -> bool:
        return any(value in text for value in self._known())

    def scrub(self, text: str) -> str:
        for value in sorted(self._known(), key=len, reverse=True):
            if value in text:
                text = text.replace(value, "[token]")
        return text


@dataclass
class Exchange:
    """One request and its response, as evidence."""

    request: dict[str, Any]
    response: dict[str, Any]
    label: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**({"label": self.label} if self.label else {}), "request": self.request, "response": self.response}


def exchange_of(response: httpx.Response, known: KnownTokens) -> Exchange:
    request = response.request
    shown: dict[str, Any] = {"method": request.method, "url": _url(str(request.url), known)}
    headers = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    authorizations = request.headers.get_list("authorization")
    if authorizations:
        shown["authorization"] = [_authorization(value) for value in authorizations]
    proofs = request.headers.get_list("dpop")
    if proofs:  # DPoP proofs (RFC 9449), shown like tokens: header and claims, never whole
        shown["dpop"] = [describe_token(value.strip()) for value in proofs]
    query_tokens = [v for k, v in parse_qsl(urlsplit(str(request.url)).query) if k == "access_token"]
    if query_tokens:
        shown["query_access_token"] = [describe_token(value) for value in query_tokens]
    if headers:
        shown["headers"] = headers
    if request.content:
        shown["body"] = _body(request.content, request.headers.get("content-type", ""), known)
    answer: dict[str, Any] = {"status": response.status_code}
    kept = {name: response.headers[name] for name in RESPONSE_HEADERS if name in response.headers}
    if kept:  # challenges say "Bearer error=…": known tokens are scrubbed, the log's bearer rule would mangle them
        answer["headers"] = {name: known.scrub(value) for name, value in kept.items()}
    if response.content:
        answer["body"] = redact(_body(response.content, response.headers.get("content-type", ""), known))
    return Exchange(redact(shown), answer)


def _authorization(value: str) -> dict[str, Any]:
    scheme, _, credentials = value.strip().partition(" ")
    return {"scheme": scheme, "token": describe_token(credentials.strip())} if credentials else {"scheme": scheme}


def _url(url: str, known: KnownTokens) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, "[token]" if k == "access_token" else known.scrub(v)) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="[]")))


def _body(content: bytes, content_type: str, known: KnownTokens) -> Any:
    text = known.scrub(content.decode("utf-8", errors="replace"))
    if content_type.startswith("application/json") and len(text) <= 4 * BODY_EXCERPT:
        try:
            return json.loads(text)
        except ValueError:
            pass
    if content_type.startswith("application/x-www-form-urlencoded"):
        return urlencode([(k, "[token]" if k == "access_token" else v) for k, v in parse_qsl(text)], safe="[]")
    return text if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT] + f"… ({len(text)} characters)"
