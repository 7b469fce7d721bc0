"""pvlan_nft's pure half: what a port's alias says, and the rules derived from the rule."""

from __future__ import annotations

from iovctl.adapters.netns.pvlan_nft import Member, alias, digest, member, plan, script
from iovctl.domain.model import PrivateVlan, PvlanMode

PROM = PrivateVlan(PvlanMode.PROMISCUOUS, 100)
ISO = PrivateVlan(PvlanMode.ISOLATED, 100, 101)
COMM = PrivateVlan(PvlanMode.COMMUNITY, 100, 102)


def test_an_alias_says_whose_port_it_is() -> None:
    for pvlan in (PROM, ISO, COMM, None):
        assert member("iovs1", alias("52:54:00:00:00:01", pvlan)) == Member(
            "iovs1", "52:54:00:00:00:01", pvlan
        )
    assert member("uplink", None) is None
    assert member("uplink", "someone else's words") is None
    assert member("iovs1", "iovctl-port mac=52:54:00:00:00:01 pvlan=bogus/1/2") == Member(
        "iovs1", "52:54:00:00:00:01", None
    )


def test_no_private_vlan_no_rules() -> None:
    members = [Member("a", "52:54:00:00:00:01", None), Member("b", "52:54:00:00:00:02", None)]
    assert plan(members, ["pf"]) == []


def test_two_isolated_ports_are_kept_apart_by_port_and_across_the_trunk_by_mac() -> None:
    members = [
        Member("a", "52:54:00:00:00:01", ISO),
        Member("b", "52:54:00:00:00:02", ISO),
        Member("c", "52:54:00:00:00:03", PROM),
    ]
    assert plan(members, ["pf"]) == [
        'iifname { "a", "b" } oifname { "a", "b" } drop',
        'iifname { "a", "b" } oifname { "pf" } ether daddr { 52:54:00:00:00:01, '
        "52:54:00:00:00:02 } drop",
        'iifname { "pf" } ether saddr { 52:54:00:00:00:01, 52:54:00:00:00:02 } '
        'oifname { "a", "b" } drop',
    ]


def test_a_nic_behind_the_trunk_is_judged_by_its_mac_only() -> None:
    members = [Member("a", "52:54:00:00:00:01", ISO), Member(None, "52:54:00:00:00:09", COMM)]
    rules = plan(members, ["pf"])
    assert 'iifname { "a" } oifname { "pf" } ether daddr { 52:54:00:00:00:09 } drop' in rules
    assert 'iifname { "pf" } ether saddr { 52:54:00:00:00:09 } oifname { "a" } drop' in rules
    assert not [r for r in rules if "None" in r]


def test_the_script_rewrites_the_chain_whole_and_signs_each_rule() -> None:
    rules = plan([Member("a", "52:54:00:00:00:01", ISO), Member("b", "52:54:00:00:00:02", ISO)], [])
    text = script("iovbr1", rules)
    assert "flush chain bridge iovctl_pvlan iovbr1" in text
    assert text.count(f'comment "{digest(rules)}"') == len(rules) == 1
