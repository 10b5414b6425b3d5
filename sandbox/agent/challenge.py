"""``WWW-Authenticate`` challenges (RFC 9110 §11.6.1, RFC 6750 §3): scheme and parameters, quoted strings and all.

A header may hold several challenges (``Bearer realm="a", Basic realm="b"``) and several headers may be sent;
:func:`bearer_challenge` finds the Bearer one. Parameter names are case-insensitive; values keep their case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})(?=\s|,|$)")
#: An unquoted value should be a token; read leniently up to the next comma or space (``scope=files:read``).
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^\s,\"]+))\s*")
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9._~+/-]+=*)\s*(?=,|$)")


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def scopes(self) -> list[str]:
        return (self.get("scope") or "").split()


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in one header value; an unreadable remainder ends the list (what was read is kept)."""
    found: list[Challenge] = []
    position = 0
    while position < len(header):
        while position < len(header) and header[position] in ", \t":
            position += 1
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            break
        position = scheme.end()
        params: dict[str, str] = {}
        token68 = _TOKEN68.match(header, position)
        if token68 is not None and not _PARAM.match(header, position):
            params[""] = token68.group(1)
            position = token68.end()
        while True:
            param = _PARAM.match(header, position)
            if param is None:
                break
            value = param.group(2)
            params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            position = param.end()
            if position < len(header) and header[position] == ",":
                position += 1
                if _SCHEME.match(header, position) and not _PARAM.match(header, position):
                    break  # the next challenge starts here
            else:
                break
        found.append(Challenge(scheme.group(1), params))
    return found


def bearer_challenge(response: httpx.Response) -> Challenge | None:
    """The response's Bearer challenge, if it sends one (scheme names are case-insensitive)."""
    for header in response.headers.get_list("www-authenticate"):
        for challenge in parse_challenges(header):
            if challenge.scheme.lower() == "bearer":
                return challenge
    return None
