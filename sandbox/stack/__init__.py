"""Runtimes that bring the sandbox's components up and down, and the state they leave behind."""

from __future__ import annotations

from sandbox.stack.component import Component, ProcessComponent
from sandbox.stack.launcher import Stack, default_components
from sandbox.stack.state import ComponentState, StackState, load_state

__all__ = [
    "Component",
    "ComponentState",
    "ProcessComponent",
    "Stack",
    "StackState",
    "default_components",
    "load_state",
]
