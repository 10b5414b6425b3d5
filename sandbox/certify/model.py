"""What a check is (id, level, where its requirement comes from) and what running it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.certify.evidence import Exchange
from sandbox.certify.revision import REVISIONS, Revision

Level = Literal["MUST", "SHOULD", "product"]
Status = Literal["SUCCESS", "FAILURE", "WARNING", "SKIPPED"]

#: A requirement both revisions share is cited in the run's revision (``{revision}`` is filled in by the report).
MCP_AUTH = "https://modelcontextprotocol.io/specification/{revision}/basic/authorization"
MCP_SECURITY = "https://modelcontextprotocol.io/docs/{revision}/tutorials/security/security_best_practices"
RFC = "https://www.rfc-editor.org/rfc/rfc{number}.html#section-{section}"
SPECIFICATION = "https://modelcontextprotocol.io/specification/{revision}/{page}"


@dataclass(frozen=True)
class Reference:
    id: str
    url: str
    #: The revisions whose text has the section on another page: (revision, page).
    moved: tuple[tuple[str, str], ...] = ()

    def at(self, revision: Revision) -> Reference:
        """This reference in ``revision``'s text (one naming its revision already stays as it is)."""
        url = self.url
        for moved_in, page in self.moved:
            if moved_in == revision:
                url = url.replace("basic/authorization#", f"{page}#")
        return Reference(self.id.format(revision=revision), url.format(revision=revision))

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "url": self.url}


#: Sections of 2025-11-25's authorization page that 2026-07-28 moved to pages of their own.
MOVED_IN_2026 = {
    "protected-resource-metadata-discovery-requirements": "basic/authorization/authorization-server-discovery",
    "access-token-privilege-restriction": "basic/authorization/security-considerations",
}


def mcp(section: str, anchor: str) -> Reference:
    """A section of the authorization page, cited in the run's revision."""
    moved = (("2026-07-28", MOVED_IN_2026[anchor]),) if anchor in MOVED_IN_2026 else ()
    return Reference(f"MCP {{revision}} authorization: {section}", f"{MCP_AUTH}#{anchor}", moved)


def mcp_security(section: str, anchor: str) -> Reference:
    return Reference(f"MCP {{revision}} security best practices: {section}", f"{MCP_SECURITY}#{anchor}")


def mcp_at(revision: Revision, page: str, section: str, anchor: str) -> Reference:
    """A section of one revision's specification page (``page``: its path, e.g. ``basic/authorization``)."""
    url = SPECIFICATION.format(revision=revision, page=page)
    return Reference(f"MCP {revision} {page}: {section}", f"{url}#{anchor}")


def rfc(number: int, section: str, title: str) -> Reference:
    return Reference(f"RFC {number} §{section} ({title})", RFC.format(number=number, section=section))


@dataclass(frozen=True)
class CheckSpec:
    id: str
    level: Level
    name: str
    description: str
    references: tuple[Reference, ...]
    revisions: tuple[Revision, ...] = REVISIONS  # the revisions that require it


@dataclass(frozen=True)
class Finding:
    """One expectation of a check and whether the server met it; ``warning`` ones never fail a MUST."""

    expectation: str
    met: bool
    observed: str = ""
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        found = {"expectation": self.expectation, "met": self.met}
        if self.observed:
            found["observed"] = self.observed
        if self.warning:
            found["severity"] = "warning"
        return found


@dataclass
class CheckResult:
    spec: CheckSpec
    status: Status
    timestamp: str
    message: str = ""  # why it failed, warned or was skipped
    findings: list[Finding] = field(default_factory=list)
    evidence: list[Exchange] = field(default_factory=list)
    duration: float = 0.0
    expected_failure: bool = False  # listed in the expected-failures file
    revision: Revision = REVISIONS[-1]  # the MCP revision the run checked
    remarks: list[str] = field(default_factory=list)  # what the result means (what a passing check measured)
    unexamined: list[str] = field(default_factory=list)  # parts of the requirement not examined, and why

    @property
    def partly_examined(self) -> bool:
        return self.status != "SKIPPED" and bool(self.unexamined)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def references(self) -> list[Reference]:
        return [reference.at(self.revision) for reference in self.spec.references]

    @property
    def failed(self) -> bool:
        return self.status in ("FAILURE", "WARNING")
