"""Structured logging: one JSON object per line, with secrets redacted before anything is written."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

#: Keys whose values are never written, whatever the logger was given.
SECRET_KEYS = re.compile(
    r"(^|[_-])(secret|password|token|assertion|private_key|credential|authorization|otp|totp|jwk|key)s?$",
    re.I,
)
#: Values that look like a JWT (three base64url parts) or a bearer header are cut to their first characters.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
#: A bearer credential, not an auth-param: `Bearer error="insufficient_scope", scope="..."` keeps its parameters.
_BEARER = re.compile(
    r"(?i)(bearer\s+)(?![a-z_]+\s*=\s*\"|(?:realm|scope|error|error_description|error_uri|resource_metadata)\s*=)"
    r"[^\s\"',]+"
)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(value: Any, key: str = "") -> Any:
    """Return ``value`` with secret-looking keys masked and tokens in strings shortened."""
    if key and SECRET_KEYS.search(key) and not isinstance(value, dict | list | bool | int | float | type(None)):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _BEARER.sub(r"\1[redacted]", _JWT.sub("[jwt redacted]", value))
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(redact(entry), default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
