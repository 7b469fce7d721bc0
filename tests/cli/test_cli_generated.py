"""What is generated from the command table and the views, and committed (issue 9,
items 2 and 7): the JSON Schema of ``-o json`` and its rename test, the ``iovctl(8)``
man page (rendered by man), and bash completion (driven in bash)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from helpers import clean_env, state_dump
from iovctl.cli import generate
from iovctl.services.schema import breaking_changes

ROOT = Path(__file__).resolve().parents[2]


def _committed_schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / generate.SCHEMA_PATH).read_text())
    return doc


@pytest.mark.parametrize("path", sorted(generate.artifacts(), key=str), ids=str)
def test_the_committed_file_is_what_the_generator_writes(path):
    committed = (ROOT / path).read_text()
    assert committed == generate.artifacts()[path], (
        f"{path} is out of date: run python -m iovctl.cli.generate"
    )


# -- schema --------------------------------------------------------------------------


def test_no_key_of_the_committed_schema_is_renamed_or_removed():
    current = json.loads(generate.schema_text())
    assert breaking_changes(_committed_schema(), current) == []


def _def(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["$defs"][name]
    return found


def test_the_rename_check_catches_a_rename_a_removal_and_a_narrowing_but_not_an_addition():
    old = _committed_schema()
    renamed = copy.deepcopy(old)
    props = _def(renamed, "NicView")["properties"]
    props["iov_weight_renamed"] = props.pop("iov_weight")
    assert breaking_changes(old, renamed) == [
        "nic add.iov_weight: removed or renamed",
        "nic list[].iov_weight: removed or renamed",
        "nic set.iov_weight: removed or renamed",
        "nic show.iov_weight: removed or renamed",
        "vm import.network_adapters[].iov_weight: removed or renamed",
        "vm show.network_adapters[].iov_weight: removed or renamed",
        "vm start.network_adapters[].iov_weight: removed or renamed",
        "vm stop.network_adapters[].iov_weight: removed or renamed",
    ]
    nested = copy.deepcopy(old)  # a key of one alternative of a list of unions
    del _def(nested, "VfSettingsView")["properties"]["trust"]
    assert breaking_changes(old, nested) == [
        "apply.changes[]|1.from.trust: removed or renamed",
        "apply.changes[]|1.to.trust: removed or renamed",
    ]
    narrowed = copy.deepcopy(old)
    _def(narrowed, "NicView")["properties"]["vlan"] = {"type": "integer"}  # was nullable
    assert "nic show.vlan: type ['integer', 'null'] narrowed to ['integer']" in breaking_changes(
        old, narrowed
    )
    gone = copy.deepcopy(old)
    del gone["x-iovctl-outputs"]["vm list"]
    assert breaking_changes(old, gone) == ["vm list: output removed"]

    added = copy.deepcopy(old)
    _def(added, "NicView")["properties"]["new_key"] = {"type": "string"}
    _def(added, "NicView")["properties"]["vlan"] = {"type": ["integer", "null", "string"]}
    assert breaking_changes(old, added) == []


def _conforms(value: Any, node: dict[str, Any], doc: dict[str, Any], path: str = "") -> list[str]:
    """A small JSON Schema check (the subset the generator writes), exact on keys."""
    while "$ref" in node:
        node = doc["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        if any(not _conforms(value, n, doc, path) for n in node["anyOf"]):
            return []
        return [f"{path}: matches no alternative"]
    if "const" in node:
        return [] if value == node["const"] else [f"{path}: {value!r} != {node['const']!r}"]
    kinds = node.get("type")
    if kinds is not None:
        names = {
            "string": str,
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "null": type(None),
            "object": dict,
            "array": list,
        }
        allowed = kinds if isinstance(kinds, list) else [kinds]
        ok = any(
            isinstance(value, names[k])
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in allowed
        )
        if not ok:
            return [f"{path}: {value!r} is not {allowed}"]
    problems = []
    if "properties" in node:
        if set(value) != set(node["properties"]):
            problems.append(f"{path}: keys {sorted(set(value) ^ set(node['properties']))} differ")
        for key, child in node["properties"].items():
            if key in value:
                problems += _conforms(value[key], child, doc, f"{path}.{key}")
    if "items" in node:
        for i, item in enumerate(value):
            problems += _conforms(item, node["items"], doc, f"{path}[{i}]")
    return problems


def test_every_command_prints_what_the_schema_says(populated):
    """The committed schema against real output: every key, no more, no fewer."""
    doc = _committed_schema()
    outputs = doc["x-iovctl-outputs"]
    populated.ok(
        "nic",
        "set",
        "vm1",
        "nic0",
        "--pvlan",
        "isolated",
        "--primary-vlan",
        "100",
        "--secondary-vlan",
        "101",
    )
    runs = {
        "host": ("host",),
        "adapter list": ("adapter", "list"),
        "adapter show": ("adapter", "show", "enp1s0"),
        "vf list": ("vf", "list"),
        "switch list": ("switch", "list"),
        "switch show": ("switch", "show", "ext"),
        "vm list": ("vm", "list"),
        "vm show": ("vm", "show", "vm1"),
        "nic list": ("nic", "list"),
        "nic show": ("nic", "show", "vm1", "nic0"),
        "events": ("events",),
        "host power-cycle": ("host", "power-cycle"),
        "apply": ("apply",),
        "vm create": ("vm", "create", "vm3"),
        "vm start": ("vm", "start", "vm2"),
        "vm stop": ("vm", "stop", "vm2"),
        "nic add": ("nic", "add", "vm3", "--switch", "ext"),
        "nic set": ("nic", "set", "vm3", "nic0", "--vlan", "5"),
        "nic remove": ("nic", "remove", "vm3", "nic0"),
        "vm delete": ("vm", "delete", "vm3"),
        "switch create": ("switch", "create", "third", "--uplink", "ens2f0"),
        "switch set": ("switch", "set", "third", "--no-iov"),
        "switch delete": ("switch", "delete", "third"),
        "adapter set": ("adapter", "set", "ens2f0", "--num-vfs", "2"),
        "adapter disable": ("adapter", "disable", "ens2f0"),
        "adapter enable": ("adapter", "enable", "ens2f0"),
    }
    for command, argv in runs.items():
        value = populated.ok(*argv)
        assert _conforms(value, outputs[command], doc, command) == [], command
        if isinstance(value, list):
            assert value, f"{command}: an empty list proves nothing"
    report = populated.ok("apply")  # after the power cycle above: nothing left; again with drift
    assert report["changes"] == []


def test_apply_changes_of_every_kind_conform(cli):
    doc = _committed_schema()
    cli.igb_pool(2)
    cli.vm_with_nic("a", "--iov-weight", "50", "--vlan", "7", start=True)
    cli.ok("host", "power-cycle")
    report = cli.ok("apply", "--dry-run")
    assert {c["action"] for c in report["changes"]} == {
        "set-vf-count",
        "set-vf-settings",
        "attach-vf",
    }
    assert _conforms(report, doc["x-iovctl-outputs"]["apply"], doc) == []


# -- man page -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")
def test_man_renders_the_page_without_warnings():
    page = ROOT / generate.MAN_PATH
    result = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "MANWIDTH": "80",
            "MANPAGER": "cat",
            "PAGER": "cat",
            "LC_ALL": "C.UTF-8",
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout
    assert text.startswith("IOVCTL(8)")
    for expected in ("iovctl nic set", "--iov-weight", "EXIT STATUS", "IOVCTL_STATE_DIR", "events"):
        assert expected in text, expected
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_man_page_documents_every_command_and_option():
    from iovctl.cli.table import COMMANDS

    page = (ROOT / generate.MAN_PATH).read_text().replace("\\-", "-")
    for command in COMMANDS:
        assert f'.SS "iovctl {command.name}"' in page, command.name
        for a in command.args:
            for flag in a.flags:
                if flag.startswith("-"):
                    assert flag in page, (command.name, flag)


# -- bash completion -------------------------------------------------------------------------


def _complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """COMPREPLY of the committed completion for a command line; the last word is the
    one being completed. ``iovctl`` (for names of objects) is this installation's."""
    script = (
        'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); '
        '_iovctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            script,
            "_",
            str(ROOT / generate.COMPLETION_PATH),
            "iovctl",
            *words,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=env or _bash_env(),
    )
    assert result.stderr == ""
    return [w for w in result.stdout.splitlines() if w]


def _bash_env(**extra: str) -> dict[str, str]:
    scripts = sysconfig.get_path("scripts")
    env = clean_env(**extra)
    env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("",), {"adapter", "vm", "nic", "events", "--sim", "--state-dir", "-o"}),
        (("vm", "s"), {"show", "start", "stop"}),
        (("--state-dir", "/tmp/x", "vm", "cr"), {"create"}),
        (
            ("-o", "json", "switch", ""),
            {"create", "list", "show", "set", "delete", "-o", "--output"},
        ),
        (("nic", "add", "vm1", "--v"), {"--vlan"}),
        (("nic", "set", "vm1", "nic0", "--pvlan", ""), {"isolated", "community", "promiscuous"}),
        (("nic", "set", "vm1", "nic0", "--un"), {"--untagged", "--unlimited"}),
        (("-o", ""), {"table", "json"}),
        (("events", "--level", ""), {"info", "warning", "error"}),
        (("events", "--f"), {"--follow"}),
        (("host", ""), {"snapshot", "power-cycle", "-o", "--output"}),
        (("--sim", "no"), {"no-iommu"}),
        (("host", "snapshot", "--file", "READ"), {"README.md"}),
    ],
)
def test_completion_in_bash(words, expected):
    got = set(_complete(*words))
    assert expected <= got, (words, got)
    if words[-1]:
        assert all(w.startswith(words[-1]) for w in got), got


def test_completion_offers_nothing_but_options_after_a_command_is_whole():
    assert set(_complete("vm", "list", "")) == {"-o", "--output"}
    assert _complete("vm", "create", "--mac", "") == []  # a value: nothing to guess


def test_completion_offers_the_names_of_existing_objects(populated, populated_before):
    state = ["--state-dir", str(populated.state_dir)]
    assert _complete(*state, "vm", "start", "") == ["vm1", "vm2"]
    assert _complete(*state, "vm", "show", "vm2") == ["vm2"]
    assert _complete(*state, "nic", "set", "vm1", "") == ["nic0"]
    assert _complete(*state, "nic", "add", "vm2", "--switch", "") == ["ext", "plain"]
    assert "enp1s0" in _complete(*state, "switch", "create", "new", "--uplink", "")
    assert "enp1s0" in _complete(*state, "adapter", "show", "")
    assert _complete(*state, "switch", "delete", "p") == ["plain"]
    # A new name: nothing to offer but the options.
    assert set(_complete(*state, "vm", "create", "")) == {
        "-o",
        "--output",
        "--memory",
        "--vcpus",
        "--disk",
        "--kernel",
        "--initrd",
        "--cmdline",
    }
    assert "--iov-weight" in _complete(*state, "nic", "set", "vm1", "nic0", "--")
    # The state directory from the environment, as iovctl itself would use it.
    env = _bash_env(IOVCTL_STATE_DIR=str(populated.state_dir))
    assert _complete("switch", "show", "", env=env) == ["ext", "plain"]
    assert state_dump(populated.state_dir) == populated_before  # a TAB changes nothing


def test_completion_never_creates_a_state_directory(tmp_path):
    missing = tmp_path / "nothing-here"
    assert _complete("--state-dir", str(missing), "vm", "start", "") == []
    assert _complete("vm", "start", "", env=_bash_env(IOVCTL_STATE_DIR=str(missing))) == []
    assert not missing.exists()
