"""Exit 70 is unreachable from input (issue 9, item 4).

Hypothesis drives every command and option of the CLI, enumerated from the argparse
parser (a new command or option is covered without touching this file), in-process
through ``iovctl.cli.main.main`` with generated arguments, host spec files and state
directories. For every run: no exit 70, no traceback, no terminal escape in the
output, and a rejected command leaves the state exactly as it was (the SQL dump of
the store, or a fresh directory absent or merely bound to its host).

Bounded for CI: ``IOVCTL_FUZZ_EXAMPLES`` (default 200) examples, no deadline.

Commands that touch host-global state are driven only where they are sure to be
refused before acting: ``cleanup`` (removes every iov-* namespace of the machine),
``bench`` (root, namespaces, minutes) and ``demo`` (a full tour) always get an
argument that is refused; ``--emulate`` only names specs that are refused (a valid
one builds kernel devices); ``install-service`` writes under the sandbox, never
enabling; and a fresh state directory always comes with ``--sim`` so the real
Linux backend is never bound.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import sql_dump
from iovctl.cli.main import EXIT_INTERNAL, build_parser, main

EXAMPLES = int(os.environ.get("IOVCTL_FUZZ_EXAMPLES", "200"))
SPEC_DIR = Path(__file__).parents[2] / "src" / "iovctl" / "adapters" / "sim" / "specs"

#: Names that exist on the populated host, so generated commands reach the services.
KNOWN = ("vm1", "vm2", "nic0", "ext", "plain", "enp1s0", "eno1", "ens2f0", "demo", "igb")

#: (command path) -> why it gets a forced, refused argument.
GUARDED = {
    ("cleanup",): "removes host-global kernel objects",
    ("bench", "datapath"): "root, namespaces, minutes",
    ("demo",): "a whole tour per example",
}


# -- the parser, walked ---------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    options: tuple[argparse.Action, ...]
    positionals: tuple[argparse.Action, ...]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Command]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    plain = [
        a
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
    ]
    if path and (not subs or not subs[0].required):
        yield Command(
            path,
            tuple(a for a in plain if a.option_strings),
            tuple(a for a in plain if not a.option_strings),
        )
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _commands(child, (*path, name))


PARSER = build_parser()
COMMANDS = sorted(_commands(PARSER), key=lambda c: c.path)
GLOBAL_OPTIONS = tuple(
    a
    for a in PARSER._actions
    if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
)


def test_the_parser_walk_finds_every_command() -> None:
    paths = {c.path for c in COMMANDS}
    assert {("vm", "create"), ("nic", "set"), ("host",), ("host", "snapshot"), ("events",)} <= paths
    assert len(paths) >= 25
    assert {"sim", "state_dir", "emulate"} <= {a.dest for a in GLOBAL_OPTIONS}


# -- generated values ---------------------------------------------------------------------

_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24
)
_junk = st.one_of(
    _text,
    st.sampled_from(["", " ", "-", "--", "-x", "\x1b[2J", "\u202e", "..", "/", "a/b", "%s"]),
    st.just("x" * 10_000),
)
_numbers = st.one_of(
    st.integers(-3, 5000).map(str),
    st.sampled_from(["1_0", "+5", " 5", "５", "0x10", "1e3", "9" * 40, "-0", "nan", ""]),
)


@dataclass(frozen=True)
class Sandbox:
    """One example's directory: state dirs, spec files, output paths all live here."""

    root: Path

    @property
    def populated(self) -> Path:
        return self.root / "populated"


def _path_choice(kind: str) -> st.SearchStrategy[str]:
    """A path relative to the sandbox, as a token resolved at run time."""
    names = {
        "file": [
            "out.yaml",
            "a-dir",
            "missing/out.yaml",
            "a-file/out.yaml",
            "x" * 300,
            "",
            "[/x]",  # rich markup in a path a note repeats
        ],
        "dir": ["units", "a-dir", "a-file", "used", "missing/deeper", ""],
        "state": ["populated", "fresh/state", "a-file", "foreign", "", "populated/iovctl.db"],
    }[kind]
    return st.sampled_from(names).map(lambda n: f"@SANDBOX@/{n}" if n else "")


def _spec_doc() -> st.SearchStrategy[Any]:
    base = yaml.safe_load((SPEC_DIR / "igb.yaml").read_text())

    def mutate(changes: list[tuple[str, Any]]) -> Any:
        doc = yaml.safe_load(yaml.safe_dump(base))
        adapter = doc["adapters"][0]
        for key, value in changes:
            target = adapter["sriov"] if key in adapter["sriov"] else adapter
            if key in ("name", "description"):
                target = doc
            target[key] = value
        return doc

    keys = st.sampled_from(
        ["name", "description", "total_vfs", "queue_pairs", "vf_stride", "vf_offset",
         "link_speed_mbps", "max_queue_pairs_per_vf", "model", "pci_address", "mac", "driver"]
    )  # fmt: skip
    values = st.one_of(
        st.integers(-2, 70000),
        st.sampled_from([None, True, 10**100, 0, 1.5, [], {}, "\x1b]0;x\x07"]),
        _text,
    )
    return st.lists(st.tuples(keys, values), max_size=3).map(mutate)


_spec_files = st.one_of(
    _spec_doc().map(lambda d: ("yaml", yaml.safe_dump(d, allow_unicode=True).encode())),
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    st.sampled_from(
        [
            ("raw", b"name: x\nname: y\n"),
            ("raw", b"a: &a [*a]\n"),
            ("raw", b"[" * 5000),
            ("raw", b"name: \xff\n"),
        ]
    ),
)
_sim = st.one_of(
    st.sampled_from(["demo", "igb", "no-iommu", "bios-off", "nope", "@SANDBOX@/a-dir"]),
    _spec_files.map(lambda f: f"@SPEC@{f[0]}:{f[1].hex()}"),
)
#: Always refused: "adapters: 0" is no list, whatever follows (duplicates included).
_emulate = st.one_of(
    st.sampled_from(["nope", "@SANDBOX@/a-dir", ""]),
    st.binary(max_size=100).map(lambda b: f"@SPEC@raw:{(b'adapters: 0' + bytes([10]) + b).hex()}"),
)


def _mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``good`` nine times in ten: most runs get past the parser to the services."""
    # Not n == 0: Hypothesis favours small integers, so 0 would come far more often.
    return st.integers(0, 9).flatmap(lambda n: bad if n == 7 else good)


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    if action.dest == "sim":
        return _sim
    if action.dest == "emulate":
        return _emulate
    if action.dest == "state_dir":
        return _mostly(st.just("@SANDBOX@/populated"), _path_choice("state"))
    if action.metavar == "FILE":
        return _path_choice("file")
    if action.metavar == "DIR":
        return _path_choice("dir")
    if action.choices:
        return _mostly(st.sampled_from(sorted(map(str, action.choices))), _junk)
    if action.type is int:
        return _mostly(st.integers(-3, 5000).map(str), st.one_of(_numbers, _junk))
    return _mostly(st.sampled_from(KNOWN), _junk)


def _option_args(action: argparse.Action) -> st.SearchStrategy[list[str]]:
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:
        return flag.map(lambda f: [f])
    return st.tuples(flag, _value(action)).map(list)


def _required(command: Command) -> list[argparse.Action]:
    """Options the command cannot run without: required ones, and one of each
    required mutually exclusive group (``switch set --iov|--no-iov``)."""
    parser = PARSER
    for word in command.path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    required = [a for a in command.options if a.required]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            required.append(group._group_actions[0])
    return required


@st.composite
def invocations(draw: st.DrawFn) -> tuple[Command, list[str]]:
    command = draw(st.sampled_from(COMMANDS))
    argv: list[str] = []
    for action in GLOBAL_OPTIONS:
        if action.dest == "emulate" and draw(st.integers(0, 19)) != 7:
            continue
        if action.dest == "state_dir" or draw(st.integers(0, 3)) == 2:
            argv += draw(_option_args(action))
    argv += list(command.path)
    for action in command.positionals:
        if draw(st.integers(0, 19)) != 7:  # sometimes missing
            argv.append(draw(_value(action)))
    # ``events --follow`` runs until interrupted (tests/cli/test_cli_events_follow.py).
    options = [a for a in command.options if a.dest != "follow"]
    chosen = draw(st.lists(st.sampled_from(options), max_size=4)) if options else []
    for action in [*_required(command), *chosen]:
        argv += draw(_option_args(action))
    if draw(st.integers(0, 19)) == 7:
        argv.append(draw(_junk))  # one argument too many
    return command, argv


# -- running one ------------------------------------------------------------------------


@contextlib.contextmanager
def sandbox(template: Path) -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory(prefix="iovctl-fuzz-") as scratch:
        box = Sandbox(Path(scratch))
        shutil.copytree(template, box.populated)
        (box.root / "a-dir").mkdir()
        (box.root / "[").mkdir()
        (box.root / "a-file").write_text("not a directory\n")
        (box.root / "used").mkdir()
        (box.root / "used" / "notes").write_text("mine\n")
        (box.root / "foreign").mkdir()
        conn = sqlite3.connect(box.root / "foreign" / "iovctl.db")
        conn.execute("CREATE TABLE photos (name TEXT)")
        conn.commit()
        conn.close()
        yield box


def _resolve(box: Sandbox, argv: list[str], command: Command) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg.startswith("@SPEC@"):
            _kind, _, data = arg.removeprefix("@SPEC@").partition(":")
            spec = box.root / f"spec-{i}.yaml"
            spec.write_bytes(bytes.fromhex(data))
            arg = str(spec)
        out.append(arg.replace("@SANDBOX@", str(box.root)))
    if command.path in (("cleanup",), ("daemon",)):
        out.append("--refused-by-the-parser")  # host-global, or serves until stopped
    elif command.path == ("bench", "datapath"):
        out += ["--json", str(box.root / "a-dir")]
    elif command.path == ("demo",):
        out += ["--keep", str(box.root / "used")]
    elif command.path == ("install-service",):
        out += ["--no-enable"]
        if "--unit-dir" not in out:
            out += ["--unit-dir", str(box.root / "units")]
    return out


def _state_dir_of(argv: list[str]) -> str | None:
    value = None
    for i, arg in enumerate(argv[:-1]):
        if arg == "--state-dir":
            value = argv[i + 1]
    for arg in argv:
        if arg.startswith("--state-dir="):
            value = arg.partition("=")[2]
    return value


def _guard_backend(box: Sandbox, argv: list[str]) -> list[str]:
    """Never the user's state directory, never the real Linux host: a run without
    ``--state-dir`` gets a fresh one, and a fresh one gets ``--sim demo``."""
    state_arg = _state_dir_of(argv)
    if state_arg is None:
        state_arg = str(box.root / "fresh" / "state")
        argv = ["--state-dir", state_arg, *argv]
    try:
        fresh = not (Path(state_arg) / "iovctl.db").exists()
    except (OSError, ValueError):
        fresh = True
    if fresh and not any(a == "--sim" or a.startswith("--sim=") for a in argv):
        argv = ["--sim", "demo", *argv]
    return argv


def _dump(state_dir: Path) -> str | None:
    try:
        if not (state_dir / "iovctl.db").is_file():
            return None
        return sql_dump(state_dir)
    except (OSError, ValueError, sqlite3.Error):
        return None


def _user_rows(state_dir: Path) -> int:
    """Rows a user made (switches, VMs, NICs, events, VF counts) in a store."""
    conn = sqlite3.connect(state_dir / "iovctl.db")
    try:
        return sum(
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("switch", "vm", "nic", "event", "adapter_config")
        )
    finally:
        conn.close()


def _json_output(argv: list[str]) -> bool:
    from iovctl.cli.main import wants_json

    return wants_json(argv)


def _run(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help: argparse exits 0
            code = exc.code if isinstance(exc.code, int) else 0
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(invocation=invocations())
def test_no_input_reaches_exit_70(
    populated_template: tuple[Path, dict[str, str]], invocation: tuple[Command, list[str]]
) -> None:
    command, raw = invocation
    with sandbox(populated_template[0]) as box:
        argv = _guard_backend(box, _resolve(box, raw, command))
        state_arg = _state_dir_of(argv)
        state_dir = Path(state_arg) if state_arg and state_arg.strip() else None
        before = _dump(state_dir) if state_dir else None
        code, out, err = _run(argv, box.root)
        event(f"exit {code}: {err.partition(']')[0].removeprefix('error[') if code else 'ok'}")
        shown = f"argv={argv!r}\nexit={code}\nstderr={err[-2000:]}"
        assert code != EXIT_INTERNAL, shown
        assert "Traceback" not in out + err, shown
        assert "error[internal]" not in err, shown
        assert "\x1b" not in out + err and "\x9b" not in out + err, shown
        if code == 0 or state_dir is None:
            return
        if _json_output(argv):
            assert set(json.loads(err)["error"]) == {"code", "message", "hint"}, shown
        else:
            assert err.startswith("error[") and "\nhint: " in err, shown
        if before is not None:
            assert _dump(state_dir) == before, shown
        elif _dump(state_dir) is not None:  # a fresh directory: at most bound to its host
            assert _user_rows(state_dir) == 0, shown
