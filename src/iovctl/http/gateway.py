"""Where HTTP handlers meet the services: one context per call, off the event loop.

The services are synchronous and a write may wait for the machine (a VF count
change, a hot-plug), so every call runs in a worker thread; the event loop keeps
answering reads, metrics and event streams meanwhile. Reads run in one store
snapshot, writes as journaled operations, exactly as the CLI runs them
(:mod:`iovctl.services.runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread

from iovctl.services.context import Context
from iovctl.services.runner import run_read, run_write
from iovctl.wiring import Options, open_context

T = TypeVar("T")


class Gateway:
    """The daemon's way into the services for one host (its state directory)."""

    def __init__(self, options: Options) -> None:
        self.options = options

    def call(self, call: Callable[[Context], T], *, writes: bool) -> T:
        """Run ``call`` now, in this thread (CLI-equivalent; tests, threads)."""
        ctx = open_context(self.options)
        try:
            return run_write(ctx, call) if writes else run_read(ctx, call)
        finally:
            ctx.store.close()

    async def read(self, call: Callable[[Context], T]) -> T:
        """A read of :mod:`services.api`, in a worker thread."""
        return await anyio.to_thread.run_sync(lambda: self.call(call, writes=False))

    async def write(self, call: Callable[[Context], T]) -> T:
        """A write of :mod:`services.api`, in a worker thread. The operation goes on to
        its end if the client goes away: the thread is not cancelled."""
        return await anyio.to_thread.run_sync(
            lambda: self.call(call, writes=True), abandon_on_cancel=False
        )
