"""Properties of the private VLAN rule (domain.pvlan.may_reach) and what derives from it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iovctl.domain.model import PrivateVlan, PvlanMode
from iovctl.domain.pvlan import (
    Membership,
    UplinkTagging,
    as_text,
    denied_pairs,
    enforcement_class,
    from_text,
    may_reach,
    port_vlans,
    sends_in,
    status,
    trunk_vlans,
)

VLANS = st.integers(1, 6)  # few VLANs: collisions are what the rule is about


@st.composite
def memberships(draw: st.DrawFn) -> Membership:
    if draw(st.integers(0, 4)) == 0:
        return None
    mode = draw(st.sampled_from(PvlanMode))
    primary = draw(VLANS)
    secondary = draw(VLANS.filter(lambda v: v != primary))
    if mode is PvlanMode.PROMISCUOUS and draw(st.booleans()):
        return PrivateVlan(mode, primary)
    return PrivateVlan(mode, primary, secondary)


def _mode(m: Membership) -> PvlanMode | None:
    return None if m is None else m.mode


@given(memberships(), memberships())
def test_the_rule_is_symmetric(a: Membership, b: Membership) -> None:
    # Every mode pairs symmetrically: a port never hears what it may not answer.
    assert may_reach(a, b) == may_reach(b, a)


@given(memberships(), memberships())
def test_promiscuous_reaches_everyone_in_its_primary_vlan(a: Membership, b: Membership) -> None:
    same_primary = a is not None and b is not None and a.primary_vlan == b.primary_vlan
    if same_primary and PvlanMode.PROMISCUOUS in (_mode(a), _mode(b)):
        assert may_reach(a, b)


@given(memberships(), memberships())
def test_isolated_reaches_only_promiscuous(a: Membership, b: Membership) -> None:
    if _mode(a) is PvlanMode.ISOLATED and may_reach(a, b):
        assert b is not None and b.mode is PvlanMode.PROMISCUOUS
        assert a is not None and b.primary_vlan == a.primary_vlan


@given(memberships(), memberships())
def test_community_reaches_its_community_and_promiscuous(a: Membership, b: Membership) -> None:
    if a is None or a.mode is not PvlanMode.COMMUNITY or b is None:
        return
    same_community = b.mode is PvlanMode.COMMUNITY and b.secondary_vlan == a.secondary_vlan
    expected = b.primary_vlan == a.primary_vlan and (
        b.mode is PvlanMode.PROMISCUOUS or same_community
    )
    assert may_reach(a, b) == expected


@given(memberships(), memberships())
def test_different_primary_vlans_never_meet(a: Membership, b: Membership) -> None:
    if a is not None and b is not None and a.primary_vlan != b.primary_vlan:
        assert not may_reach(a, b)


@given(memberships(), memberships())
def test_a_nic_without_a_private_vlan_is_outside_all_of_them(a: Membership, b: Membership) -> None:
    if a is None:
        assert may_reach(a, b) == (b is None)


@given(memberships())
def test_a_port_reaches_its_own_kind_unless_isolated(a: Membership) -> None:
    assert may_reach(a, a) == (_mode(a) is not PvlanMode.ISOLATED)


@given(st.lists(memberships(), max_size=8))
def test_denied_pairs_are_exactly_the_pairs_the_rule_stops(ports: list[Membership]) -> None:
    denied = set(denied_pairs(ports))
    if all(p is None for p in ports):
        assert not denied
        return
    for a in ports:
        for b in ports:
            pair = (enforcement_class(a), enforcement_class(b))
            assert (pair in denied) == (not may_reach(a, b))
    assert denied_pairs(ports) == denied_pairs(list(reversed(ports)))  # stable


@given(memberships(), memberships())
def test_the_class_decides_as_the_membership_does(a: Membership, b: Membership) -> None:
    assert may_reach(enforcement_class(a), enforcement_class(b)) == may_reach(a, b)


@given(memberships())
def test_text_round_trip(m: Membership) -> None:
    # Adapters keep a membership in an alias or a column (secondary 0 = none).
    assert from_text(as_text(m)) == m
    assert from_text("anything else") is None


@given(memberships(), st.booleans(), st.booleans(), st.sampled_from(UplinkTagging))
def test_status_names_the_path_that_enforces_and_what_the_uplink_carries(
    m: Membership, running: bool, on_vf: bool, tagging: UplinkTagging
) -> None:
    shown = status(m, running=running, on_vf=on_vf, tagging=tagging)
    if m is None:
        assert shown is None
        return
    assert shown is not None
    assert shown["enforced_by"] == (("vf" if on_vf else "software") if running else None)
    assert (shown["mode"], shown["primary_vlan"]) == (m.mode.value, m.primary_vlan)
    # Tagged only what the software path of a running NIC sends, and only if it can.
    tagged = running and not on_vf and tagging is UplinkTagging.TAGGED
    assert shown["uplink_tagged"] is tagged
    text = str(shown["description"])
    if tagged:
        assert f"tagged with VLAN {sends_in(m)}" in text
    elif running and (on_vf or tagging is not UplinkTagging.OFF):
        assert "untagged" in text and "this host's NICs only" in text
    else:
        assert "nothing leaves the uplink" in text


PRIVATE = memberships().filter(lambda m: m is not None)


@given(st.lists(PRIVATE, min_size=1, max_size=8))
def test_vlans_never_stop_what_the_rule_allows(ports: list[PrivateVlan]) -> None:
    """A frame a port sends travels in its PVID and reaches the ports that are members
    of it: every pair the rule allows (the bridge's nftables rules stop the rest)."""
    vlans = port_vlans({str(i): m for i, m in enumerate(ports)})
    for i, a in enumerate(ports):
        assert vlans[str(i)].pvid == sends_in(a) in vlans[str(i)].vlans
        for j, b in enumerate(ports):
            if may_reach(a, b):
                assert vlans[str(i)].pvid in vlans[str(j)].vlans


@given(st.lists(PRIVATE, min_size=1, max_size=8))
def test_the_uplink_carries_every_vlan_and_hands_each_to_the_ports_it_may_reach(
    ports: list[PrivateVlan],
) -> None:
    """Tagged P reaches every port of primary P, tagged C (a community) its community
    and the promiscuous ports: as if a port of that class upstream had sent it."""
    vlans = port_vlans({str(i): m for i, m in enumerate(ports)})
    trunk = trunk_vlans(ports)
    assert set().union(*(v.vlans for v in vlans.values())) <= trunk
    primaries = {m.primary_vlan for m in ports}
    secondaries = {m.secondary_vlan for m in ports if m.secondary_vlan is not None}
    for j, b in enumerate(ports):
        for sender in ports:
            if sender.mode is PvlanMode.ISOLATED or sends_in(sender) in primaries & secondaries:
                continue  # one VLAN id in two roles: only the nftables rules tell them apart
            if may_reach(sender, b):
                assert sends_in(sender) in vlans[str(j)].vlans
