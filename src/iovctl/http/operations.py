"""Writes the client need not wait for (``?wait=false``): each runs as a task of the
daemon and is kept here, by id, until :data:`KEEP` newer ones pushed it out.

The ids are the daemon's (they do not survive a restart); what the machine was
doing survives in the store's journal, which the next command finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from iovctl.errors import IovctlError
from iovctl.http.errors import error_body, status_of

#: Finished operations remembered.
KEEP = 1000


@dataclass(slots=True)
class Operation:
    id: int
    command: str
    #: running, succeeded or failed.
    state: str = "running"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    #: The HTTP status the write would have answered with (waited for).
    status: int | None = None
    #: Its JSON answer: the view, or ``{"error": ...}``.
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "command": self.command,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "result": self.result,
        }


class Operations:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._ops: OrderedDict[int, Operation] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, command: str, status: int, run: Callable[[], Awaitable[Any]]) -> Operation:
        """Run ``run()`` as a task; its answer (or IovctlError) goes into the record."""
        op = Operation(next(self._ids), command)
        self._ops[op.id] = op

        async def task() -> None:
            try:
                op.result, op.status, op.state = await run(), status, "succeeded"
            except IovctlError as exc:
                op.result, op.status, op.state = error_body(exc), status_of(exc), "failed"
            except Exception as exc:  # a bug: recorded, not lost in the event loop
                bug = IovctlError("internal", f"{type(exc).__name__}: {exc}", "report this bug")
                op.result, op.status, op.state = error_body(bug), 500, "failed"
            finally:
                op.finished = time.time()

        t = asyncio.get_running_loop().create_task(task())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        while len(self._ops) > KEEP:
            oldest = next(iter(self._ops.values()))
            if oldest.finished is None:
                break
            self._ops.popitem(last=False)
        return op

    def find(self, op_id: int) -> Operation | None:
        return self._ops.get(op_id)

    def recent(self) -> list[Operation]:
        return list(self._ops.values())

    async def drain(self) -> None:
        """Wait for every running operation (the daemon's shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
