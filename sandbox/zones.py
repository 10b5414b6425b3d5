"""Network zones on loopback: a zone is one source address of 127.0.0.0/8 (such as 127.0.0.2) a client calls from.

Keycloak refuses an agent's token request from outside the agent's zone (the sandbox's client policy executor),
and the agent's tokens carry the zone in the claim ``ZONE_CLAIM``, so a resource server refuses its calls from
elsewhere too.
"""

from __future__ import annotations

import ipaddress

#: The access-token claim with the agent's zone (an IPv4 loopback address).
ZONE_CLAIM = "sandbox_zone"


def zone_address_problem(value: str) -> str | None:
    """Why ``value`` cannot be a zone (None when it can): a zone is one IPv4 address of 127.0.0.0/8."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address; a zone is an address of 127.0.0.0/8, such as 127.0.0.2"
    if address.version != 4 or not address.is_loopback:
        return f"{value!r} is not in 127.0.0.0/8; zones stay on loopback (such as 127.0.0.2)"
    return None


def same_address(first: str | None, second: str | None) -> bool:
    """Compare two source addresses (an IPv4-mapped IPv6 form counts as its IPv4 address)."""
    if not first or not second:
        return False
    try:
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(second)
    except ValueError:
        return False
    a = a.ipv4_mapped or a if a.version == 6 else a
    b = b.ipv4_mapped or b if b.version == 6 else b
    return a == b
