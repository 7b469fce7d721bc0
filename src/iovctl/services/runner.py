"""Where a service call meets the state store: reads in one snapshot, writes as one
journaled operation each.

Every front end (the CLI today, an HTTP handler later) goes through these two
functions, so a read sees one consistent state and a write leaves the store and
the machine telling one story (services.journal).
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
    """Run a write of :mod:`services.api`. Each runs its change as one journaled
    operation (:mod:`services.journal`: planned and recorded in one transaction, its
    side effects done after, without the lock) and then reads what it shows, once
    the machine has done it. A change refused before any side effect changes nothing."""
    return call(ctx)
