"""Generates what is committed from the command table and the views, so it cannot drift:

- ``docs/schema/iovctl-v1.json``: the JSON Schema of every command's ``-o json`` output
- ``share/man/man8/iovctl.8``: the ``iovctl(8)`` man page, from the parser
- ``share/bash-completion/completions/iovctl``: bash completion, from the parser

``python -m iovctl.cli.generate [ROOT]`` writes them under ROOT (default: the current
directory); ``--check`` only says which are out of date (exit 1). Tests hold the
committed files to what this writes.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iovctl import __version__
from iovctl.cli.parser import DESCRIPTION, PROG, build_parser
from iovctl.cli.table import COMMANDS, GROUPS
from iovctl.errors import EXIT_CODES
from iovctl.services import schema, views

SCHEMA_PATH = Path("docs/schema/iovctl-v1.json")
MAN_PATH = Path("share/man/man8/iovctl.8")
COMPLETION_PATH = Path("share/bash-completion/completions/iovctl")

# -- schema ----------------------------------------------------------------------------


def outputs() -> dict[str, Any]:
    """Command line -> the type its ``-o json`` prints."""
    out: dict[str, Any] = {}
    for command in COMMANDS:
        if command.call is not None:
            out[command.name] = typing.get_type_hints(command.call)["return"]
        elif command.returns is not None:
            out[command.name] = command.returns
    out["events --follow"] = views.EventView  # one JSON object a line
    return out


def schema_text() -> str:
    doc = schema.document(outputs(), f"{PROG} -o json output")
    return json.dumps(doc, indent=2) + "\n"


# -- the parser, walked ---------------------------------------------------------------


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in p._actions
        if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))
    ]


def walk(
    p: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command words, parser), the root first."""
    yield words, p
    sub = _subparsers(p)
    if sub is not None:
        for name, child in sub.choices.items():
            yield from walk(child, (*words, name))


def _helps(p: argparse.ArgumentParser) -> dict[str, str]:
    sub = _subparsers(p)
    if sub is None:
        return {}
    return {a.dest: a.help or "" for a in sub._choices_actions}


def _takes_value(a: argparse.Action) -> bool:
    return a.nargs != 0


# -- man page ---------------------------------------------------------------------------


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _synopsis_of(a: argparse.Action) -> str:
    """One option in a synopsis, unbreakable (``\\ ``) so lines wrap between options."""
    if not a.option_strings:
        name = f"\\fI{_roff(str(a.metavar or a.dest))}\\fR"
        return f"[{name}]" if a.nargs == "?" else name
    flag = "\\fB" + _roff(max(a.option_strings, key=len)) + "\\fR"
    if _takes_value(a):
        flag += f"\\ \\fI{_roff(_metavar(a))}\\fR"
    return flag if a.required else f"[{flag}]"


def _metavar(a: argparse.Action) -> str:
    if a.metavar:
        return str(a.metavar)
    if a.choices:
        return "{" + ",".join(map(str, a.choices)) + "}"
    return a.dest.upper()


def _option_item(a: argparse.Action) -> list[str]:
    names = ", ".join(f"\\fB{_roff(o)}\\fR" for o in a.option_strings) or (
        f"\\fI{_roff(str(a.metavar or a.dest))}\\fR"
    )
    if a.option_strings and _takes_value(a):
        names += f" \\fI{_roff(_metavar(a))}\\fR"
    text = a.help or ""
    if a.choices and a.option_strings and a.metavar:
        text += f" (one of: {', '.join(map(str, a.choices))})"
    if a.default not in (None, False, argparse.SUPPRESS) and a.option_strings and _takes_value(a):
        text += f" (default: {a.default})"
    return [".TP", names, _roff(text)]


def man_text() -> str:
    parser = build_parser()
    details = {c.words: c.details for c in COMMANDS}
    out = [
        f'.TH IOVCTL 8 "" "{PROG} {__version__}" "System Administration"',
        ".ad l",  # ragged right, no hyphenation: options and names stay whole
        ".nh",
        ".SH NAME",
        f"{PROG} \\- {_roff(DESCRIPTION)}",
        ".SH SYNOPSIS",
        f".B {PROG}",
        "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIVERB\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(
            "iovctl gives a Linux/KVM host SR-IOV the way Hyper-V does: readiness that "
            "explains itself, SR-IOV adapters and their virtual functions (VFs), virtual "
            "switches with a VF pool, VM network adapters that get a VF by IOV weight or "
            "stay on the software path with a visible reason, and an event log."
        ),
        ".PP",
        _roff(
            "Every command runs in one transaction of the state store. With -o json, "
            "results (and errors, on standard error) are JSON; keys are added, never "
            "renamed or removed (docs/schema/iovctl-v1.json)."
        ),
        ".SH GLOBAL OPTIONS",
    ]
    for a in _options(parser):
        out += _option_item(a)
    out.append(".SH COMMANDS")
    helps = _helps(parser)
    for words, p in walk(parser):
        if not words:
            continue
        opts = [a for a in _options(p) if a.dest != "output"]
        if len(words) == 1 and words[0] in GROUPS and words not in details:
            out += [f'.SS "{PROG} {words[0]}"', _roff(GROUPS[words[0]])]
            continue
        synopsis = " ".join(_synopsis_of(a) for a in opts)
        out.append(f'.SS "{PROG} {_roff(" ".join(words))}"')
        if synopsis:
            out += [f"\\fB{PROG} {_roff(' '.join(words))}\\fR {synopsis}", ".PP"]
        help_ = helps.get(words[0], "") if len(words) == 1 else _helps_of(parser, words)
        out.append(_roff(help_))
        if details.get(words):
            out += [".PP", _roff(details[words])]
        for a in opts:
            out += _option_item(a)
    out += [".SH EXIT STATUS", ".TP", "0", "success"]
    families = {
        "InvalidInput": "invalid input: a malformed or out-of-range value, a usage error",
        "NotFound": "not found: an unknown adapter, switch, VM or NIC",
        "Conflict": "conflict: a duplicate, VFs in use, IOV fixed at creation, ...",
        "HardwareError": "the kernel, the driver or the simulated device refused",
        "StateError": "the state store is busy, unusable or written by a newer iovctl",
    }
    for family, text in families.items():
        out += [".TP", str(EXIT_CODES[family]), _roff(text)]
    out += [".TP", "70", _roff("a bug in iovctl (rerun with IOVCTL_DEBUG=1)")]
    out += [".TP", "130", _roff("interrupted (the message says whether the change was saved)")]
    out += [
        ".PP",
        _roff(
            "Errors are printed as error[CODE]: MESSAGE and hint: WHAT TO DO on standard "
            'error; with -o json as {"error": {"code", "message", "hint"}}.'
        ),
        ".SH ENVIRONMENT",
        ".TP",
        ".B IOVCTL_STATE_DIR",
        _roff("the state directory when --state-dir is not given"),
        ".TP",
        ".B IOVCTL_SIM",
        _roff("a simulated host spec, as --sim"),
        ".TP",
        ".B IOVCTL_EMULATE",
        _roff("an emulated SR-IOV host, as --emulate"),
        ".TP",
        ".B IOVCTL_DEBUG",
        _roff("set: show the traceback of an internal error"),
        ".SH FILES",
        ".TP",
        ".I /var/lib/iovctl/iovctl.db",
        _roff("the state store of root (~/.local/state/iovctl for other users)"),
        ".TP",
        ".I /etc/systemd/system/iovctl\\-apply.service",
        _roff("the boot unit that runs iovctl apply (iovctl install-service)"),
        ".SH SEE ALSO",
        ".BR ip (8),",
        ".BR lspci (8),",
        ".BR systemd.unit (5)",
    ]
    return "\n".join(out) + "\n"


def _helps_of(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> str:
    p = parser
    for word in words[:-1]:
        sub = _subparsers(p)
        assert sub is not None
        p = sub.choices[word]
    return _helps(p).get(words[-1], "")


# -- bash completion -----------------------------------------------------------------------


def _words(items: list[str]) -> str:
    return " ".join(sorted(items))


#: Values completed with the names of existing objects, by metavar.
NAMED = {"VM": "vm", "NIC": "nic", "SWITCH": "switch", "ADAPTER": "adapter"}

#: Reads the names of existing objects with iovctl itself (``-o json``), from the state
#: directory the command line names (or the default one); never creates one.
_NAMES_HELPER = r"""_iovctl_names() {  # KIND STATE_DIR [VM]
    local dir="${2/#\~/$HOME}"
    if [[ -z $dir ]]; then
        if [[ -n $IOVCTL_STATE_DIR ]]; then dir=$IOVCTL_STATE_DIR
        elif (( EUID == 0 )); then dir=/var/lib/iovctl
        else dir="${XDG_STATE_HOME:-$HOME/.local/state}/iovctl"; fi
    fi
    [[ -e $dir/iovctl.db ]] || return 0
    local -a list=("$1" list)
    [[ $1 == nic ]] && list+=("$3")
    command iovctl --state-dir "$dir" "${list[@]}" -o json 2>/dev/null |
        grep -o '"name": "[^"]*"' | sed 's/^"name": "//; s/"$//'
}"""


def completion_text() -> str:
    parser = build_parser()
    with_value: dict[str, list[str] | None] = {}
    named_options: dict[str, str] = {}
    table: dict[str, list[str]] = {}
    positionals: dict[str, list[str | None]] = {}
    for words, p in walk(parser):
        sub = _subparsers(p)
        flags = [o for a in _options(p) for o in a.option_strings]
        table[" ".join(words)] = flags + (list(sub.choices) if sub is not None else [])
        positionals[" ".join(words)] = [
            NAMED.get(str(a.metavar)) for a in _options(p) if not a.option_strings
        ]
        for a in _options(p):
            if a.option_strings and _takes_value(a):
                choices = [str(c) for c in a.choices] if a.choices else None
                for o in a.option_strings:
                    if o in with_value and with_value[o] != choices:
                        raise ValueError(f"option {o} takes different values in two commands")
                    with_value[o] = choices
                    if str(a.metavar) in NAMED:
                        named_options[o] = NAMED[str(a.metavar)]
    files = {"--file", "--json", "--keep", "--state-dir", "--unit-dir"}
    sims = "demo igb no-iommu bios-off"
    emulations = "veb vepa isolated trio"
    lines = [
        "# bash completion for iovctl(8)",
        "# Generated by `python -m iovctl.cli.generate` from the parser: do not edit.",
        _NAMES_HELPER,
        "",
        "_iovctl() {",
        "    local cur prev i w next path='' dir=''",
        "    local -a pos=()",
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev=""',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    # The command words typed so far, and the arguments after them.",
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        '        w="${COMP_WORDS[i]}"',
        '        case "$w" in',
        '            --state-dir) dir="${COMP_WORDS[i+1]}"; (( i++ )); continue ;;',
        f"            {'|'.join(sorted(set(with_value) - {'--state-dir'}))}) (( i++ )); continue ;;",
        "            -*) continue ;;",
        "        esac",
        "        next=''",
        '        case "$path" in',
    ]
    for path, entries in sorted(table.items()):
        subs = [e for e in entries if not e.startswith("-")]
        if subs:
            lines.append(f'            "{path}") next=" {_words(subs)} " ;;')
    lines += [
        "        esac",
        '        if (( ${#pos[@]} == 0 )) && [[ $next == *" $w "* ]]; then path="${path:+$path }$w"',
        '        else pos+=("$w"); fi',
        "    done",
        '    case "$prev" in',
    ]
    for option, choices in sorted(with_value.items()):
        if option == "--sim":
            reply = f'COMPREPLY=( $(compgen -W "{sims}" -- "$cur") $(compgen -f -- "$cur") )'
        elif option == "--emulate":
            reply = f'COMPREPLY=( $(compgen -W "{emulations}" -- "$cur") $(compgen -f -- "$cur") )'
        elif choices:
            reply = f'COMPREPLY=( $(compgen -W "{_words(choices)}" -- "$cur") )'
        elif option in files:
            reply = 'COMPREPLY=( $(compgen -f -- "$cur") )'
        elif option in named_options:
            kind = named_options[option]
            reply = f'COMPREPLY=( $(compgen -W "$(_iovctl_names {kind} "$dir")" -- "$cur") )'
        else:
            reply = "COMPREPLY=()"
        lines.append(f"        {option}) {reply}; return ;;")
    lines += ["    esac"]
    slots = [
        (f"{path}:{i}", kind)
        for path, kinds in sorted(positionals.items())
        for i, kind in enumerate(kinds)
        if kind is not None
    ]
    if slots:
        lines += [
            "    # An existing object's name where the command wants one.",
            "    if [[ $cur != -* ]]; then",
            '        case "$path:${#pos[@]}" in',
        ]
        for kind in sorted({k for _, k in slots}):
            keys = "|".join(f'"{slot}"' for slot, k in slots if k == kind)
            lines.append(
                f'            {keys}) COMPREPLY=( $(compgen -W "$(_iovctl_names {kind} "$dir" '
                f'"${{pos[0]-}}")" -- "$cur") ); return ;;'
            )
        lines += ["        esac", "    fi"]
    lines += ['    case "$path" in']
    for path, entries in sorted(table.items()):
        lines.append(
            f'        "{path}") COMPREPLY=( $(compgen -W "{_words(entries)}" -- "$cur") ) ;;'
        )
    lines += [
        "        *) COMPREPLY=() ;;",
        "    esac",
        "}",
        "complete -F _iovctl iovctl",
    ]
    return "\n".join(lines) + "\n"


# -- writing -------------------------------------------------------------------------------


def artifacts() -> dict[Path, str]:
    return {SCHEMA_PATH: schema_text(), MAN_PATH: man_text(), COMPLETION_PATH: completion_text()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m iovctl.cli.generate", description=__doc__)
    p.add_argument("root", nargs="?", default=".", help="the repository (default: .)")
    p.add_argument("--check", action="store_true", help="only report what is out of date")
    a = p.parse_args(argv)
    stale = []
    for path, text in artifacts().items():
        target = Path(a.root) / path
        if target.is_file() and target.read_text() == text:
            continue
        stale.append(str(path))
        if not a.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    verb = "out of date" if a.check else "written"
    for name in stale:
        print(f"{name}: {verb}")
    return 1 if stale and a.check else 0


if __name__ == "__main__":
    sys.exit(main())
