"""Readable at 80 columns (issue 9, item 6): every table the CLI draws, rendered at
COLUMNS=80, has no line wider than 80 and never splits a MAC, a PCI address or a
name across lines; columns give way by priority (short headers, then dropped, said
in a note), free text wraps at spaces.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from rich.cells import cell_len

from helpers import run_in_process
from iovctl.cli import render

#: Extra objects on the populated host: longer names than the defaults, a second
#: NIC, a busier adapter (names as admins write them; the maximum length has its own
#: test below).
VM = "web-frontend-prod-01"
SWITCH = "tenant-network-blue"
SETUP: tuple[tuple[str, ...], ...] = (
    ("switch", "create", SWITCH, "--uplink", "ens2f0", "--iov"),
    ("adapter", "enable", "ens2f0", "--num-vfs", "4"),
    ("vm", "create", VM),
    ("nic", "add", VM, "--switch", SWITCH, "--iov-weight", "70", "--name", "uplink-a"),
    ("nic", "add", VM, "--switch", "plain", "--name", "mgmt"),
    ("vm", "start", VM),
    ("vm", "start", "vm2"),
)

#: Every command that draws a table (or more), on that host.
RUNS: tuple[tuple[str, ...], ...] = (
    ("host",),
    ("adapter", "list"),
    ("adapter", "show", "enp1s0"),
    ("adapter", "show", "ens2f0"),
    ("vf", "list"),
    ("switch", "list"),
    ("switch", "show", SWITCH),
    ("vm", "list"),
    ("vm", "show", VM),
    ("nic", "list"),
    ("nic", "show", "vm1", "nic0"),
    ("events",),
    ("host", "power-cycle"),
    ("apply", "--dry-run"),
)

_TOKEN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$|^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def tokens_of(doc: Any) -> Iterator[str]:
    """MACs, PCI addresses and names in a command's JSON: what must never be split."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if isinstance(value, str) and (
                _TOKEN.match(value)
                or key in ("name", "vm", "switch", "uplink", "adapter", "object_name", "code")
            ):
                yield value
            yield from tokens_of(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from tokens_of(item)


def split_tokens(lines: list[str], tokens: set[str]) -> list[str]:
    """Tokens that a table cell wraps onto its next line: in no single line, but in
    a cell's text joined with the same column's text on the line below."""
    found = []
    for upper, lower in itertools.pairwise(lines):
        up, low = re.split(r"[│┃]", upper), re.split(r"[│┃]", lower)
        if len(up) != len(low):
            continue
        for a, b in zip(up, low, strict=True):
            joined = a.strip() + b.strip()
            found += [t for t in tokens if t in joined and t not in a and t not in b]
    return found


@pytest.fixture
def at_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def test_every_table_fits_80_columns_without_splitting_a_token(populated, at_80, monkeypatch):
    for command in SETUP:
        assert populated.run(*command).code == 0, command
    drawn: set[str] = set()
    original = render._table

    def recording(*args: Any, **kwargs: Any) -> None:
        drawn.add(inspect.stack()[1].function)
        original(*args, **kwargs)

    monkeypatch.setattr(render, "_table", recording)
    base = ["--state-dir", str(populated.state_dir)]
    for command in RUNS:
        table = run_in_process([*base, *command])
        assert table.code == 0, (command, table.err)
        lines = table.out.splitlines()
        wide = [line for line in lines if cell_len(line) > 80]
        assert not wide, (command, wide)
        if command[0] in ("host", "apply") and len(command) > 1:
            continue  # changes state: its JSON would describe the next state
        data = json.loads(run_in_process([*base, *command, "-o", "json"]).out)
        tokens = set(tokens_of(data))
        assert tokens, command
        assert not split_tokens(lines, tokens), (command, table.out)
    # Every renderer that draws a table was drawn.
    renderers = {
        name
        for name, fn in inspect.getmembers(render, inspect.isfunction)
        if name != "_table" and "_table(" in inspect.getsource(fn)
    }
    assert renderers <= drawn, renderers - drawn


def test_the_columns_that_identify_stay_whole(populated, at_80):
    for command in SETUP:
        populated.run(*command)
    base = ["--state-dir", str(populated.state_dir)]
    nics = json.loads(run_in_process([*base, "nic", "list", "-o", "json"]).out)
    out = run_in_process([*base, "nic", "list"]).out
    for nic in nics:
        assert nic["mac"] in out and nic["vm"] in out and nic["name"] in out
    vfs = json.loads(run_in_process([*base, "vf", "list", "-o", "json"]).out)
    out = run_in_process([*base, "vf", "list"]).out
    for vf in vfs:
        assert vf["pci_address"] in out and vf["mac"] in out
    assert "not shown at 80 columns" in out  # and it says what it left out


def _render(cols: list[render.Col], rows: list[list[Any]], width: int) -> str:
    from rich.text import Text

    cells = [[Text(str(v)) for v in row] for row in rows]
    keep, headers, widths = render._layout(cols, cells, width)
    return f"{keep} {headers} {widths}"


def test_layout_gives_way_in_order_wrap_then_short_headers_then_drop():
    cols = [
        render.Col("name", 10),
        render.Col("description", 5, text=True),
        render.Col("long_header_name", 3, short="lh"),
        render.Col("extra", 1),
    ]
    row = ["alpha", "words that can wrap anywhere between them", "x", "0000:01:00.0"]
    # Wide: everything as is.
    assert (
        _render(cols, [row], 200)
        == "[0, 1, 2, 3] ['name', 'description', 'long_header_name', 'extra'] [5, 41, 16, 12]"
    )
    # Narrower: the text wraps first (down to its longest word, "description").
    assert _render(cols, [row], 60).startswith(
        "[0, 1, 2, 3] ['name', 'description', 'long_header_name', 'extra']"
    )
    # Then the short header.
    assert _render(cols, [row], 50).startswith(
        "[0, 1, 2, 3] ['name', 'description', 'lh', 'extra']"
    )
    # Then the lowest priority column goes.
    assert _render(cols, [row], 35).startswith("[0, 1, 2] ['name', 'description', 'lh']")


def test_markup_in_data_is_shown_literally(capsys):
    render.note("written to /tmp/[/x] and [bold]not bold[/]")
    out = capsys.readouterr().out
    assert "/tmp/[/x]" in out and "[bold]not bold[/]" in out


def test_control_characters_in_data_are_escaped(capsys):
    render.vms([{"name": "evil\x1b[2J", "state": "off", "nic_count": 0, "vfs_in_use": 0}])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out


def test_names_of_the_maximum_length_stay_whole_within_80_columns(cli, at_80):
    """64 characters (the longest name) in a name column: the column keeps the whole
    name and lower-priority columns give way; no line passes 80."""
    vm, nic = "v" + "x" * 63, "n" + "y" * 63
    cli.ok("switch", "create", "ext", "--uplink", "enp1s0")
    cli.ok("vm", "create", vm)
    cli.ok("nic", "add", vm, "--switch", "ext", "--name", nic)
    for command in (("vm", "list"), ("nic", "list"), ("vm", "show", vm), ("events",)):
        out = cli.run(*command).out
        assert all(cell_len(line) <= 80 for line in out.splitlines()), (command, out)
        assert vm in out, (command, out)
