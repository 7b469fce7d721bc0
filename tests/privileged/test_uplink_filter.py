"""The uplink's own unicast filter holds exactly the MACs of NICs on the software path.

A NIC's embedded switch sends a VF's frame to an unknown MAC out on the wire, never up
to the PF; so the MAC of every NIC on the software path is put in the PF's filter
(``bridge fdb ... self``), and taken out again when the NIC moves to a VF, changes MAC
or goes away. Checked with ``bridge fdb show``, not with iovctl's own reading.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest
from netns_lab import Lab

from iovctl.services import vms

pytestmark = pytest.mark.privileged


def uplink_macs(lab: Lab) -> set[str]:
    """Unicast MACs in the uplink's own filter ("self" entries), as iproute2 shows them."""
    out = subprocess.run(
        ["bridge", "-j", "fdb", "show", "dev", lab.adapter],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return {
        e["mac"]
        for e in json.loads(out.stdout or "[]")
        if "self" in e.get("flags", []) and not int(e["mac"].split(":")[0], 16) & 1
    }


def test_only_software_path_macs_are_on_the_uplink(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("veb", num_vfs=1)
    before = uplink_macs(lab)
    on_vf = lab.add_vm("v", weight=100)
    on_sw = lab.add_vm("s", weight=0)
    vf_mac, sw_mac = lab.nic(on_vf)["mac"], lab.nic(on_sw)["mac"]
    assert lab.nic(on_vf)["vf_data_path_active"] is True
    assert uplink_macs(lab) - before == {sw_mac}

    lab.call(vms.set_nic, on_vf, "nic0", vms.NicChanges(iov_weight=0))  # VF taken away
    assert uplink_macs(lab) - before == {sw_mac, vf_mac}
    lab.call(vms.set_nic, on_vf, "nic0", vms.NicChanges(iov_weight=100))  # and back
    assert lab.nic(on_vf)["vf_data_path_active"] is True
    assert uplink_macs(lab) - before == {sw_mac}

    lab.call(vms.set_nic, on_sw, "nic0", vms.NicChanges(mac="02:00:00:00:aa:01"))
    assert uplink_macs(lab) - before == {"02:00:00:00:aa:01"}

    lab.call(vms.stop_vm, on_sw)
    assert uplink_macs(lab) - before == set()
    lab.call(vms.start_vm, on_sw)
    assert uplink_macs(lab) - before == {"02:00:00:00:aa:01"}
    lab.call(vms.remove_nic, on_sw, "nic0")
    assert uplink_macs(lab) == before


def test_vm_on_vf_reaches_vm_on_software_path(make_lab: Callable[..., Lab]) -> None:
    from netns_lab import probe

    lab = make_lab("veb", num_vfs=1)
    on_vf = lab.add_vm("v", weight=100)
    on_sw = lab.add_vm("s", weight=0)
    assert lab.nic(on_vf)["vf_data_path_active"] is True
    assert probe(lab.ns(on_vf), "ping", lab.ip(on_sw), "3")["received"] == 3
    assert probe(lab.ns(on_sw), "ping", lab.ip(on_vf), "3")["received"] == 3


def test_own_broadcasts_looped_back_by_the_nic_do_not_move_a_software_path_mac(
    make_lab: Callable[..., Lab],
) -> None:
    """QEMU's igb hands a pool's broadcast back to every pool, the sender's included, so
    the host bridge heard a software-path VM's own announcement again from the uplink
    and moved its MAC there (found with the bench on real VFs: the VM, a server, was
    unreachable from the software path). Replayed here by sending such a frame into
    the uplink from the NIC's side."""
    from netns_lab import probe

    from iovctl.adapters.netns import names
    from iovctl.services.views import bridge_name

    lab = make_lab("veb", num_vfs=1)
    server = lab.add_vm("s", weight=100)
    client = lab.add_vm("c", weight=0)
    lab.call(vms.set_nic, server, "nic0", vms.NicChanges(iov_weight=0))  # VF path, then not
    mac = lab.nic(server)["mac"]
    probe(names.nic_netns(lab.adapter), "spoof", names.PF_PORT, mac, "3")
    fdb = subprocess.run(
        ["bridge", "-j", "fdb", "show", "br", bridge_name(lab.switch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ports = {
        e["ifname"]
        for e in json.loads(fdb.stdout)
        if e["mac"] == mac and "self" not in e.get("flags", [])  # not the PF's filter
    }
    assert ports == {names.synthetic_host_ifname(server, "nic0")}
    assert probe(lab.ns(client), "ping", lab.ip(server), "3")["received"] == 3
