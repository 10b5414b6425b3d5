"""The revocation list on disk: a restarted server still refuses what it was told to refuse.

One JSON object a line (issuer, client id, subject, revoked_at), appended and flushed to disk before the
event that carried it is acknowledged. Loading drops the entries no token can outlive any more and rewrites
the file with the rest, so it never grows past what the list itself holds.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from sandbox.mcp_server.revocations import Revocation

log = logging.getLogger(__name__)


class RevocationJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, horizon: float) -> list[Revocation]:
        """The entries revoked at or after ``horizon``; the file is rewritten with just those."""
        if not self.path.exists():
            return []
        kept: list[Revocation] = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                revocation = Revocation(**json.loads(line))
            except (ValueError, TypeError):
                log.warning("unreadable revocation journal line skipped", extra={"line": number})  # a torn write
                continue
            if revocation.revoked_at >= horizon:
                kept.append(revocation)
        draft = self.path.with_suffix(".tmp")
        self._write(draft, kept, mode="w")
        os.replace(draft, self.path)
        return kept

    def append(self, revocation: Revocation) -> None:
        self._write(self.path, [revocation], mode="a")

    def _write(self, path: Path, revocations: list[Revocation], *, mode: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC), 0o600)
        with os.fdopen(descriptor, mode) as out:
            out.writelines(json.dumps(asdict(r), sort_keys=True) + "\n" for r in revocations)
            out.flush()
            os.fsync(out.fileno())
