"""Private VLANs hold with real packets, on both paths of one switch (issue 11).

One switch on an emulated NIC with two promiscuous, two isolated, two community-A and
one community-B NIC, plus one NIC in no private VLAN, some on VFs and some on the
software path: every ordered pair is pinged, and exactly the pairs that
``domain.pvlan.may_reach`` allows answer. Each source pings its whole row at once
(``netprobe ping-many``), all rows in parallel: a matrix costs about its timeout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from netns_lab import Background, Lab, probe

from iovctl.adapters.netns import names, pvlan_nft
from iovctl.adapters.netns.nft import nft_chains
from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import may_reach
from iovctl.services import vms
from iovctl.services.views import bridge_name

pytestmark = pytest.mark.privileged

P, ISO, C = PvlanMode.PROMISCUOUS, PvlanMode.ISOLATED, PvlanMode.COMMUNITY
#: NIC -> its private VLAN (None: in none). Primary VLAN 100; isolated 101, A 102, B 103.
ROLES: dict[str, PrivateVlan | None] = {
    "p1": PrivateVlan(P, 100),
    "p2": PrivateVlan(P, 100),
    "i1": PrivateVlan(ISO, 100, 101),
    "i2": PrivateVlan(ISO, 100, 101),
    "a1": PrivateVlan(C, 100, 102),
    "a2": PrivateVlan(C, 100, 102),
    "b1": PrivateVlan(C, 100, 103),
    "n1": None,
}
#: Seconds a row waits for answers: the allowed pairs answer in milliseconds.
ROW_TIMEOUT_S = "1.0"


def reachability(lab: Lab, vm_of: dict[str, str]) -> set[tuple[str, str]]:
    """Every ordered pair (source, destination) of roles whose ping was answered."""
    role_of_ip = {lab.ip(vm): role for role, vm in vm_of.items()}
    rows = {
        role: Background(
            lab.ns(vm),
            "ping-many",
            ROW_TIMEOUT_S,
            *(lab.ip(other) for r, other in vm_of.items() if r != role),
        )
        for role, vm in vm_of.items()
    }
    return {(role, role_of_ip[ip]) for role, row in rows.items() for ip in row.result()["answered"]}


def heard(lab: Lab, vm_of: dict[str, str], sender: str, listeners: list[str]) -> set[str]:
    """Which listeners' NICs receive the broadcasts (ARP requests) ``sender`` sends."""
    mac = lab.nic(vm_of[sender])["mac"]
    ears = {
        r: Background(lab.ns(vm_of[r]), "sniff", "nic0", mac, "0.6", ready=True) for r in listeners
    }
    probe(lab.ns(vm_of[sender]), "spoof", "nic0", mac, "5")  # its own MAC: no spoofing
    return {r for r, ear in ears.items() if ear.result()["seen"]}


def allowed(roles: list[str]) -> set[tuple[str, str]]:
    return {(a, b) for a in roles for b in roles if a != b and may_reach(ROLES[a], ROLES[b])}


def _paths(lab: Lab, vm_of: dict[str, str]) -> dict[str, str]:
    return {role: lab.nic(vm)["pvlan"]["enforced_by"] for role, vm in vm_of.items()}


def test_every_pair_talks_exactly_as_the_rule_allows_on_the_software_path(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("veb", num_vfs=0)
    vm_of = {role: lab.add_vm(role, weight=0, pvlan=pvlan) for role, pvlan in ROLES.items()}
    started = time.monotonic()
    assert reachability(lab, vm_of) == allowed(list(ROLES))
    print(f"software path, matrix of {len(ROLES)} NICs: {time.monotonic() - started:.2f} s")
    # The emulated NIC's switch hands its VFs' frames up untagged: so does the bridge,
    # and each NIC says why (the igb guest tests the tagging: tests/testbed).
    for role, vm in vm_of.items():
        shown = lab.nic(vm)["pvlan"]
        if ROLES[role] is not None:
            assert shown["uplink_tagged"] is False
            assert "untagged (the uplink's embedded switch (an emulated NIC)" in shown["description"]


def test_every_pair_talks_exactly_as_the_rule_allows_on_both_paths(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("veb", num_vfs=4)
    on_vf = {"p1", "i1", "a1", "b1"}
    vm_of = {
        role: lab.add_vm(role, weight=100 if role in on_vf else 0, pvlan=pvlan)
        for role, pvlan in ROLES.items()
    }
    paths = _paths(lab, {r: v for r, v in vm_of.items() if ROLES[r] is not None})
    assert {r for r, p in paths.items() if p == "vf"} == on_vf
    assert {r for r, p in paths.items() if p == "software"} == set(paths) - on_vf

    started = time.monotonic()
    assert reachability(lab, vm_of) == allowed(list(ROLES))
    print(f"both paths, matrix of {len(ROLES)} NICs: {time.monotonic() - started:.2f} s")

    # Broadcasts too (each copy is judged where it leaves): from the software path to
    # VFs and back, heard by the promiscuous NICs only.
    for sender, denied, allowed_to in (("i2", "i1", "p1"), ("i1", "i2", "p2")):
        assert heard(lab, vm_of, sender, [denied, allowed_to]) == {allowed_to}

    # a1 loses its VF: the software path of the same switch takes over, same rule.
    lab.call(vms.set_nic, vm_of["a1"], "nic0", vms.NicChanges(iov_weight=0))
    assert lab.nic(vm_of["a1"])["pvlan"]["enforced_by"] == "software"
    assert reachability(lab, vm_of) == allowed(list(ROLES))
    # a2 (software path, same community) takes the VF a1 gave back.
    lab.call(vms.set_nic, vm_of["a2"], "nic0", vms.NicChanges(iov_weight=100))
    assert lab.nic(vm_of["a2"])["pvlan"]["enforced_by"] == "vf"
    assert reachability(lab, vm_of) == allowed(list(ROLES))


def test_changes_apply_at_once_and_nothing_is_left_behind(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("veb", num_vfs=0)
    roles = ["p1", "i1", "i2"]
    vm_of = {role: lab.add_vm(role, weight=0, pvlan=ROLES[role]) for role in roles}
    assert reachability(lab, vm_of) == allowed(roles)
    chain = bridge_name(lab.switch)
    assert chain in nft_chains(pvlan_nft.TABLE, "bridge")

    # i2 becomes promiscuous: i1 reaches it at once; then it leaves private VLANs.
    lab.call(vms.set_nic, vm_of["i2"], "nic0", vms.NicChanges(pvlan=PrivateVlan(P, 100)))
    assert ("i1", "i2") in reachability(lab, vm_of)
    lab.call(vms.set_nic, vm_of["i2"], "nic0", vms.NicChanges(clear_pvlan=True))
    assert {("p1", "i1"), ("i1", "p1")} == reachability(lab, vm_of)

    # A NIC removed from a running VM takes its port out of the rules at once.
    port = names.synthetic_host_ifname(vm_of["p1"], "nic0")
    assert port in _rules(chain)
    lab.call(vms.remove_nic, vm_of["p1"], "nic0")
    assert port not in _rules(chain)
    lab.call(vms.stop_vm, vm_of["i2"])
    lab.call(vms.delete_vm, vm_of["i2"])
    assert chain in nft_chains(pvlan_nft.TABLE, "bridge")  # i1 is still isolated
    lab.call(vms.stop_vm, vm_of["i1"])
    assert chain not in nft_chains(pvlan_nft.TABLE, "bridge")


def _rules(chain: str) -> str:
    return subprocess.run(
        ["nft", "list", "chain", "bridge", pvlan_nft.TABLE, chain],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
