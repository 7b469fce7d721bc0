"""Where a service call meets the state store: the one place a command's service runs
inside a transaction (writes) or a snapshot (reads).

Every front end (the CLI today, an HTTP handler later) goes through these two
functions, so a call sees one consistent state and a write commits all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from iovctl.services.context import Context

T = TypeVar("T")


def run_read(ctx: Context, call: Callable[[Context], T]) -> T:
    """Run ``call`` in one read snapshot of the store; it must not write."""
    with ctx.store.snapshot():
        return call(ctx)


def run_write(ctx: Context, call: Callable[[Context], T]) -> T:
    """Run ``call`` in one store transaction: committed when it returns, rolled back
    (store and, through the services' own undo, the host) when it raises."""
    with ctx.store.transaction():
        return call(ctx)
