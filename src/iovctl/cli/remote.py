"""A command run through the daemon (``--connect``): the same options, the same
output, the same errors and exit codes as on the state directory itself.

The request is made by :class:`iovctl.http.client.Client`; what comes back is the
JSON ``-o json`` prints, which is what the renderers read anyway.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from types import FrameType

from iovctl.cli.commands import Command


class _Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def run_remote(
    url: str, command: Command, args: argparse.Namespace, show: Callable[..., None]
) -> int:
    """Run ``command`` through the daemon at ``url``; ``show`` prints its result
    (``cli.main.show``). Ctrl-C raises KeyboardInterrupt: the daemon carries on."""
    try:
        from iovctl.http.client import Client
    except ImportError as exc:
        from iovctl.errors import StateError

        raise StateError(
            "client-missing",
            f"--connect needs httpx: {exc}",
            "pip install 'iovctl[daemon]', or leave out --connect / IOVCTL_CONNECT",
        ) from exc

    options = {a.dest: getattr(args, a.dest) for a in command.args if a.to_service}
    client = Client(url)
    try:
        if getattr(args, "follow", False):
            return _follow(client, args)
        show(command, args, client.run(command, options))
        return 0
    finally:
        client.close()


def _follow(client: object, args: argparse.Namespace) -> int:
    """``events --follow``: the events the filters pick, then new ones as they come."""
    from iovctl.cli.commands import BY_WORDS
    from iovctl.cli.follow import event_line
    from iovctl.http.client import Client

    assert isinstance(client, Client)
    filters = {"level": args.level, "kind": args.kind, "object_name": args.object_name}
    command = BY_WORDS[("events",)]

    def put(e: dict[str, object]) -> None:
        sys.stdout.write((json.dumps(e) if args.output == "json" else event_line(e)) + "\n")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        since = args.since
        first = client.run(command, {"limit": args.limit, "since": since, **filters})
        for e in first:
            put(e)
            since = max(since, int(e["seq"]))
        sys.stdout.flush()
        for e in client.events(since, filters):
            put(e)
            sys.stdout.flush()
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
