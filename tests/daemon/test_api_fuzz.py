"""Property-based fuzz of the API over its own OpenAPI document, on the real socket:
requests made from each route's schema, bent (wrong types, unknown keys, junk
names, bodies that are not objects or not JSON). No answer is a 500, every error is
``{"error": {...}}``, and a refused request leaves everything a user can read as it
was (events included)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.conftest import Daemon, snapshot, start_daemon

#: Statuses of a request refused before it changed anything.
REFUSED = {400, 401, 403, 404, 405, 409}

NAMES = ["sw0", "vm1", "vm2", "nic0", "enp1s0", "nope", "", "..", "a b", "x" * 300, "\u202e"]

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_any = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value the schema allows, mostly; sometimes anything at all."""
    if "enum" in schema:
        good: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    elif schema.get("type") == "integer":
        good = st.integers(-5, 5000)
    elif schema.get("type") == "boolean":
        good = st.booleans()
    else:
        good = st.sampled_from(NAMES) | st.text(max_size=12)
    return st.one_of(good, good, good, _json_any)


def _segment(name: str) -> str:
    return "%2E" * len(name) if name in (".", "..") else quote(name, safe="")


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Daemon, dict[str, Any]]]:
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="iovd-"))
    d = start_daemon(root)
    c = d.client()
    c.post("/api/v1/adapters/enp1s0/enable", json={})
    c.post("/api/v1/switches", json={"name": "sw0", "uplink": "enp1s0", "iov": True})
    for vm in ("vm1", "vm2"):
        c.post("/api/v1/vms", json={"name": vm})
        c.post(f"/api/v1/vms/{vm}/nics", json={"switch": "sw0", "iov_weight": 10})
    doc = c.get("/api/v1/openapi.json").json()
    yield d, doc
    d.stop()
    shutil.rmtree(root, ignore_errors=True)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), op)
        for path, item in sorted(doc["paths"].items())
        for method, op in sorted(item.items())
        if not path.endswith("/stream")
    ]


@st.composite
def requests(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    path, method, op = draw(st.sampled_from(_operations(doc)))
    params = op.get("parameters", [])
    for p in params:
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", _segment(draw(st.sampled_from(NAMES))))
    query: list[tuple[str, str]] = []
    for p in params:
        if p["in"] == "query" and p["name"] != "wait" and draw(st.booleans()):
            query.append((p["name"], _query_text(draw(_value(p["schema"])))))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(st.text(min_size=1, max_size=6)), draw(st.text(max_size=6))))
    kwargs: dict[str, Any] = {"params": query}
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    shape = draw(st.integers(0, 19))
    if shape == 0:
        kwargs["content"] = draw(st.binary(max_size=30))
        kwargs["headers"] = {"content-type": "application/json"}
    elif shape == 1:
        kwargs["json"] = draw(_json_any)
    elif body is not None or shape == 2:
        props = (body or {}).get("properties", {})
        chosen = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
        obj = {k: draw(_value(props[k])) for k in chosen}
        for k in (body or {}).get("required", []):
            if draw(st.integers(0, 9)) != 0:
                obj.setdefault(k, draw(_value(props[k])))
        if draw(st.integers(0, 9)) == 0:
            obj[draw(st.text(max_size=8))] = draw(_json_any)
        kwargs["json"] = obj
    return method, path, kwargs


def test_no_500_and_a_refusal_changes_nothing(fuzzed: tuple[Daemon, dict[str, Any]]) -> None:
    daemon, doc = fuzzed
    client = daemon.client()
    state = {"before": snapshot(client)}
    seen: set[int] = set()

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        method, path, kwargs = data.draw(requests(doc))
        got = client.request(method, path, **kwargs)
        seen.add(got.status_code)
        # 502 is the machine's refusal (HardwareError: http/errors.py), e.g. a VF count
        # above what the adapter offers after a fuzzed disable; never a server bug.
        assert got.status_code < 500 or got.status_code == 502, (method, path, kwargs, got.text)
        if got.status_code >= 400:
            error = got.json()["error"]
            assert set(error) == {"code", "message", "hint"} and error["code"], got.text
        after = snapshot(client)
        if got.status_code in REFUSED:
            assert after == state["before"], (method, path, kwargs, got.text)
        state["before"] = after

    check()
    assert {200, 400, 404} <= seen, seen


def test_a_count_the_adapter_cannot_have_is_the_machines_refusal(
    fuzzed: tuple[Daemon, dict[str, Any]],
) -> None:
    """What the fuzz found once (a fuzzed disable, then enable with 8 VFs on a 7-VF
    igb): a 502 with the error's shape and hint, and nothing changed."""
    daemon, _ = fuzzed
    client = daemon.client()
    client.post("/api/v1/adapters/enp1s0/disable", json={"force": True})
    before = snapshot(client)
    got = client.post("/api/v1/adapters/enp1s0/enable", json={"num_vfs": 8})
    assert got.status_code == 502, got.text
    assert got.json()["error"]["code"] == "vf-count-out-of-range"
    assert got.json()["error"]["hint"]
    assert snapshot(client) == before  # the fuzz reached the services, not only the parser
