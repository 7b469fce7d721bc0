"""``iovctl events --follow``: print new events as they are committed, until Ctrl-C.

Each poll is one read snapshot through the same service as ``iovctl events``
(:func:`iovctl.services.api.events`), with the same filters. Tables would repeat
their header each poll, so people get one line per event; ``-o json`` gets one
JSON object per line (JSON Lines). Ctrl-C (SIGINT) or SIGTERM ends it with exit 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Seconds between two looks at the store (a read snapshot costs well under 1 ms).
POLL_SECONDS = 0.2


class _Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def event_line(e: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
    return (
        f"{e['seq']:>6}  {stamp}  {e['level']:<7}  {e['code']}  {e['object_name']}: {e['message']}"
    )


def follow_events(args: argparse.Namespace, execute: Callable[..., Any]) -> int:
    """Poll until SIGINT/SIGTERM; ``execute(ctx, call, writes=False)`` runs each poll
    (``cli.main.execute``: the CLI's one way into the store)."""
    from iovctl.cli.local import local_options
    from iovctl.services import api
    from iovctl.services.views import to_json
    from iovctl.wiring import open_context

    ctx = open_context(local_options(args))
    filters = {"level": args.level, "kind": args.kind, "object_name": args.object_name}
    since = args.since
    limit = args.limit

    def poll(c: Any) -> tuple[list[dict[str, Any]], int]:
        # One snapshot: the newest seq is read with the batch, so nothing committed
        # between the two is skipped (filters skip events: go on after the newest).
        return to_json(api.events(c, limit, since, **filters)), api.newest_event(c)

    # Installed, not inherited: a shell without job control starts background jobs
    # with SIGINT ignored, and Ctrl-C / kill -INT must still end the follow.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            batch, newest = execute(ctx, poll, writes=False)
            for e in batch:
                out = json.dumps(e) if args.output == "json" else event_line(e)
                sys.stdout.write(out + "\n")
            if batch:
                sys.stdout.flush()
            since, limit = max(since, newest), None
            time.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ctx.close()
