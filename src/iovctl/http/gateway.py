"""Where HTTP handlers meet the services: one context per call, off the event loop.

The services are synchronous and a write may wait for the machine (a VF count
change, a hot-plug), so every call runs in a worker thread; the event loop keeps
answering reads, metrics and event streams meanwhile. Reads run in one store
snapshot, writes as journaled operations, exactly as the CLI runs them
(:mod:`iovctl.services.runner`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TypeVar

import anyio
import anyio.to_thread

from iovctl.http.operations import Operations
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.services.runner import run_read, run_write
from iovctl.services.views import EventView
from iovctl.wiring import Options, open_context

T = TypeVar("T")

#: Seconds between two looks at the event log for changes made outside this daemon
#: (a CLI with --state-dir, a boot unit); the daemon's own writes wake followers at once.
POLL_SECONDS = 0.2
#: Writes run at once, at most. They serialize on SQLite's write lock anyway; more of
#: them only wait in its busy handler, whose back-off sleeps made the write p99 of 50
#: clients seconds long (benchmarks/bench_api_load.py). Operations on different
#: objects still overlap their side effects (services.journal).
WRITERS = 4


class Gateway:
    """The daemon's way into the services for one host (its state directory)."""

    def __init__(self, options: Options, writers: int = WRITERS) -> None:
        self.options = options
        self._bound = options
        self._writer_slots = writers
        self._writer_limiter: anyio.CapacityLimiter | None = None
        self._closing = False
        self._changed = anyio.Event()
        #: Writes answered with 202 (``?wait=false``), by id.
        self.operations = Operations()

    @property
    def bound_options(self) -> Options:
        """The options a context of this daemon opens with (threads of its own)."""
        return self._bound

    def call(self, call: Callable[[Context], T], *, writes: bool) -> T:
        """Run ``call`` now, in this thread (CLI-equivalent; tests, threads)."""
        ctx = open_context(self._bound)
        # Once the state directory holds its host, the spec named by --sim/--emulate
        # is not read again: it is what the directory was checked against at the first
        # call (re-parsing a 16-PF spec cost ~25 ms a request).
        self._bound = replace(self.options, sim=None, emulate=None)
        try:
            return run_write(ctx, call) if writes else run_read(ctx, call)
        finally:
            ctx.close()

    def end_follows(self) -> None:
        """The daemon is stopping: every :meth:`follow_events` ends, so event streams
        finish their responses instead of being cut by the server's shutdown."""
        self._closing = True
        self._changed.set()

    @property
    def _writers(self) -> anyio.CapacityLimiter:
        # Made on first use: a limiter belongs to the event loop that runs the daemon.
        if self._writer_limiter is None:
            self._writer_limiter = anyio.CapacityLimiter(self._writer_slots)
        return self._writer_limiter

    async def read(self, call: Callable[[Context], T]) -> T:
        """A read of :mod:`services.api`, in a worker thread."""
        return await anyio.to_thread.run_sync(lambda: self.call(call, writes=False))

    async def write(self, call: Callable[[Context], T]) -> T:
        """A write of :mod:`services.api`, in a worker thread. The operation goes on to
        its end if the client goes away: the thread is not cancelled."""
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.call(call, writes=True),
                abandon_on_cancel=False,
                limiter=self._writers,
            )
        finally:
            self._changed.set()
            self._changed = anyio.Event()

    async def follow_events(self, since: int = 0) -> AsyncIterator[list[EventView]]:
        """Batches of events after ``since``, oldest first, as they are committed; runs
        until the consumer stops iterating or the daemon stops (:meth:`end_follows`).
        Server-sent events and the console's live feed are built on this."""

        def poll(ctx: Context) -> tuple[list[EventView], int]:
            return api.events(ctx, None, since), api.newest_event(ctx)

        while not self._closing:
            batch, newest = await self.read(poll)
            if batch:
                yield batch
            since = max(since, newest)
            with anyio.move_on_after(POLL_SECONDS):
                await self._changed.wait()
