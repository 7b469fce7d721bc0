"""Real packets on both halves of the failover pair, through the emulated SR-IOV NIC.

What the allocator reports is what the packets do (interface counters), the embedded
switch's modes block exactly what they should, the spoof check drops forged source
MACs and the max rate holds, on the VF and on the synthetic half alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from netns_lab import Background, Lab, counters, probe

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import run_tool
from iovctl.services import vms

pytestmark = pytest.mark.privileged


def test_vf_path_and_synthetic_path_both_carry_traffic(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("veb", num_vfs=1)
    fast = lab.add_vm("f", weight=100)
    slow = lab.add_vm("s", weight=0)
    assert lab.nic(fast)["vf_data_path_active"] is True
    assert lab.nic(slow)["iov_usage"] is False

    vf = lab.vf_netdev(fast)
    syn = names.synthetic_vm_ifname("nic0")
    before_vf, before_syn = counters(lab.ns(fast), vf), counters(lab.ns(slow), syn)
    assert probe(lab.ns(fast), "ping", lab.world_ip, "5")["received"] == 5
    assert probe(lab.ns(slow), "ping", lab.world_ip, "5")["received"] == 5
    # VF path to software path, inside one host: through the NIC and the PF.
    assert probe(lab.ns(fast), "ping", lab.ip(slow), "3")["received"] == 3

    # The NIC the allocator put on the VF really sends through the VF netdev...
    assert counters(lab.ns(fast), vf)["tx"] - before_vf["tx"] >= 8
    # ...and its parked synthetic half sends nothing.
    assert counters(lab.ns(fast), syn)["tx"] == 0 or not _is_up(lab, fast, syn)
    assert counters(lab.ns(slow), syn)["tx"] - before_syn["tx"] >= 8


def _is_up(lab: Lab, vm: str, ifname: str) -> bool:
    message = lab.runtime._links.get(ifname, lab.ns(vm))
    return bool(message and message["flags"] & 1)


@pytest.mark.parametrize(
    ("mode", "vf_to_vf", "via_wire"),
    [("veb", True, False), ("vepa", True, True), ("isolated", False, False)],
)
def test_switch_modes_block_exactly_what_they_should(
    make_lab: Callable[..., Lab], mode: str, vf_to_vf: bool, via_wire: bool
) -> None:
    lab = make_lab(mode, num_vfs=2)
    a = lab.add_vm("a", weight=100)
    b = lab.add_vm("b", weight=100)
    soft = lab.add_vm("c", weight=0)
    assert lab.nic(a)["iov_usage"] and lab.nic(b)["iov_usage"]

    for vm in (a, b):  # every mode: VFs reach the wire and the PF's software path
        assert probe(lab.ns(vm), "ping", lab.world_ip, "3")["received"] == 3
        assert probe(lab.ns(vm), "ping", lab.ip(soft), "3")["received"] == 3

    wire = names.wire_world_ifname(lab.adapter)
    before = counters(lab.world, wire)["rx"]
    got = probe(lab.ns(a), "ping", lab.ip(b), "5", "0.3")["received"]
    crossed_wire = counters(lab.world, wire)["rx"] - before
    if vf_to_vf:
        assert got == 5
    else:
        assert got == 0
    if via_wire:
        # VEPA: requests and replies both went out to the adjacent switch and back.
        assert crossed_wire >= 10
    elif mode == "veb":
        assert crossed_wire < 5  # switched inside the NIC (ARP broadcasts may leak)


@pytest.mark.parametrize("allow_spoofing", [False, True])
def test_spoof_check_drops_a_forged_source_mac(
    make_lab: Callable[..., Lab], allow_spoofing: bool
) -> None:
    lab = make_lab("veb", num_vfs=1)
    vm = lab.add_vm("v", weight=100, allow_mac_spoofing=allow_spoofing)
    assert lab.nic(vm)["iov_usage"] is True
    forged = "52:54:00:de:ad:01"
    sniffer = Background(lab.world, "sniff", names.WORLD_BRIDGE, forged, "1.5", ready=True)
    probe(lab.ns(vm), "spoof", names.nic_ifname("nic0"), forged, "5")
    seen = sniffer.result()["seen"]
    if allow_spoofing:
        assert seen == 5
    else:
        assert seen == 0
    # The NIC's own MAC still gets through.
    assert probe(lab.ns(vm), "ping", lab.world_ip, "2")["received"] == 2


# -- the same settings on the synthetic half (IOV weight 0: never a VF) -------------


def _frames_seen_from(lab: Lab, vm: str, mac: str) -> int:
    """How many of 5 broadcasts the VM's workload sends with source ``mac`` reach the world."""
    sniffer = Background(lab.world, "sniff", names.WORLD_BRIDGE, mac, "1.5", ready=True)
    probe(lab.ns(vm), "spoof", names.nic_ifname("nic0"), mac, "5")
    return int(sniffer.result()["seen"])


@pytest.mark.parametrize("allow_spoofing", [False, True])
def test_spoof_check_drops_a_forged_source_mac_on_the_synthetic_path(
    make_lab: Callable[..., Lab], allow_spoofing: bool
) -> None:
    lab = make_lab("veb", num_vfs=1)
    vm = lab.add_vm("v", weight=0, allow_mac_spoofing=allow_spoofing)
    assert lab.nic(vm)["iov_usage"] is False
    seen = _frames_seen_from(lab, vm, "52:54:00:de:ad:01")
    assert seen == (5 if allow_spoofing else 0)
    # The NIC's own MAC still gets through.
    assert probe(lab.ns(vm), "ping", lab.world_ip, "2")["received"] == 2


def test_synthetic_spoof_check_follows_the_setting_and_the_mac(
    make_lab: Callable[..., Lab],
) -> None:
    """``nic set`` on a running NIC: the check goes off, comes back for a new MAC."""
    lab = make_lab("veb", num_vfs=0)
    vm = lab.add_vm("m", weight=0)
    forged = "52:54:00:de:ad:02"
    assert _frames_seen_from(lab, vm, forged) == 0
    lab.call(vms.set_nic, vm, "nic0", vms.NicChanges(allow_mac_spoofing=True))
    assert _frames_seen_from(lab, vm, forged) == 5

    old = lab.nic(vm)["mac"]
    new = "52:54:00:be:ef:02"
    lab.call(vms.set_nic, vm, "nic0", vms.NicChanges(allow_mac_spoofing=False, mac=new))
    assert _frames_seen_from(lab, vm, forged) == 0
    assert _frames_seen_from(lab, vm, old) == 0  # the old MAC is a forgery now
    assert probe(lab.ns(vm), "ping", lab.world_ip, "2")["received"] == 2  # the new one passes


@pytest.mark.parametrize("path", ["vf", "synthetic"])
def test_max_rate_holds_within_ten_percent(make_lab: Callable[..., Lab], path: str) -> None:
    """On either half of the pair: the VF's shaper, or the synthetic veth's."""
    lab = make_lab("veb", num_vfs=1)
    vm = lab.add_vm("r", weight=100 if path == "vf" else 0, max_rate=200)
    assert lab.nic(vm)["iov_usage"] is (path == "vf")
    for port, rate in (("5201", 200), ("5202", 400)):
        if rate != 200:  # raising the limit on a running NIC reshapes it in place
            lab.call(vms.set_nic, vm, "nic0", vms.NicChanges(max_rate=rate))
        sink = Background(lab.world, "sink", port, "15", ready=True)
        probe(lab.ns(vm), "source", lab.world_ip, port, "3")
        mbps = sink.result()["mbps"]
        print(f"{path} max rate {rate} Mbit/s: measured {mbps:.1f} Mbit/s")
        assert rate * 0.9 <= mbps <= rate * 1.1
    if path == "vf":
        return

    # No limit, no shaper.
    syn = names.synthetic_vm_ifname("nic0")
    assert "tbf" in run_tool(["tc", "qdisc", "show", "dev", syn], lab.ns(vm))
    lab.call(vms.set_nic, vm, "nic0", vms.NicChanges(max_rate=0))
    assert lab.nic(vm)["max_rate"] is None
    assert "tbf" not in run_tool(["tc", "qdisc", "show", "dev", syn], lab.ns(vm))
