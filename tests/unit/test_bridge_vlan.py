"""The bridge VLAN plan (adapters/netns/bridge_vlan.py): pure, no kernel."""

from __future__ import annotations

import json

from iovctl.adapters.netns.bridge_vlan import plan, port_vlans

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
    assert plan(current, "p", 100, "up", ["q"]) == [
        "vlan del dev p vid 1",
        "vlan add dev p vid 100 pvid untagged",
        "vlan add dev up vid 100",
    ]


def test_nothing_to_do_when_it_holds_already() -> None:
    current = {"p": {100: ACCESS}, "up": {1: ACCESS, 100: frozenset()}}
    assert plan(current, "p", 100, "up", []) == []


def test_a_vlan_another_nic_still_uses_stays_on_the_uplink() -> None:
    current = {
        "p": {100: ACCESS},
        "q": {100: ACCESS},
        "up": {1: ACCESS, 100: frozenset(), 200: frozenset()},
    }
    # p leaves VLAN 100 for none; q keeps 100 on the trunk; nobody uses 200 any more.
    assert plan(current, "p", 0, "up", ["q"]) == [
        "vlan del dev p vid 100",
        "vlan add dev p vid 1 pvid untagged",
        "vlan del dev up vid 200",
    ]


def test_default_vlan_is_never_tagged_on_the_uplink() -> None:
    current = {"p": {}, "up": {1: ACCESS}}
    assert plan(current, "p", 1, "up", []) == ["vlan add dev p vid 1 pvid untagged"]
