"""A NIC's VLAN must hold on the software path too (adapters/netns/bridge_vlan.py).

Where the kernel's bridge filters VLANs, the switch's bridge makes the NIC's host end
an access port of its VLAN (tested on the igb guest's distribution kernel:
tests/testbed/test_vms_on_igb_vfs.py). Where it cannot, as on this project's CI
kernel (no CONFIG_BRIDGE_VLAN_FILTERING, no 8021q), a NIC with a VLAN would leave the
host untagged, in the VLAN of every NIC without one: it is refused, by name, and
nothing of it is left behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from netns_lab import Lab, probe

from iovctl.adapters.netns import names
from iovctl.adapters.netns.kernel import Links, netns_exists
from iovctl.domain.model import VmState
from iovctl.domain.names import bridge_name
from iovctl.errors import HardwareError
from iovctl.services import vms

pytestmark = pytest.mark.privileged


def bridge_filters_vlans() -> bool:
    """Ask the kernel, in a throwaway namespace that dies with the command."""
    done = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", "b0", "type", "bridge", "vlan_filtering", "1"],
        capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


needs_no_filtering = pytest.mark.skipif(
    bridge_filters_vlans(),
    reason="this kernel's bridge filters VLANs (the igb guest tests that case)",
)


@needs_no_filtering
def test_vm_with_a_vlan_nic_does_not_start_and_leaves_nothing(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("veb", num_vfs=1)
    vm = f"{lab.tag}x"
    lab.vms.append(vm)
    lab.call(vms.create_vm, vm)
    lab.call(vms.add_nic, vm, lab.switch, "nic0", vms.NicChanges(iov_weight=100, vlan=100))
    links = Links()
    try:
        before = set(links.names())
        with pytest.raises(HardwareError) as caught:
            lab.call(vms.start_vm, vm)
        error = caught.value
        assert error.code == "software-vlan-unsupported"
        assert f"network adapter {vm}/nic0 is in VLAN 100" in error.message
        assert f"iovctl nic set {vm} nic0 --vlan 0" in (error.hint or "")
        assert lab.store.get_vm(vm).state is VmState.OFF
        assert lab.store.get_nic(vm, "nic0").assignment is None
        assert not netns_exists(names.vm_netns(vm))
        # The switch's own bridge (its software path) may now exist; nothing of the VM.
        assert set(links.names()) - before <= {bridge_name(lab.switch)}
    finally:
        links.close()


@needs_no_filtering
def test_giving_a_running_nic_a_vlan_is_refused_and_changes_nothing(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("veb", num_vfs=0)
    vm = lab.add_vm("s", weight=0)
    before = lab.nic(vm)
    with pytest.raises(HardwareError) as caught:
        lab.call(vms.set_nic, vm, "nic0", vms.NicChanges(vlan=100))
    assert caught.value.code == "software-vlan-unsupported"
    assert lab.nic(vm) == before
    assert lab.store.get_nic(vm, "nic0").config.vlan is None
    assert probe(lab.ns(vm), "ping", lab.world_ip, "2")["received"] == 2
