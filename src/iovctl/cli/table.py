"""Every command of ``iovctl``: the state's (:mod:`iovctl.cli.commands`) and the
management plane's (:mod:`iovctl.cli.daemon`), for the parser, ``main`` and the
generated man page and completion."""

from __future__ import annotations

from iovctl.cli import commands, daemon
from iovctl.cli.commands import Command

COMMANDS: tuple[Command, ...] = commands.COMMANDS + daemon.COMMANDS
GROUPS: dict[str, str] = {**commands.GROUPS, **daemon.GROUPS}
BY_WORDS: dict[tuple[str, ...], Command] = {c.words: c for c in COMMANDS}
