"""The argument parser, generated from the command table (:mod:`iovctl.cli.commands`).

Parse errors are ``InvalidInput`` (``error[usage]``), numbers are read as an admin
writes them (:func:`iovctl.domain.validation.parse_integer`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from iovctl import __version__
from iovctl.cli.commands import INT, Command
from iovctl.cli.table import COMMANDS, GROUPS
from iovctl.domain.text import shown
from iovctl.domain.validation import parse_integer
from iovctl.errors import InvalidInput

PROG = "iovctl"
DESCRIPTION = "SR-IOV network I/O virtualization for Linux/KVM hosts, the Hyper-V way."


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse repeats the offending argument as typed: escapes and all.
        raise InvalidInput(
            "usage", f"{self.prog}: {shown(message, 500)}", f"see: {self.prog} --help"
        )


def _integer(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        return parse_integer(flag, text)

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def _output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="output format (json is a stable contract)",
    )


#: Global options that take a value (the command word is found without parsing).
GLOBAL_WITH_VALUE = frozenset(
    {
        "--sim",
        "--emulate",
        "--state-dir",
        "--runtime",
        "--libvirt-uri",
        "--connect",
        "-o",
        "--output",
    }
)


def command_word(argv: list[str]) -> str | None:
    """The command word, so only its parser is built; None (build all) when unsure."""
    if any(a in ("-h", "--help") for a in argv):
        return None
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in GLOBAL_WITH_VALUE:
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def _add_command(p: argparse.ArgumentParser, command: Command) -> None:
    for a in command.args:
        options: dict[str, Any] = dict(a.options)
        if options.get("type") == INT:
            options["type"] = _integer(next((f for f in a.flags if f.startswith("-")), a.dest))
        exclusive = [g for g in command.exclusive if set(a.flags) & set(g)]
        target: Any = p
        if command.one_of and set(a.flags) & set(command.one_of):
            target = _group(p, command.one_of, required=True)
        elif exclusive:
            target = _group(p, exclusive[0], required=False)
        target.add_argument(*a.flags, **options)


def _group(p: argparse.ArgumentParser, flags: tuple[str, ...], *, required: bool) -> Any:
    groups: dict[tuple[str, ...], Any] = p.__dict__.setdefault("_iovctl_groups", {})
    if flags not in groups:
        groups[flags] = p.add_mutually_exclusive_group(required=required)
    return groups[flags]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` set just that command's sub-tree (fast start:
    building every sub-parser costs ~25 ms)."""
    common = Parser(add_help=False)
    _output_option(common)
    parser = Parser(prog=PROG, description=DESCRIPTION, parents=[common])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--sim",
        metavar="SPEC",
        help="simulated host: demo, igb, no-iommu, bios-off or a YAML path (env IOVCTL_SIM)",
    )
    parser.add_argument(
        "--emulate",
        metavar="SPEC",
        help="emulated SR-IOV host of kernel devices (root): veb, vepa, isolated, trio or a "
        "YAML path (env IOVCTL_EMULATE)",
    )
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (env IOVCTL_STATE_DIR)")
    parser.add_argument(
        "--runtime",
        metavar="RUNTIME",
        help="where VMs run: netns (network namespaces), libvirt (domains) or sim; fixed "
        "when a state directory is first used (env IOVCTL_RUNTIME)",
    )
    parser.add_argument(
        "--libvirt-uri",
        metavar="URI",
        help="libvirt connection of --runtime libvirt, like virsh -c; default "
        "qemu:///system, fixed with the runtime (env IOVCTL_LIBVIRT_URI)",
    )
    parser.add_argument(
        "--connect",
        metavar="URL",
        help="run the command through a daemon: unix:///run/iovctl/iovctl.sock or "
        "https://HOST:PORT (env IOVCTL_CONNECT)",
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    verbs: dict[str, argparse._SubParsersAction[Parser]] = {}
    for command in COMMANDS:
        word = command.words[0]
        parents = [common] if command.output else []
        if only is not None and only != word:
            if word not in verbs and word not in sub.choices:
                sub.add_parser(word, help=GROUPS.get(word, command.help))
            continue
        if len(command.words) == 1:
            if word in GROUPS:  # a group that is a command itself: `iovctl host`
                p = sub.add_parser(
                    word, help=command.help, description=command.help, parents=parents
                )
                _add_command(p, command)
                verbs[word] = p.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
            else:
                p = sub.add_parser(
                    word, help=command.help, description=command.help, parents=parents
                )
                _add_command(p, command)
            continue
        if word not in verbs:
            g = sub.add_parser(word, help=GROUPS[word], description=GROUPS[word], parents=[common])
            verbs[word] = g.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
            verbs[word].required = True
        p = verbs[word].add_parser(
            command.words[1], help=command.help, description=command.help, parents=parents
        )
        _add_command(p, command)
    return parser


def words_of(args: argparse.Namespace) -> tuple[str, ...]:
    verb = getattr(args, "verb", None)
    return (args.group,) if verb is None else (args.group, verb)
