"""Lab helpers for privileged tests: an emulated SR-IOV NIC, a world, VMs as namespaces.

Every object a lab creates carries the test's own tag in its name, and the fixture's
finalizer removes them even when the test failed. Needs root (tests/conftest.py skips
``privileged`` tests without it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import (
    Links,
    list_netns,
    remove_netns,
    wait_until,
)
from iovctl.adapters.netns.nft import nft_delete_chain, nft_delete_table_if_empty
from iovctl.adapters.netns.nic import EmulatedNic
from iovctl.adapters.netns.runtime import NetnsVmRuntime
from iovctl.adapters.netns.spec import parse_emulation
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.services.views import bridge_name, to_json

PROBE = Path(__file__).with_name("netprobe.py")


def probe(ns: str, *args: str, timeout: float = 30) -> dict[str, Any]:
    """Run a netprobe command in namespace ``ns`` and return its JSON answer."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"probe {args} in {ns} failed: {done.stderr}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Background:
    """A netprobe command running while the test does something else."""

    def __init__(self, ns: str, *args: str, ready: bool = False) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PROBE), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if ready:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            assert "ready" in line, (
                f"{args} did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
            )

    def result(self, timeout: float = 30) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"background probe failed: {err}"
        return dict(json.loads(out.strip().splitlines()[-1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def counters(ns: str | None, ifname: str) -> dict[str, int]:
    """tx/rx packet counters of an interface."""
    links = Links()
    try:
        message = links.get(ifname, ns)
        assert message is not None, f"{ifname} not in {ns}"
        stats = message.get("IFLA_STATS64")
        return {"tx": int(stats["tx_packets"]), "rx": int(stats["rx_packets"])}
    finally:
        links.close()


@dataclass
class Lab:
    """One emulated adapter (uplink of switch ``switch``), its world, and VMs."""

    tag: str
    mode: str
    store: SqliteStore
    hardware: EmulatedNic
    runtime: NetnsVmRuntime
    ctx: Context
    vms: list[str] = field(default_factory=list)

    @property
    def adapter(self) -> str:
        return f"ie{self.tag}"

    @property
    def switch(self) -> str:
        return f"sw{self.tag}"

    @property
    def world(self) -> str:
        return f"iov-w{self.tag}"

    @property
    def world_ip(self) -> str:
        return str(self.hardware.spec.world_address.ip)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a service call as one journaled operation, as the CLI does."""
        return journal.run(self.ctx, fn, *args, **kwargs)

    def add_vm(self, suffix: str, weight: int, **changes: Any) -> str:
        """Create and start VM ``<tag><suffix>`` with one NIC ``nic0``; returns its name."""
        name = f"{self.tag}{suffix}"
        self.vms.append(name)
        self.call(vms.create_vm, name)
        self.call(
            vms.add_nic, name, self.switch, "nic0", vms.NicChanges(iov_weight=weight, **changes)
        )
        self.call(vms.start_vm, name)
        return name

    def nic(self, vm: str) -> dict[str, Any]:
        """The NIC's ``-o json`` view."""
        with self.store.snapshot():
            view: dict[str, Any] = to_json(vms.show_nic(self.ctx, vm, "nic0"))
            return view

    def ns(self, vm: str) -> str:
        return names.vm_netns(vm)

    def ip(self, vm: str) -> str:
        nic = self.store.get_nic(vm, "nic0")
        address = self.runtime.guest_address(vm, "nic0", nic.config)
        assert address is not None
        return str(address.ip)

    def vf_netdev(self, vm: str) -> str:
        nic = self.nic(vm)
        assert nic["virtual_function"] is not None, f"{vm} holds no VF"
        return names.vf_netdev(self.adapter, nic["virtual_function"]["index"])

    def teardown(self) -> None:
        """Remove everything of this lab, VM namespaces first (their VFs die with them)."""
        self.runtime.close()
        self.hardware.close()
        self.store.close()
        spaces = [n for n in list_netns("iov-") if self.tag in n]
        for ns in sorted(spaces, key=lambda n: not n.startswith("iov-vm-")):
            remove_netns(ns)
        links = Links()
        try:
            mine = {bridge_name(self.switch), self.adapter}
            mine |= {names.synthetic_host_ifname(vm, "nic0") for vm in self.vms}
            for name in mine:
                links.delete(name)
            assert wait_until(lambda: not mine & set(links.names()))
        finally:
            links.close()
        # The synthetic ports' spoof checks, which may outlive their devices.
        for vm in self.vms:
            nft_delete_chain(names.SYNTHETIC_NFT_TABLE, names.synthetic_host_ifname(vm, "nic0"))
        nft_delete_table_if_empty(names.SYNTHETIC_NFT_TABLE)
        # The switch bridge's private VLAN filters, named after it.
        nft_delete_chain(names.PVLAN_NFT_TABLE, bridge_name(self.switch), "bridge")
        nft_delete_table_if_empty(names.PVLAN_NFT_TABLE, "bridge")


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """Factory: ``make_lab(mode="veb", num_vfs=2)`` builds a lab torn down after the test."""
    labs: list[Lab] = []

    def make(mode: str = "veb", num_vfs: int = 2, total_vfs: int = 4) -> Lab:
        tag = uuid.uuid4().hex[:6]
        spec = parse_emulation(
            {
                "name": f"lab-{tag}",
                "world": {"netns": f"iov-w{tag}"},
                "adapters": [{"name": f"ie{tag}", "mode": mode, "total_vfs": total_vfs}],
            }
        )
        store = SqliteStore.open(tmp_path / tag)
        hardware = EmulatedNic(spec)
        runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
        lab = Lab(tag, mode, store, hardware, runtime, Context(store, hardware, runtime))
        labs.append(lab)
        hardware.ensure()
        lab.call(switches.create, lab.switch, lab.adapter, True)
        if num_vfs:
            lab.call(adapters.set_num_vfs, lab.adapter, num_vfs)
        return lab

    yield make
    for lab in labs:
        lab.teardown()
