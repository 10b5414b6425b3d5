"""Errors a user can cause or fix: each names what went wrong and what to do, in one line."""

from __future__ import annotations


class SandboxError(Exception):
    """A failure with a cause and a fix, rendered as one line: ``<cause>; <fix>``."""

    def __init__(self, cause: str, fix: str) -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}; {fix}")


class PortInUse(SandboxError):
    pass


class JavaNotFound(SandboxError):
    pass


class GoNotFound(SandboxError):
    pass


class DistributionError(SandboxError):
    pass


class StartupFailed(SandboxError):
    pass
