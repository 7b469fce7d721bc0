"""The daemon follows the VM runtime (issue 12, items 3 and 4): VMs started and
stopped outside iovctl (``virsh start``, ``virsh destroy``, a crash) change what
the API shows, with their VFs granted by weight or handed on; what happened while
the daemon was down is found at its start; a guest that never negotiates failover
loses its VF to the next waiter, with the reason.

The simulated runtime is the hypervisor here: its domains start and stop through
the machine's database, as libvirt's do behind iovctl's back.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.conftest import Daemon, start_daemon
from iovctl.adapters.sim import runtime as sim
from iovctl.adapters.sim.machine import open_machine
from iovctl.adapters.sim.runtime import define_domain, start_domain, stop_domain

#: Seconds the daemon may take to follow a change (its watch polls every 0.1 s).
BOUND_S = 15.0


def _until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {BOUND_S:.0f} s: {what}")


def _ok(got: httpx.Response) -> Any:
    assert got.status_code in (200, 201), got.text
    return got.json()


def _setup(c: httpx.Client, machine: Any, *domains: str, failover: bool = True) -> None:
    _ok(c.post("/api/v1/adapters/enp1s0/enable", json={"num_vfs": 1}))
    _ok(c.post("/api/v1/switches", json={"name": "sw0", "uplink": "enp1s0", "iov": True}))
    for name in domains:
        define_domain(machine, name, failover=failover)
        assert _ok(c.post("/api/v1/vms/import", json={"name": name}))["state"] == "off"
        _ok(c.post(f"/api/v1/vms/{name}/nics", json={"switch": "sw0", "iov_weight": 50}))


def _nic(c: httpx.Client, vm: str) -> dict[str, Any]:
    return _ok(c.get(f"/api/v1/vms/{vm}/nics/nic0"))  # type: ignore[no-any-return]


def _messages(c: httpx.Client, vm: str) -> list[str]:
    return [e["message"] for e in _ok(c.get("/api/v1/events", params={"object_name": vm}))]


@pytest.fixture
def machine(daemon: Daemon) -> Iterator[Any]:
    conn = open_machine(daemon.state_dir)
    yield conn
    conn.close()


def test_an_outside_start_and_destroy_show_through_the_api(daemon: Daemon, machine: Any) -> None:
    c = daemon.client()
    _setup(c, machine, "web")
    start_domain(machine, "web", "virsh start")
    _until("web runs", lambda: _ok(c.get("/api/v1/vms/web"))["state"] == "running")
    held = _until("web holds a VF", lambda: _nic(c, "web")["virtual_function"])
    assert held["index"] == 0
    assert "VM web started outside iovctl (virsh start)" in _messages(c, "web")

    stop_domain(machine, "web", "crashed")
    _until("web is off", lambda: _ok(c.get("/api/v1/vms/web"))["state"] == "off")
    assert _nic(c, "web")["virtual_function"] is None
    vf = _ok(c.get("/api/v1/adapters/enp1s0/vfs"))[0]
    assert (vf["in_use"], vf["mac"]) == (False, "00:00:00:00:00:00")  # scrubbed
    assert "VM web stopped outside iovctl (crashed): its VFs were released" in _messages(c, "web")


def test_a_vf_freed_outside_goes_to_the_next_waiter(daemon: Daemon, machine: Any) -> None:
    c = daemon.client()
    _setup(c, machine, "web", "db")
    start_domain(machine, "web")
    _until("web holds the VF", lambda: _nic(c, "web")["virtual_function"])
    start_domain(machine, "db")
    _until("db runs", lambda: _ok(c.get("/api/v1/vms/db"))["state"] == "running")
    assert _nic(c, "db")["status_reason"] == "vfs-exhausted"
    stop_domain(machine, "web", "shut down")
    _until("db holds the VF", lambda: _nic(c, "db")["virtual_function"])


def test_what_happened_while_the_daemon_was_down_is_followed_at_its_start(
    short_dir: Path,
) -> None:
    daemon = start_daemon(short_dir)
    try:
        machine = open_machine(daemon.state_dir)
        _setup(daemon.client(), machine, "web")
        assert daemon.stop()[0] == 0
        start_domain(machine, "web", "autostart")
        daemon = start_daemon(short_dir)
        c = daemon.client()
        _until("web runs", lambda: _ok(c.get("/api/v1/vms/web"))["state"] == "running")
        _until("web holds a VF", lambda: _nic(c, "web")["virtual_function"])
    finally:
        code, err = daemon.stop(signal.SIGTERM)
    assert code == 0, err


def test_a_guest_that_never_negotiates_failover_gives_its_vf_to_the_next_waiter(
    short_dir: Path,
) -> None:
    daemon = start_daemon(short_dir, args=("--failover-wait", "2"))
    try:
        machine = open_machine(daemon.state_dir)
        c = daemon.client()
        _setup(c, machine, "old", failover=False)
        define_domain(machine, "web")
        _ok(c.post("/api/v1/vms/import", json={"name": "web"}))
        _ok(c.post("/api/v1/vms/web/nics", json={"switch": "sw0", "iov_weight": 10}))
        start_domain(machine, "old")
        _until("old holds the VF", lambda: _nic(c, "old")["virtual_function"])
        start_domain(machine, "web")
        _until("web runs", lambda: _ok(c.get("/api/v1/vms/web"))["state"] == "running")
        _until("web holds the VF", lambda: _nic(c, "web")["virtual_function"])
        old = _nic(c, "old")
        assert (old["virtual_function"], old["status_reason"]) == (None, "guest-no-failover")
        assert "Linux >= 4.18" in old["status_description"]
        assert _nic(c, "web")["vf_data_path_active"] is True
    finally:
        code, err = daemon.stop()
    assert code == 0, err


def test_a_failover_wait_below_a_second_is_refused(short_dir: Path) -> None:
    with pytest.raises(AssertionError, match="invalid-failover-wait"):
        start_daemon(short_dir, args=("--failover-wait", "0"))


def test_a_vf_a_libvirt_pool_lets_go_reaches_a_waiting_nic(daemon: Daemon, machine: Any) -> None:
    c = daemon.client()
    _ok(c.post("/api/v1/adapters/enp1s0/enable", json={"num_vfs": 1}))
    _ok(c.post("/api/v1/switches", json={"name": "sw0", "uplink": "enp1s0", "iov": True}))
    [vf] = _ok(c.get("/api/v1/adapters/enp1s0/vfs"))
    sim.hold_pool_vf(machine, vf["pci_address"], "network pool hostnet")
    _ok(c.post("/api/v1/vms", json={"name": "own"}))
    _ok(c.post("/api/v1/vms/own/nics", json={"switch": "sw0", "iov_weight": 50}))
    _ok(c.post("/api/v1/vms/own/start"))
    assert _nic(c, "own")["status_reason"] == "vfs-exhausted"
    [shown] = _ok(c.get("/api/v1/adapters/enp1s0/vfs"))
    assert (shown["in_use"], shown["held_elsewhere"]) == (True, True)
    sim.release_pool_vf(machine, vf["pci_address"])
    _until("own holds the VF", lambda: _nic(c, "own")["virtual_function"])


def test_a_resync_catches_a_change_no_watch_reported(tmp_path: Path) -> None:
    """A watch reports only what happens after it began; the daemon's periodic sync
    (Follower.sync, in-process here) finds the rest."""
    from iovctl.http.follower import Follower
    from iovctl.http.gateway import Gateway
    from iovctl.services import api
    from iovctl.wiring import Options

    gateway = Gateway(Options(state_dir=tmp_path, sim="demo"))
    gateway.call(api.host_show, writes=False)  # the machine, powered on
    machine = open_machine(tmp_path)
    try:
        define_domain(machine, "web")
        gateway.call(lambda c: api.vm_import(c, "web"), writes=True)
        start_domain(machine, "web")
        follower = Follower(gateway)
        assert follower.sync() == [("web", True)]
        assert follower.sync() == []
        assert gateway.call(lambda c: api.vm_show(c, "web"), writes=False).state == "running"
    finally:
        machine.close()
