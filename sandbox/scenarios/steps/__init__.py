"""The step library. Importing this package registers every step (see :mod:`sandbox.scenarios.library`)."""

from sandbox.scenarios.steps import agents, checks, lifecycle, load, tools  # noqa: F401

__all__: list[str] = []
