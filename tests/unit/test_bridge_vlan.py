"""The bridge VLAN plan (adapters/netns/bridge_vlan.py): pure, no kernel."""

from __future__ import annotations

import json

from iovctl.adapters.netns.bridge_vlan import access, plan, port_vlans, unpins
from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import port_vlans as pvlan_port_vlans

ACCESS = frozenset({"PVID", "Egress Untagged"})


def test_parses_ranges_and_flags_as_iproute2_prints_them() -> None:
    text = json.dumps(
        [
            {"ifname": "br", "vlans": [{"vlan": 1, "flags": ["PVID", "Egress Untagged"]}]},
            {"ifname": "up", "vlans": [{"vlan": 1, "flags": ["PVID", "Egress Untagged"]},
                                       {"vlan": 10, "vlanEnd": 12}]},
        ]
    )  # fmt: skip
    assert port_vlans(text) == {
        "br": {1: ACCESS},
        "up": {1: ACCESS, 10: frozenset(), 11: frozenset(), 12: frozenset()},
    }
    assert port_vlans("") == {}


def test_new_vlan_port_becomes_an_access_port_and_the_uplink_trunks_it() -> None:
    current = {"p": {1: ACCESS}, "up": {1: ACCESS}, "q": {1: ACCESS}}
    assert plan(current, {"p": access(100)}, "up", ["q"]) == [
        "vlan del dev p vid 1",
        "vlan add dev p vid 100 pvid untagged",
        "vlan add dev up vid 100",
    ]


def test_nothing_to_do_when_it_holds_already() -> None:
    current = {"p": {100: ACCESS}, "up": {1: ACCESS, 100: frozenset()}}
    assert plan(current, {"p": access(100)}, "up", []) == []


def test_a_vlan_another_nic_still_uses_stays_on_the_uplink() -> None:
    current = {
        "p": {100: ACCESS},
        "q": {100: ACCESS},
        "up": {1: ACCESS, 100: frozenset(), 200: frozenset()},
    }
    # p leaves VLAN 100 for none; q keeps 100 on the trunk; nobody uses 200 any more.
    assert plan(current, {"p": access(0)}, "up", ["q"]) == [
        "vlan del dev p vid 100",
        "vlan add dev p vid 1 pvid untagged",
        "vlan del dev up vid 200",
    ]


def test_default_vlan_is_never_tagged_on_the_uplink() -> None:
    current = {"p": {}, "up": {1: ACCESS}}
    assert plan(current, {"p": access(1)}, "up", []) == ["vlan add dev p vid 1 pvid untagged"]


# -- private VLANs ---------------------------------------------------------------------

UNTAGGED = frozenset({"Egress Untagged"})
P = PrivateVlan(PvlanMode.PROMISCUOUS, 100)
I = PrivateVlan(PvlanMode.ISOLATED, 100, 101)  # noqa: E741
A = PrivateVlan(PvlanMode.COMMUNITY, 100, 102)


def test_private_vlan_ports_get_their_vlans_pinned_and_the_uplink_trunks_them() -> None:
    """New ports of a bridge that filters VLANs (each has only the default VLAN)."""
    current = {"p": {1: ACCESS}, "i": {1: ACCESS}, "a": {1: ACCESS}, "up": {1: ACCESS}}
    ports = pvlan_port_vlans({"p": P, "i": I, "a": A})
    pins = {"p": "52:54:00:00:00:01", "i": "52:54:00:00:00:02", "a": "52:54:00:00:00:03"}
    assert plan(current, ports, "up", [], pins) == [
        "vlan del dev a vid 1",
        "vlan add dev a vid 100 untagged",
        "vlan add dev a vid 102 pvid untagged",
        "fdb replace 52:54:00:00:00:03 dev a master static sticky vlan 100",
        "fdb replace 52:54:00:00:00:03 dev a master static sticky vlan 102",
        "vlan del dev i vid 1",
        "vlan add dev i vid 100 untagged",
        "vlan add dev i vid 101 pvid untagged",
        "fdb replace 52:54:00:00:00:02 dev i master static sticky vlan 100",
        "fdb replace 52:54:00:00:00:02 dev i master static sticky vlan 101",
        "vlan del dev p vid 1",
        "vlan add dev p vid 100 pvid untagged",
        "vlan add dev p vid 101 untagged",
        "vlan add dev p vid 102 untagged",
        "fdb replace 52:54:00:00:00:01 dev p master static sticky vlan 100",
        "fdb replace 52:54:00:00:00:01 dev p master static sticky vlan 101",
        "fdb replace 52:54:00:00:00:01 dev p master static sticky vlan 102",
        "vlan add dev up vid 100",
        "vlan add dev up vid 101",
        "vlan add dev up vid 102",
    ]


def test_a_community_leaving_leaves_the_promiscuous_port_and_the_uplink() -> None:
    """Port a is gone (its entries with it): p stops hearing 102, the uplink drops it;
    a plain neighbour in VLAN 7 keeps 7 on the trunk."""
    current = {
        "p": {100: ACCESS, 101: UNTAGGED, 102: UNTAGGED},
        "i": {100: UNTAGGED, 101: ACCESS},
        "q": {7: ACCESS},
        "up": {1: ACCESS, 7: frozenset(), 100: frozenset(), 101: frozenset(), 102: frozenset()},
    }
    ports = pvlan_port_vlans({"p": P, "i": I})
    assert plan(current, ports, "up", ["q"], {"p": "m1", "i": "m2"}) == [
        "vlan del dev p vid 102",
        "vlan del dev up vid 102",
    ]


def test_a_port_that_holds_its_private_vlans_costs_nothing() -> None:
    current = {
        "p": {100: ACCESS, 101: UNTAGGED},
        "i": {100: UNTAGGED, 101: ACCESS},
        "up": {1: ACCESS, 100: frozenset(), 101: frozenset()},
    }
    assert plan(current, pvlan_port_vlans({"p": P, "i": I}), "up", [], {"p": "m"}) == []


def test_a_nic_moving_from_community_to_isolated_changes_its_pvid() -> None:
    current = {"a": {100: UNTAGGED, 102: ACCESS}, "up": {1: ACCESS, 100: frozenset(), 102: frozenset()}}
    assert plan(current, pvlan_port_vlans({"a": I}), "up", [], {"a": "m"}) == [
        "vlan del dev a vid 102",
        "vlan add dev a vid 101 pvid untagged",
        "fdb replace m dev a master static sticky vlan 101",
        "vlan del dev up vid 102",
        "vlan add dev up vid 101",
    ]


def test_a_port_leaving_a_vlan_takes_its_mac_pin_out_of_it_first() -> None:
    """Static FDB entries outlive the port's VLAN: a promiscuous port that stops
    hearing 102, and a NIC moved from community 102 to access VLAN 7, unpin there."""
    current = {
        "p": {100: ACCESS, 101: UNTAGGED, 102: UNTAGGED},
        "a": {100: UNTAGGED, 102: ACCESS},
    }
    ports = {**pvlan_port_vlans({"p": P, "i": I}), "a": access(7)}
    assert unpins(current, ports, {"p": "m1", "a": "m2"}) == [
        "fdb del m2 dev a master vlan 100",
        "fdb del m2 dev a master vlan 102",
        "fdb del m1 dev p master vlan 102",
    ]
    assert unpins(current, ports, {}) == []  # no MAC known: nothing pinned by us
