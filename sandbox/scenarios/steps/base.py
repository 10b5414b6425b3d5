"""What every step's arguments share: strict fields and a one-line summary for reports."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class StepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields that name something the scenario declares, and the section that declares it.
    references: ClassVar[dict[str, str]] = {"agent": "agents", "by": "admins", "server": "servers", "user": "users"}

    def summary(self) -> str:
        parts = [str(getattr(self, name)) for name in ("agent", "tool", "role") if getattr(self, name, None)]
        expect = getattr(self, "expect", None)
        if expect is not None:
            parts.append(f"expect {expect}")
        return " ".join(parts)
