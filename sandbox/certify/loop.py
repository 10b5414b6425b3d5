"""One event loop in a thread of its own, for every call certify makes to Keycloak and the token endpoints.

Checks run side by side in threads (the waiting ones beside the others); each may ask for an agent, a token or
a key at any time. The admin clients are bound to the loop they were first used on, so every thread hands its
coroutine to this one loop and waits for the result: the calls of different threads run concurrently there.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "certify-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, step: Coroutine[Any, Any, T]) -> T:
        """Run ``step`` on the loop and wait for its result (its exception is raised here)."""
        if threading.current_thread() is self._thread:
            step.close()
            raise RuntimeError("LoopThread.run called from the loop's own thread: await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(step, self._loop).result()

    def close(self) -> None:
        """Stop the loop once what it runs is done, and close it."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every HTTP client certify makes: making one loads the CA bundle, a tenth of a second
    each time, and a run makes a client per check and per token."""
    return ssl.create_default_context()
