"""The MCP client config an agent is given: its servers in the common ``mcpServers`` shape, each with what the
client needs to get a token for it (OAuth client credentials) and where the agent's credential is read from.

The broker writes it (``POST /tenants/{tenant}/agents/{id}/mcp-config``); the SDK loader
(:func:`sandbox.agent.sdk.provider_from_config`) and the CLI's host formats read it. It names the credential by
environment variable or file path and never holds the secret or the private key, so it can be committed,
shared and shown. Field names on the wire are the camelCase ones MCP hosts use.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sandbox.errors import SandboxError


class _Document(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    def document(self) -> dict[str, Any]:
        """The JSON object as written: camelCase names, and no field that is not set."""
        return self.model_dump(by_alias=True, exclude_none=True)


class CredentialSource(_Document):
    """Where the client reads the agent's credential: an environment variable, or a file."""

    type: Literal["client_secret", "private_key_jwt"]
    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> CredentialSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("a credential source names exactly one of env and file")
        return self


class ServerAuth(_Document):
    """How to get a token for one server: the issuer, its token endpoint, the agent's client and scopes."""

    type: Literal["oauth2_client_credentials"] = "oauth2_client_credentials"
    issuer: str
    token_endpoint: str = Field(alias="tokenEndpoint")
    client_id: str = Field(alias="clientId")
    scope: str
    resource: str = Field(description="The server, as an RFC 8707 resource indicator.")
    audience: str | None = Field(
        None, description="Set when the issuer grants aud on audience= instead of resource= (Ory Hydra)."
    )
    credential: CredentialSource


class ServerEntry(_Document):
    type: Literal["http"] = "http"
    url: str
    allowed_tools: list[str] = Field(alias="allowedTools")
    auth: ServerAuth


class AgentName(_Document):
    name: str
    client_id: str = Field(alias="clientId")


class McpClientConfig(_Document):
    mcp_servers: dict[str, ServerEntry] = Field(alias="mcpServers")
    agent: AgentName

    @classmethod
    def read(cls, data: object, where: str) -> McpClientConfig:
        """A config from JSON already parsed; a wrong one is one line naming its first problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(part) for part in first["loc"]) or "the top level"
            raise SandboxError(
                f"{where} is not an MCP client config ({at}: {first['msg']})",
                "generate it again with `mcp-sandbox agents config`",
            ) from None

    def server(self, url: str | None) -> tuple[str, ServerEntry]:
        """The entry (and its key) of the server at ``url``, or the first one; ValueError when it has none."""
        for key, entry in self.mcp_servers.items():
            if url is None or entry.url == url:
                return key, entry
        known = ", ".join(entry.url for entry in self.mcp_servers.values()) or "none"
        raise ValueError(f"the agent may not call {url} (its servers: {known})")
