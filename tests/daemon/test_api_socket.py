"""The HTTP API v1 over the daemon's real unix sockets: the objects of ``-o json``,
errors in one shape, the read-only socket, operations, server-sent events, and the
daemon's life (sockets, lock, SIGTERM)."""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.conftest import Daemon, snapshot, start_daemon
from helpers import assert_clean_error, run_subprocess
from iovctl.cli.commands import COMMANDS
from iovctl.http.routes import ROUTES


def _error(got: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert got.status_code == status, got.text
    body = got.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and body["error"]["hint"]
    return body["error"]  # type: ignore[no-any-return]


def _setup(c: httpx.Client) -> None:
    assert c.post("/api/v1/adapters/enp1s0/enable", json={}).status_code == 200
    assert c.post("/api/v1/switches", json={"name": "sw0", "uplink": "enp1s0", "iov": True}).status_code == 201
    assert c.post("/api/v1/vms", json={"name": "vm1"}).status_code == 201
    got = c.post("/api/v1/vms/vm1/nics", json={"switch": "sw0", "iov_weight": 50})
    assert got.status_code == 201, got.text


def test_every_command_with_a_service_has_a_route() -> None:
    routed = {r.words for r in ROUTES}
    for command in COMMANDS:
        assert (command.call is not None) == (command.words in routed), command.name


def test_reads_are_what_the_cli_prints_with_o_json(daemon: Daemon) -> None:
    c = daemon.client()
    _setup(c)
    assert c.post("/api/v1/vms/vm1/start").status_code == 200
    pairs = {
        "/api/v1/host": ("host",),
        "/api/v1/adapters": ("adapter", "list"),
        "/api/v1/adapters/enp1s0": ("adapter", "show", "enp1s0"),
        "/api/v1/adapters/enp1s0/vfs": ("vf", "list", "enp1s0"),
        "/api/v1/vfs": ("vf", "list"),
        "/api/v1/switches": ("switch", "list"),
        "/api/v1/switches/sw0": ("switch", "show", "sw0"),
        "/api/v1/vms": ("vm", "list"),
        "/api/v1/vms/vm1": ("vm", "show", "vm1"),
        "/api/v1/vms/vm1/nics": ("nic", "list", "vm1"),
        "/api/v1/nics": ("nic", "list"),
        "/api/v1/vms/vm1/nics/nic0": ("nic", "show", "vm1", "nic0"),
        "/api/v1/events?limit=3&kind=vm": ("events", "--limit", "3", "--kind", "vm"),
        "/api/v1/host/snapshot?name=x": ("host", "snapshot", "--name", "x"),
    }
    for path, argv in pairs.items():
        got = c.get(path)
        assert got.status_code == 200, (path, got.text)
        direct = daemon.direct(*argv, "-o", "json")  # reads beside the daemon are fine
        assert direct.code == 0, direct.err
        assert got.json() == json.loads(direct.out), path


def test_writes_take_the_cli_options_and_answer_its_views(daemon: Daemon) -> None:
    c = daemon.client()
    _setup(c)
    got = c.patch("/api/v1/vms/vm1/nics/nic0", json={"vlan": 10, "trust": True, "iov_weight": 70})
    assert got.status_code == 200, got.text
    assert (got.json()["vlan"], got.json()["trust"], got.json()["iov_weight"]) == (10, True, 70)
    got = c.patch("/api/v1/vms/vm1/nics/nic0", json={"untagged": True, "trust": False})
    assert (got.json()["vlan"], got.json()["trust"]) == (None, False)
    assert c.patch("/api/v1/adapters/enp1s0", json={"num_vfs": 4}).json()["num_vfs"] == 4
    _error(c.patch("/api/v1/switches/sw0", json={"iov": False}), 409, "iov-fixed-at-creation")
    assert c.post("/api/v1/vms/vm1/start").json()["state"] == "running"
    assert c.post("/api/v1/vms/vm1/stop").json()["state"] == "off"
    assert c.delete("/api/v1/vms/vm1/nics/nic0").json() == {"deleted": "nic", "name": "vm1/nic0"}
    assert c.delete("/api/v1/vms/vm1").json() == {"deleted": "vm", "name": "vm1"}
    assert c.delete("/api/v1/switches/sw0").json() == {"deleted": "switch", "name": "sw0"}
    assert c.post("/api/v1/adapters/enp1s0/disable", json={"force": False}).json()["num_vfs"] == 0
    assert c.post("/api/v1/apply", json={"dry_run": True}).status_code == 200
    assert c.post("/api/v1/host/power-cycle").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/v1/switches", {"name": "s", "uplink": "enp1s0", "x": 1}, 400, "usage"),
        ("POST", "/api/v1/switches", {"name": "s", "uplink": "enp1s0", "iov": "yes"}, 400, "usage"),
        ("POST", "/api/v1/switches", {"name": "s"}, 400, "usage"),
        ("POST", "/api/v1/switches", [1, 2], 400, "usage"),
        ("POST", "/api/v1/switches", {"name": "bad name!", "uplink": "enp1s0"}, 400, "invalid-name"),
        ("POST", "/api/v1/vms/vm9/nics", {"switch": "sw0", "iov_weight": "5"}, 400, "invalid-number"),
        ("POST", "/api/v1/vms/vm9/nics", {"switch": "sw0", "iov_weight": True}, 400, "invalid-number"),
        ("POST", "/api/v1/vms/vm9/nics", {"switch": "sw0", "iov_weight": 5.0}, 400, "invalid-number"),
        ("POST", "/api/v1/vms/vm9/nics", {"switch": "sw0", "pvlan": "open"}, 400, "usage"),
        ("POST", "/api/v1/vms/vm9/nics", {"switch": "sw0"}, 404, "unknown-vm"),
        ("PATCH", "/api/v1/adapters/enp1s0", {"num_vfs": -1}, 400, "invalid-vf-count"),
        ("GET", "/api/v1/events?limit=x", None, 400, "invalid-number"),
        ("GET", "/api/v1/events?level=loud", None, 400, "usage"),
        ("GET", "/api/v1/events?colour=red", None, 400, "usage"),
        ("GET", "/api/v1/vms/nope", None, 404, "unknown-vm"),
        ("GET", "/api/v1/nothing", None, 404, "not-found"),
        ("PUT", "/api/v1/vms", None, 405, "method-not-allowed"),
        ("POST", "/api/v1/vms?wait=maybe", {"name": "v"}, 400, "usage"),
        ("POST", "/api/v1/vms?name=v", None, 400, "usage"),
        ("GET", "/api/v1/operations/12345", None, 404, "operation-not-found"),
    ],
)
def test_bad_requests_get_the_error_shape_and_change_nothing(
    shared_daemon: Daemon, method: str, path: str, body: Any, status: int, code: str
) -> None:
    c = shared_daemon.client()
    before = snapshot(c)
    _error(c.request(method, path, json=body), status, code)
    assert snapshot(c) == before


def test_a_body_that_is_not_json_is_refused(shared_daemon: Daemon) -> None:
    c = shared_daemon.client()
    got = c.post("/api/v1/vms", content=b"{name: vm1", headers={"content-type": "application/json"})
    _error(got, 400, "usage")


def test_the_read_only_socket_reads_and_refuses_every_write(daemon: Daemon) -> None:
    admin, reader = daemon.client(), daemon.client(read_only=True)
    _setup(admin)
    before = snapshot(admin)
    assert snapshot(reader) == before
    writes = [r for r in ROUTES if r.method != "GET"]
    for route in writes:
        path = "/api/v1" + route.path.format(name="vm1", vm="vm1", nic="nic0", adapter="enp1s0")
        if route.words[0] == "adapter":
            path = path.replace("vm1", "enp1s0")
        elif route.words[0] == "switch":
            path = path.replace("vm1", "sw0")
        _error(reader.request(route.method, path, json={}), 403, "read-only")
    assert snapshot(admin) == before


def test_sockets_are_bound_with_their_modes(daemon: Daemon) -> None:
    admin = daemon.socket.stat()
    assert stat.S_ISSOCK(admin.st_mode)
    try:
        import grp

        grp.getgrnam("iovctl")
        has_group = True
    except KeyError:
        has_group = False
    assert stat.S_IMODE(admin.st_mode) == (0o660 if has_group else 0o600)
    assert stat.S_IMODE(daemon.read_socket.stat().st_mode) == 0o666


def test_wait_false_answers_202_and_the_operation_can_be_polled(daemon: Daemon) -> None:
    c = daemon.client()
    _setup(c)
    got = c.post("/api/v1/vms/vm1/start?wait=false")
    assert got.status_code == 202, got.text
    op = got.json()["operation"]
    assert got.headers["location"] == f"/api/v1/operations/{op['id']}"
    deadline = time.monotonic() + 20
    while op["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
        op = c.get(f"/api/v1/operations/{op['id']}").json()
    assert (op["state"], op["status"], op["command"]) == ("succeeded", 200, "vm start")
    assert op["result"]["state"] == "running"
    failed = c.post("/api/v1/vms/ghost/start?wait=false").json()["operation"]
    while failed["state"] == "running":
        time.sleep(0.02)
        failed = c.get(f"/api/v1/operations/{failed['id']}").json()
    assert (failed["state"], failed["status"]) == ("failed", 404)
    assert failed["result"]["error"]["code"] == "unknown-vm"
    listed = [o["id"] for o in c.get("/api/v1/operations").json()]
    assert listed == [op["id"], failed["id"]]


def _sse(lines: Any, count: int) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    seq, data = None, None
    for line in lines:
        if line.startswith("id:"):
            seq = int(line[3:])
        elif line.startswith("data:"):
            data = json.loads(line[5:])
        elif not line and data is not None:
            assert seq == data["seq"]
            out.append((seq, data))
            seq, data = None, None
            if len(out) == count:
                return out
    raise AssertionError("the stream ended")


def test_events_stream_live_and_resume_from_last_event_id(daemon: Daemon) -> None:
    c = daemon.client()
    first = c.post("/api/v1/vms", json={"name": "a"})
    assert first.status_code == 201
    newest = c.get("/api/v1/events").json()[-1]["seq"]
    with c.stream("GET", "/api/v1/events/stream") as stream:  # from now on
        lines = stream.iter_lines()
        assert next(lines).startswith(":")
        c.post("/api/v1/vms", json={"name": "b"})
        c.post("/api/v1/vms", json={"name": "c"})
        got = _sse(lines, 2)
    assert [e["object_name"] for _, e in got] == ["b", "c"]
    assert got[0][0] > newest
    headers = {"Last-Event-ID": str(got[0][0])}
    with c.stream("GET", "/api/v1/events/stream", headers=headers) as stream:
        again = _sse(stream.iter_lines(), 1)
    assert again[0][1] == got[1][1]
    with c.stream("GET", "/api/v1/events/stream?since=0&kind=vm&level=info") as stream:
        every = _sse(stream.iter_lines(), 3)
    assert [e["object_name"] for _, e in every] == ["a", "b", "c"]
    _error(c.get("/api/v1/events/stream", headers={"Last-Event-ID": "x"}), 400, "invalid-number")


def test_openapi_describes_every_route_with_view_schemas(shared_daemon: Daemon) -> None:
    doc = shared_daemon.client().get("/api/v1/openapi.json").json()
    for route in ROUTES:
        op = doc["paths"]["/api/v1" + route.path][route.method.lower()]
        ok = op["responses"][str(route.status)]["content"]["application/json"]["schema"]
        assert ok, route
    schemas = doc["components"]["schemas"]
    assert {"HostView", "NicView", "SwitchView", "EventView", "Error", "Operation"} <= set(schemas)
    body = doc["paths"]["/api/v1/vms/{vm}/nics"]["post"]["requestBody"]["content"]
    nic = body["application/json"]["schema"]
    assert nic["additionalProperties"] is False and nic["required"] == ["switch"]
    assert nic["properties"]["iov_weight"]["type"] == "integer"


def test_sigterm_removes_the_sockets_and_frees_the_state(short_dir: Path) -> None:
    d = start_daemon(short_dir)
    code, err = d.stop(signal.SIGTERM)
    assert code == 0, err
    assert not d.socket.exists() and not d.read_socket.exists()
    assert "stopped" in err
    again = start_daemon(short_dir)  # the lock was let go
    again.stop()


def test_a_second_daemon_on_the_same_state_is_refused(daemon: Daemon, short_dir: Path) -> None:
    other = short_dir / "other"
    other.mkdir()
    with pytest.raises(AssertionError, match=r"error\[daemon-running\]"):
        start_daemon_on(daemon.state_dir, other)
    assert daemon.client().get("/api/v1/host").status_code == 200


def start_daemon_on(state: Path, root: Path) -> Daemon:
    (root / "state").symlink_to(state)
    return start_daemon(root)


def test_a_stale_socket_is_replaced_and_a_live_one_refused(short_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "a.sock"))
    stale.close()  # a socket file nobody listens on: a killed daemon's
    d = start_daemon(short_dir)
    assert d.client().get("/api/v1/host").status_code == 200
    d.stop()
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(short_dir / "r.sock"))
    live.listen(1)  # another program's socket, in use
    try:
        refused = run_subprocess(
            ["--state-dir", str(short_dir / "state"), "daemon", "--socket",
             str(short_dir / "a.sock"), "--read-socket", str(short_dir / "r.sock")]
        )
        assert_clean_error(refused, "socket-in-use", 6)
        assert not (short_dir / "a.sock").exists()  # what it had bound is gone again
    finally:
        live.close()


def test_a_direct_write_beside_the_daemon_is_refused_with_a_hint(daemon: Daemon) -> None:
    before = snapshot(daemon.client())
    result = daemon.direct("vm", "create", "vm1")
    assert_clean_error(result, "daemon-running", 6)
    assert f"--connect unix://{daemon.socket}" in result.err
    assert daemon.direct("vm", "list").code == 0  # reads are fine
    assert snapshot(daemon.client()) == before


def test_sigterm_ends_open_event_streams_cleanly(short_dir: Path) -> None:
    d = start_daemon(short_dir)
    c = d.client(read_only=True)
    with c.stream("GET", "/api/v1/events/stream?since=0") as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(":")
        d.proc.send_signal(signal.SIGTERM)
        rest = list(lines)  # the response ends: the daemon finished it
    assert rest == [""]
    code, err = d.stop()
    assert code == 0 and "Traceback" not in err and "stopped" in err, err
