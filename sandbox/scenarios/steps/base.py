"""What every step's arguments share: strict fields and a one-line summary for reports."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class StepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields that name something the scenario declares, and the section that declares it.
    references: ClassVar[dict[str, str]] = {"agent": "agents", "by": "admins", "server": "servers", "user": "users"}

    def summary(self) -> str:
        """Who and what, every argument given a value other than its default (so two steps read apart), the
        expectation."""
        named = ("agent", "tool", "role")
        parts = [str(getattr(self, name)) for name in named if getattr(self, name, None)]
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name in (*named, "expect") or value is None or value == field.default:
                continue
            parts.append(f"{name}={_compact(value)}")
        expect = getattr(self, "expect", None)
        if expect is not None:
            parts.append(f"expect {expect}")
        return " ".join(parts)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        text = ",".join(f"{key}={_compact(item)}" for key, item in value.items())
    elif isinstance(value, list | tuple):
        text = ",".join(map(_compact, value))
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
