"""What a check is (id, level, where its requirement comes from) and what running it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.certify.evidence import Exchange

Level = Literal["MUST", "SHOULD", "product"]
Status = Literal["SUCCESS", "FAILURE", "WARNING", "SKIPPED"]

MCP_AUTH = "https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization"
MCP_SECURITY = "https://modelcontextprotocol.io/specification/2025-11-25/basic/security_best_practices"
RFC = "https://www.rfc-editor.org/rfc/rfc{number}.html#section-{section}"


@dataclass(frozen=True)
class Reference:
    id: str
    url: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "url": self.url}


def mcp(section: str, anchor: str) -> Reference:
    return Reference(f"MCP 2025-11-25 authorization: {section}", f"{MCP_AUTH}#{anchor}")


def mcp_security(section: str, anchor: str) -> Reference:
    return Reference(f"MCP 2025-11-25 security best practices: {section}", f"{MCP_SECURITY}#{anchor}")


def rfc(number: int, section: str, title: str) -> Reference:
    return Reference(f"RFC {number} §{section} ({title})", RFC.format(number=number, section=section))


@dataclass(frozen=True)
class CheckSpec:
    id: str
    level: Level
    name: str
    description: str
    references: tuple[Reference, ...]


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

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def failed(self) -> bool:
        return self.status in ("FAILURE", "WARNING")
