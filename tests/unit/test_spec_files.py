"""Spec files as hostile input (issue 9, item 4): every class that reached
``error[internal]`` or was silently accepted is refused by name, with a hint.

Host specs (``--sim FILE``) and emulation specs (``--emulate FILE``) share one
reader (adapters/yaml_file.py); both are tried for each class.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from iovctl.adapters.netns.spec import load_emulation, parse_emulation
from iovctl.adapters.sim.spec import load_spec, parse_spec, spec_from_json, spec_to_json
from iovctl.adapters.yaml_file import MAX_BYTES, MAX_DEPTH
from iovctl.domain.text import control_character, shown
from iovctl.errors import InvalidInput, IovctlError

LOADERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "host": (load_spec, "invalid-host-spec"),
    "emulation": (load_emulation, "invalid-emulation-spec"),
}

HOST = {"name": "h", "adapters": [{"name": "eth0", "pci_address": "0000:01:00.0"}]}
EMULATION = {"name": "e", "adapters": [{"name": "iove0"}]}


def _refused(kind: str, path: Path, code: str | None = None) -> IovctlError:
    load, invalid_code = LOADERS[kind]
    with pytest.raises(IovctlError) as exc_info:
        load(str(path))
    err = exc_info.value
    assert err.code == (code or invalid_code), err
    assert err.hint
    assert isinstance(err, InvalidInput)
    assert control_character(str(err) + err.hint) is None
    return err


@pytest.fixture(params=sorted(LOADERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- YAML that expands or nests without bound ------------------------------------------


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path, kind: str) -> None:
    # Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines.append("name: [" + ", ".join(["*l8"] * 9) + "]")
    spec = tmp_path / "bomb.yaml"
    spec.write_text("\n".join(lines) + "\n")
    err = _refused(kind, spec)
    assert "expands to more than" in err.message


def test_an_alias_chain_deeper_than_the_bound_is_refused(tmp_path: Path, kind: str) -> None:
    lines = ["l0: &l0 [x]"] + [f"l{i}: &l{i} [*l{i - 1}]" for i in range(1, 2000)]
    spec = tmp_path / "chain.yaml"
    spec.write_text("\n".join(lines) + "\nname: x\n")
    assert "expands deeper than" in _refused(kind, spec).message


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "cycle.yaml"
    spec.write_text("loop: &loop [1, *loop]\nname: x\n")
    assert "refers to a value that contains it" in _refused(kind, spec).message


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "])
def test_nesting_without_bound_is_refused(tmp_path: Path, kind: str, opener: str) -> None:
    # 100,000 levels took the stack down (RecursionError, exit 70).
    depth = {"[": 100_000, "{a: ": 50_000, "- ": 500}[opener]  # all within MAX_BYTES
    if opener == "- ":
        text = "".join(f"{' ' * (2 * i)}-\n" for i in range(depth))
    else:
        text = opener * depth
    spec = tmp_path / "deep.yaml"
    spec.write_text(text)
    err = _refused(kind, spec)
    assert f"nested deeper than {MAX_DEPTH} levels" in err.message


def test_a_few_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    spec = tmp_path / "anchors.yaml"
    spec.write_text(
        "common: &sriov {total_vfs: 4, vf_driver: igbvf}\n"
        "name: anchored\n"
        "adapters:\n"
        '  - {name: a, pci_address: "0000:01:00.0", driver: igb, sriov: *sriov}\n'
        '  - {name: b, pci_address: "0000:02:00.0", driver: igb, sriov: *sriov,'
        ' mac: "52:54:00:00:00:09"}\n'
    )
    loaded = load_spec(str(spec))
    assert [a.adapter.sriov.total_vfs for a in loaded.adapters if a.adapter.sriov] == [4, 4]


# -- huge, non-UTF-8, unreadable files -------------------------------------------------


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "huge.yaml"
    spec.write_bytes(b"# padding\n" * (MAX_BYTES // 10 + 1))
    assert "larger than" in _refused(kind, spec).message


@pytest.mark.parametrize(
    "data", [b"name: \xff\xfe\n", b"\xef\xbb\xbfname: caf\xe9\n", "name: x".encode("utf-16")]
)
def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path, kind: str, data: bytes) -> None:
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes(data)
    assert "not UTF-8 text" in _refused(kind, spec).message


def test_an_unreadable_file_is_refused_with_a_permissions_hint(tmp_path: Path, kind: str) -> None:
    """A file that exists but cannot be read. Root reads any file whatever its mode,
    so as root the file is /proc/self/mem: a regular file whose read at offset 0
    fails (EIO: address 0 is not mapped)."""
    if os.geteuid() == 0:
        spec = Path("/proc/self/mem")
    else:
        spec = tmp_path / "secret.yaml"
        spec.write_text(yaml.safe_dump(HOST))
        spec.chmod(0o000)
    err = _refused(kind, spec, code="spec-unreadable")
    assert "cannot be read" in err.message
    assert "permissions" in err.hint


@pytest.mark.parametrize("name", ["x" * 5000, "a\0b", "/dev/null", ""])
def test_names_that_are_no_file_are_not_found_and_not_echoed_in_full(name: str) -> None:
    with pytest.raises(IovctlError) as exc_info:
        load_spec(name)
    assert exc_info.value.code == "unknown-host-spec"
    assert len(exc_info.value.message) < 300
    assert "\0" not in exc_info.value.message


@pytest.mark.parametrize(
    "text", ["n: " + "9" * 5000, "n: 2024-13-45", "n: !!python/object:os.system x", "n: [1"]
)
def test_values_python_cannot_build_are_invalid_yaml(tmp_path: Path, kind: str, text: str) -> None:
    spec = tmp_path / "odd.yaml"
    spec.write_text(text + "\nname: x\n")
    err = _refused(kind, spec)
    assert "not valid YAML" in err.message
    assert "\n" not in err.message  # one line, not PyYAML's excerpt


# -- duplicate keys ----------------------------------------------------------------------


def test_duplicate_keys_are_refused_not_last_one_wins(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "dup.yaml"
    body = yaml.safe_dump(HOST if kind == "host" else EMULATION)
    spec.write_text(body + "name: other\n")
    err = _refused(kind, spec)
    assert "duplicate key 'name'" in err.message
    assert "line" in err.message


def test_duplicate_keys_deep_inside_are_refused(tmp_path: Path) -> None:
    spec = tmp_path / "dup.yaml"
    spec.write_text(
        "name: h\nadapters:\n"
        "  - name: a\n    pci_address: '0000:01:00.0'\n"
        "    sriov: {total_vfs: 4, total_vfs: 8}\n"
    )
    assert "duplicate key 'total_vfs'" in _refused("host", spec).message


# -- terminal control sequences ----------------------------------------------------------

ESCAPES = ["\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "\x9b31m", "ok\rfake", "\u202egnp.exe", "\x00"]


@pytest.mark.parametrize("escape", ESCAPES, ids=[repr(e) for e in ESCAPES])
@pytest.mark.parametrize(
    "field", ["name", "description", "adapters.0.model", "adapters.0.driver", "kernel.cmdline"]
)
def test_control_characters_in_host_spec_strings_are_refused(field: str, escape: str) -> None:
    doc: dict[str, Any] = {
        **HOST,
        "kernel": {"cmdline": "x"},
        "adapters": [dict(HOST["adapters"][0])],  # type: ignore[index]
    }
    *parents, last = field.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = f"evil{escape}"
    with pytest.raises(InvalidInput) as exc_info:
        parse_spec(doc)
    err = exc_info.value
    assert err.code == "invalid-host-spec"
    assert control_character(str(err)) is None, "the message repeats the escape"


@pytest.mark.parametrize("escape", ESCAPES, ids=[repr(e) for e in ESCAPES])
def test_control_characters_in_emulation_specs_are_refused(escape: str) -> None:
    for doc in (
        {**EMULATION, "name": f"e{escape}"},
        {**EMULATION, "world": {"netns": f"iov-{escape}"}},
        {**EMULATION, "adapters": [{"name": f"iove{escape}"}]},
    ):
        with pytest.raises(InvalidInput) as exc_info:
            parse_emulation(doc)
        assert control_character(str(exc_info.value)) is None


def test_control_characters_in_keys_are_refused() -> None:
    with pytest.raises(InvalidInput) as exc_info:
        parse_spec({**HOST, "\x1b[31mkey": 1})
    assert "U+001B" in exc_info.value.message


def test_tabs_and_newlines_in_a_description_are_text() -> None:
    spec = parse_spec({**HOST, "description": "line one\n\tline two\n"})
    assert spec.description == "line one\n\tline two\n"


def test_shown_escapes_and_shortens() -> None:
    assert shown("a\x1bb") == "a\\x1bb"
    assert shown("\u202e") == "\\u202e"
    long = shown("x" * 10_000)
    assert long.startswith("x" * 80) and long.endswith("(9920 more characters)")


# -- link speed: unknown is null, not 0 ------------------------------------------------


def test_unknown_link_speed_is_null_and_survives_the_round_trip() -> None:
    doc = {**HOST, "adapters": [{**HOST["adapters"][0], "link_speed_mbps": None}]}  # type: ignore[index]
    spec = parse_spec(doc)
    assert spec.adapters[0].adapter.link_speed_mbps is None
    assert spec_from_json(spec_to_json(spec)).adapters[0].adapter.link_speed_mbps is None


def test_a_snapshot_of_unknown_speed_and_no_mac_loads_back() -> None:
    """A real PF without a netdev (driver unbound) has no MAC and no known speed:
    its snapshot must load, with the speed still unknown."""
    from iovctl.domain.host_spec import spec_document
    from iovctl.domain.model import Adapter, HostFacts

    pf = Adapter("enp9s0", "0000:09:00.0", "8086", "10c9", None, "82576", None, 0, "")
    doc = spec_document("twin", HostFacts(acs=None), [pf], {})
    loaded = parse_spec(yaml.safe_load(yaml.safe_dump(doc)))
    (spec,) = loaded.adapters
    assert spec.adapter.link_speed_mbps is None and spec.adapter.mac
    assert loaded.facts.acs is None
