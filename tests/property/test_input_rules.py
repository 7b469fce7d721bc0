"""Invariants of the front-end input rules (issue 9): numbers as an admin writes
them, errors that never echo a huge argument, and the schema's rename check."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iovctl.domain.validation import parse_integer
from iovctl.errors import TEXT_LIMIT, WORD_LIMIT, InvalidInput, IovctlError, shorten
from iovctl.services.schema import breaking_changes

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/schema/iovctl-v1.json").read_text()
)


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_plain_digits_parse_to_what_they_say(n: int) -> None:
    assert parse_integer("--n", str(n)) == n


@given(st.text(max_size=30))
def test_anything_else_is_refused_never_guessed(text: str) -> None:
    plain = (
        text.isascii() and text.lstrip("-").isdigit() and text.count("-") <= int(text[:1] == "-")
    )
    if plain and len(text) <= 20:
        assert parse_integer("--n", text) == int(text)
    else:
        with pytest.raises(InvalidInput) as info:
            parse_integer("--n", text)
        assert info.value.code == "invalid-number"


@pytest.mark.parametrize(
    "text", ["1_0", "+5", " 5", "5 ", "\uff11\uff10", "\u0663", "0x10", "1e3", ""]
)
def test_what_int_accepts_but_no_admin_means(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_integer("--vlan", text)


@given(st.text(max_size=3 * TEXT_LIMIT))
def test_errors_are_never_longer_than_the_limits(text: str) -> None:
    err = IovctlError("x", text, text)
    assert len(err.message) <= TEXT_LIMIT and len(err.hint) <= TEXT_LIMIT
    assert all(len(w) <= WORD_LIMIT for w in err.message.split(" "))
    if len(text) <= WORD_LIMIT:
        assert err.message == text  # short text is never touched
    assert shorten(shorten(text)) == shorten(text)


def _defs_with_properties() -> list[str]:
    return sorted(n for n, d in SCHEMA["$defs"].items() if d.get("properties"))


@given(st.sampled_from(_defs_with_properties()), st.data())
def test_removing_any_key_breaks_and_adding_any_key_does_not(
    name: str, data: st.DataObject
) -> None:
    keys = sorted(SCHEMA["$defs"][name]["properties"])
    key = data.draw(st.sampled_from(keys))
    removed = copy.deepcopy(SCHEMA)
    del removed["$defs"][name]["properties"][key]
    problems = breaking_changes(SCHEMA, removed)
    used = any(
        f"$defs/{name}" in json.dumps(shape) for shape in SCHEMA["x-iovctl-outputs"].values()
    )
    if used or any(f'"$ref": "#/$defs/{name}"' in json.dumps(d) for d in SCHEMA["$defs"].values()):
        assert problems and all(key in p for p in problems), problems
    added = copy.deepcopy(SCHEMA)
    added["$defs"][name]["properties"][data.draw(st.text(min_size=1, max_size=8)) + "_new"] = {}
    assert breaking_changes(SCHEMA, added) == []
