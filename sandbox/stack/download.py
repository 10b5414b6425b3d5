"""One download of a file the stack needs (a Keycloak zip, a Go toolchain): streamed to a part file, renamed when whole.

A failed download leaves nothing behind (no part file, no target), so the next attempt starts clean.
"""

from __future__ import annotations

from pathlib import Path

import httpx


def download(url: str, target: Path, *, timeout: float) -> None:
    """Fetch ``url`` into ``target``; raises :class:`httpx.HTTPError` (for the caller to word) and keeps no part."""
    partial = target.with_suffix(".part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(target)
