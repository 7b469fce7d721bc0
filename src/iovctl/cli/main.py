"""``iovctl`` entry point: parse, run the command's service, render; and the one place
errors become exit codes (and, under ``-o json``, JSON on stderr).

Imports stay lazy so ``iovctl --version`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from iovctl import __version__
from iovctl.domain.text import shown
from iovctl.errors import IovctlError

if TYPE_CHECKING:
    from iovctl.cli.commands import Command
    from iovctl.services.context import Context

T = TypeVar("T")

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, not a foreseeable failure
EXIT_INTERRUPTED = 130


class Interrupted(IovctlError):
    """Ctrl-C: says whether the command's change was saved before it came."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, committed: bool, started: bool = False, remote: bool = False) -> None:
        if remote:
            super().__init__(
                "interrupted",
                "interrupted; the daemon finishes a change it had started",
                "see the result with the matching list/show command",
            )
        elif committed:
            super().__init__(
                "interrupted",
                "interrupted after the change was saved",
                "see the result with the matching list/show command",
            )
        elif started:
            super().__init__(
                "interrupted",
                "interrupted while the machine was being changed; what is left of it is "
                "recorded",
                "the next iovctl command, or iovctl apply, finishes it",
            )
        else:
            super().__init__(
                "interrupted", "interrupted; nothing was changed", "run the command again"
            )


def __getattr__(name: str) -> Any:
    """``build_parser`` from here too (tests walk the parser), imported on first use so
    ``iovctl --version`` does not build the command table."""
    if name == "build_parser":
        from iovctl.cli.parser import build_parser

        return build_parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``-o json`` was asked for: known before parsing, for parse errors too."""
    for i, a in enumerate(argv):
        if a in ("-o", "--output") and i + 1 < len(argv) and argv[i + 1] == "json":
            return True
        if a in ("-ojson", "--output=json"):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list == ["--version"]:  # fast path: no parser, no services
        print(f"iovctl {__version__}")
        return 0
    as_json = wants_json(args_list)
    try:
        from iovctl.cli.parser import build_parser, command_word

        args = build_parser(command_word(args_list)).parse_args(args_list)
        return run(args)
    except IovctlError as exc:
        print_error(exc, as_json)
        return exc.exit_code
    except KeyboardInterrupt:  # before a command ran (while parsing, importing)
        print_error(Interrupted(committed=False), as_json)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so without a traceback unless asked
        if os.environ.get("IOVCTL_DEBUG"):
            raise
        bug = IovctlError(
            "internal",
            f"{type(exc).__name__}: {exc}",
            "this is a bug in iovctl; rerun with IOVCTL_DEBUG=1 and report the traceback",
        )
        print_error(bug, as_json)
        return EXIT_INTERNAL


def run(args: argparse.Namespace) -> int:
    """Run one parsed command line; raises IovctlError (or Interrupted) on failure."""
    from iovctl.cli.parser import words_of
    from iovctl.cli.table import BY_WORDS

    command = BY_WORDS[words_of(args)]
    args.output = getattr(args, "output", "table")
    connect = connect_url(args)
    if command.main is not None:
        if getattr(args, "connect", None):
            raise IovctlError(
                "not-over-connect",
                f"iovctl {command.name} runs on this machine, not through a daemon",
                f"run it without --connect: iovctl {command.name} ...",
            )
        return command.main(args, main)
    if connect is not None:
        from iovctl.cli.remote import run_remote

        try:
            return run_remote(connect, command, args, show)
        except KeyboardInterrupt:
            raise Interrupted(False, remote=True) from None
    if getattr(args, "follow", False):
        from iovctl.cli.follow import follow_events

        return follow_events(args, execute)
    assert command.call is not None
    call = command.call
    options = {a.dest: getattr(args, a.dest) for a in command.args if a.to_service}

    from iovctl.cli.local import local_options
    from iovctl.services.journal import OperationInterrupted
    from iovctl.wiring import open_context

    committed = False
    local = local_options(args)
    if command.writes and local.state_dir is not None:
        from iovctl.adapters.daemon_lock import single_writer

        single_writer(local.state_dir)
    try:
        ctx = open_context(local)
        try:
            result = execute(ctx, lambda c: call(c, **options), writes=command.writes)
        finally:
            ctx.close()
        committed = command.writes
        show(command, args, result)
    except OperationInterrupted:
        raise Interrupted(committed, started=True) from None
    except KeyboardInterrupt:
        raise Interrupted(committed) from None
    return 0


def connect_url(args: argparse.Namespace) -> str | None:
    """The daemon to run a command through: ``--connect``, else ``IOVCTL_CONNECT``.
    ``--connect`` with ``--state-dir``/``--sim``/``--emulate``/``--runtime``/
    ``--libvirt-uri`` is refused: the state is the daemon's."""
    from iovctl.cli.local import LOCAL_STATE_OPTIONS

    flag = getattr(args, "connect", None)
    if flag is not None:
        for option in LOCAL_STATE_OPTIONS:
            if getattr(args, option, None) is not None:
                from iovctl.domain.validation import conflicting

                raise conflicting(
                    "--connect",
                    f"--{option.replace('_', '-')}",
                    "the daemon's state, or a local one",
                )
        return str(flag)
    if any(getattr(args, o, None) is not None for o in LOCAL_STATE_OPTIONS):
        return None  # a local state named on the command line wins over the environment
    return os.environ.get("IOVCTL_CONNECT") or None


def execute(ctx: Context, call: Callable[[Context], T], *, writes: bool) -> T:
    """The one place the CLI runs a service: in a store transaction (writes) or a
    read snapshot (reads), through services.runner."""
    from iovctl.services.runner import run_read, run_write

    return run_write(ctx, call) if writes else run_read(ctx, call)


def show(command: Command, args: argparse.Namespace, result: Any) -> None:
    """Print a command's result: JSON under ``-o json``, else its renderer."""
    from iovctl.cli import render
    from iovctl.services.views import to_json

    if command.writer is not None:
        command.writer(result, args)
        return
    data = to_json(result)  # renderers read the JSON form: one shape to show
    if args.output == "json":
        render.as_json(data)
    else:
        assert command.render is not None
        command.render(data)


def print_error(exc: IovctlError, as_json: bool) -> None:
    if as_json:
        sys.stderr.write(json.dumps({"error": exc.to_dict()}) + "\n")
        return
    # Messages repeat what the user gave: never raw escapes, never 10,000 characters.
    print(shown(str(exc), 400), file=sys.stderr)
    if exc.hint:
        print(f"hint: {shown(exc.hint, 1000)}", file=sys.stderr)
