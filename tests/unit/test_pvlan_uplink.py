"""What a private VLAN's ports carry on a bridge that filters VLANs (domain.pvlan:
port_vlans, trunk_vlans, status): pure data, applied by adapters/netns/bridge_vlan."""

from __future__ import annotations

from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import PortVlans, UplinkTagging, port_vlans, status, trunk_vlans

PROMISCUOUS = PrivateVlan(PvlanMode.PROMISCUOUS, 100)
ISOLATED = PrivateVlan(PvlanMode.ISOLATED, 100, 101)
COMMUNITY_A = PrivateVlan(PvlanMode.COMMUNITY, 100, 102)
COMMUNITY_B = PrivateVlan(PvlanMode.COMMUNITY, 100, 103)
OTHER = PrivateVlan(PvlanMode.COMMUNITY, 200, 202)


def test_each_port_sends_in_its_vlan_and_hears_what_the_rule_lets_reach_it() -> None:
    ports = {
        "p": PROMISCUOUS,
        "i": ISOLATED,
        "a1": COMMUNITY_A,
        "a2": COMMUNITY_A,
        "b": COMMUNITY_B,
        "o": OTHER,
    }
    assert port_vlans(ports) == {
        "p": PortVlans(100, frozenset({100, 101, 102, 103})),
        "i": PortVlans(101, frozenset({101, 100})),
        "a1": PortVlans(102, frozenset({102, 100})),
        "a2": PortVlans(102, frozenset({102, 100})),
        "b": PortVlans(103, frozenset({103, 100})),
        "o": PortVlans(202, frozenset({202, 200})),
    }
    assert trunk_vlans(ports.values()) == {100, 101, 102, 103, 200, 202}


def test_a_promiscuous_port_hears_only_the_secondaries_in_use_and_its_own() -> None:
    assert port_vlans({"p": PROMISCUOUS}) == {"p": PortVlans(100, frozenset({100}))}
    named = PrivateVlan(PvlanMode.PROMISCUOUS, 100, 109)
    assert port_vlans({"p": named, "i": ISOLATED}) == {
        "p": PortVlans(100, frozenset({100, 101, 109})),
        "i": PortVlans(101, frozenset({101, 100})),
    }
    assert trunk_vlans([named]) == {100, 109}


def test_status_says_what_the_uplink_carries_and_why_not() -> None:
    def shown(tagging: UplinkTagging, **kw: bool) -> tuple[object, str]:
        s = status(COMMUNITY_A, running=kw.get("running", True), on_vf=kw.get("on_vf", False),
                   tagging=tagging)  # fmt: skip
        assert s is not None
        return s["uplink_tagged"], str(s["description"])

    tagged, text = shown(UplinkTagging.TAGGED)
    assert tagged is True and "tagged with VLAN 102" in text
    tagged, text = shown(UplinkTagging.KERNEL_CANNOT)
    assert tagged is False and "cannot filter VLANs" in text and "untagged" in text
    tagged, text = shown(UplinkTagging.NIC_CANNOT)
    assert tagged is False and "emulated NIC" in text
    tagged, text = shown(UplinkTagging.TAGGED, on_vf=True)
    assert tagged is False and "VF's frames untagged" in text
    tagged, text = shown(UplinkTagging.TAGGED, running=False)
    assert tagged is False and "nothing leaves the uplink: the VM is off" in text
    promiscuous = status(PROMISCUOUS, running=True, on_vf=False, tagging=UplinkTagging.TAGGED)
    assert promiscuous is not None and "tagged with VLAN 100" in str(promiscuous["description"])
