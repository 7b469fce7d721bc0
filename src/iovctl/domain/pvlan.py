"""The private VLAN rule: may one NIC's frames reach another's?

Hyper-V's ``Set-VMNetworkAdapterVlan -Isolated | -Community | -Promiscuous`` with a
primary and a secondary VLAN. Within one primary VLAN:

- a **promiscuous** port reaches every port;
- an **isolated** port reaches promiscuous ports only;
- a **community** port reaches promiscuous ports and the community ports of its own
  secondary VLAN.

Ports of different primary VLANs never meet, and a NIC without a private VLAN is
outside all of them (it meets the NICs without one; plain VLANs are the VLAN
feature's business). :func:`may_reach` is the rule; everything that enforces it (the
switch's bridge on the software path, an embedded switch on the VF path) derives its
filters from :func:`denied_pairs`.

**On the uplink** (:func:`port_vlans`, :func:`trunk_vlans`), where the switch's bridge
filters VLANs, a NIC's frames carry the VLAN a private VLAN switch sends them in:

==============  =======================  ==========================================
NIC's port      its untagged frames      member of (every VLAN leaves it untagged)
                join (PVID)
==============  =======================  ==========================================
promiscuous     the primary P            P, and every secondary in P of the bridge's
                                         ports (and its own secondary, if it names one)
isolated S      its secondary S          S and P
community C     its secondary C          C and P
uplink          (VLAN 1, as before)      every VLAN above, tagged
==============  =======================  ==========================================

So frames leave the uplink tagged P (from a promiscuous port), S (isolated) or C
(community); frames that arrive tagged P reach every port of P, tagged C the ports of
community C and the promiscuous ones, tagged S the promiscuous ones and the isolated
ports of S. That last is the one thing a Linux bridge cannot say: a port is a member
of a VLAN both ways, an isolated port must send in S, and the bridge's nftables rules
never see the tag of a frame it hands a port untagged (it is taken off before the
``forward`` hook). So an isolated port upstream reaches this host's isolated ports of
its secondary VLAN; a private VLAN switch upstream keeps its own isolated ports from
them. The nftables rules hold the rule between this host's ports (VLAN membership
alone would let two isolated ports of one S meet). A promiscuous
port hears the secondaries the bridge's ports use: one that only a switch upstream
uses stays off the trunk. A Linux bridge learns MACs per VLAN, and a reply travels in
another VLAN than its request: each such port's MAC is pinned on its port in each of
its VLANs (adapters/netns), else every reply to it would be flooded, out the uplink
too. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from iovctl.domain.model import PrivateVlan, PvlanMode

#: A NIC's private VLAN membership; None = not in any private VLAN.
Membership = PrivateVlan | None


def may_reach(source: Membership, destination: Membership) -> bool:
    """Whether frames of a NIC in ``source`` may reach a NIC in ``destination``."""
    if source is None or destination is None:
        return source is None and destination is None
    if source.primary_vlan != destination.primary_vlan:
        return False
    if PvlanMode.PROMISCUOUS in (source.mode, destination.mode):
        return True
    if PvlanMode.ISOLATED in (source.mode, destination.mode):
        return False
    return source.secondary_vlan == destination.secondary_vlan  # two community ports


def enforcement_class(membership: Membership) -> Membership:
    """What the rule looks at: a promiscuous port's secondary VLAN does not matter, so
    two promiscuous ports of one primary VLAN are one class."""
    if membership is not None and membership.mode is PvlanMode.PROMISCUOUS:
        return PrivateVlan(PvlanMode.PROMISCUOUS, membership.primary_vlan)
    return membership


def denied_pairs(memberships: Iterable[Membership]) -> list[tuple[Membership, Membership]]:
    """Every ordered pair (source class, destination class) among ``memberships``
    whose frames the rule stops, in a stable order; nothing when no membership is a
    private VLAN (then there is nothing to enforce)."""
    classes = sorted({enforcement_class(m) for m in memberships}, key=_order)
    if all(c is None for c in classes):
        return []
    return [(a, b) for a in classes for b in classes if not may_reach(a, b)]


def as_text(membership: Membership) -> str:
    """``mode/primary/secondary`` (secondary 0 for none), or ``-``: how adapters that
    keep a membership in a text field (an alias, a column) write it."""
    if membership is None:
        return "-"
    m = membership
    return f"{m.mode.value}/{m.primary_vlan}/{m.secondary_vlan or 0}"


def from_text(text: str | None) -> Membership:
    """The membership :func:`as_text` wrote; None for ``-``, nothing or anything else."""
    parts = (text or "-").split("/")
    if len(parts) != 3:
        return None
    try:
        mode, primary, secondary = PvlanMode(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    return PrivateVlan(mode, primary, secondary or None)


@dataclass(frozen=True)
class PortVlans:
    """A bridge port's VLANs on a bridge that filters VLANs."""

    #: The VLAN untagged frames entering the port join (what it sends in).
    pvid: int
    #: Every VLAN the port is a member of (``pvid`` among them); all leave it untagged.
    vlans: frozenset[int]


def sends_in(membership: PrivateVlan) -> int:
    """The VLAN a port's frames travel in: the primary for a promiscuous port, its
    secondary for an isolated or community port."""
    if membership.mode is PvlanMode.PROMISCUOUS or membership.secondary_vlan is None:
        return membership.primary_vlan
    return membership.secondary_vlan


def port_vlans(memberships: Mapping[str, PrivateVlan]) -> dict[str, PortVlans]:
    """Each port's VLANs (see the table above), for the ports of one bridge in a
    private VLAN, keyed by port. A promiscuous port's set depends on its neighbours:
    the secondaries of its primary VLAN that some port of ``memberships`` sends in."""
    secondaries: dict[int, set[int]] = {}
    for m in memberships.values():
        secondaries.setdefault(m.primary_vlan, set())
        if m.secondary_vlan is not None:
            secondaries[m.primary_vlan].add(m.secondary_vlan)
    out = {}
    for port, m in memberships.items():
        if m.mode is PvlanMode.PROMISCUOUS:
            vlans = {m.primary_vlan, *secondaries[m.primary_vlan]}
        else:
            vlans = {sends_in(m), m.primary_vlan}
        out[port] = PortVlans(sends_in(m), frozenset(vlans))
    return out


def trunk_vlans(memberships: Iterable[PrivateVlan]) -> frozenset[int]:
    """The VLANs the uplink carries, tagged, for these ports: every primary and
    secondary among them."""
    out: set[int] = set()
    for m in memberships:
        out.add(m.primary_vlan)
        if m.secondary_vlan is not None:
            out.add(m.secondary_vlan)
    return frozenset(out)


class UplinkTagging(enum.Enum):
    """What a NIC's frames carry when they leave the switch's uplink."""

    #: The VLAN of :func:`sends_in`: the switch's bridge filters VLANs.
    TAGGED = "tagged"
    #: Untagged: this kernel's bridge cannot filter VLANs.
    KERNEL_CANNOT = "kernel-cannot"
    #: Untagged: the uplink's embedded switch passes its VFs' frames untagged (the
    #: emulated NIC), so the software path does too, or the two paths would not meet.
    NIC_CANNOT = "nic-cannot"
    #: Untagged: the NIC is on its VF, whose frames the NIC's own switch sends out.
    ON_VF = "on-vf"
    #: Nothing leaves: the VM is off (or the NIC not plugged).
    OFF = "off"


_TAGGING_WORDS = {
    UplinkTagging.KERNEL_CANNOT: "this kernel's bridge cannot filter VLANs "
    "(no CONFIG_BRIDGE_VLAN_FILTERING)",
    UplinkTagging.NIC_CANNOT: "the uplink's embedded switch (an emulated NIC) passes its "
    "VFs' frames untagged",
    UplinkTagging.ON_VF: "the NIC's embedded switch sends its VF's frames untagged",
}


def describe(membership: PrivateVlan) -> str:
    """Human words: 'community 102 of primary VLAN 100'."""
    if membership.mode is PvlanMode.PROMISCUOUS or membership.secondary_vlan is None:
        return f"{membership.mode.value} in primary VLAN {membership.primary_vlan}"
    return (
        f"{membership.mode.value} (secondary VLAN {membership.secondary_vlan}) in primary "
        f"VLAN {membership.primary_vlan}"
    )


def _order(m: Membership) -> tuple[int, str, int, int]:
    if m is None:
        return (0, "", 0, 0)
    return (1, m.mode.value, m.primary_vlan, m.secondary_vlan or 0)


def status(
    membership: PrivateVlan | None,
    *,
    running: bool,
    on_vf: bool,
    tagging: UplinkTagging,
) -> dict[str, object] | None:
    """The ``pvlan`` part of a NIC's view: its membership, which path enforces it now,
    and what its frames carry on the uplink. None for a NIC in no private VLAN.

    ``enforced_by``: ``vf`` (the NIC's embedded switch, for a NIC on its VF),
    ``software`` (the switch's bridge), None while the VM is off. Both paths tell the
    other's NICs apart by MAC, so the rule holds between them too. ``tagging``: what
    the runtime says of the NIC's software path (it counts only while the VM runs and
    the NIC is not on its VF); ``uplink_tagged`` is whether its frames leave the
    uplink tagged with :func:`sends_in` now, and the description says why not.
    """
    if membership is None:
        return None
    path = ("vf" if on_vf else "software") if running else None
    where = {
        "vf": "by the NIC's embedded switch (on its VF)",
        "software": "by the switch's bridge (software path)",
        None: "once the VM runs",
    }[path]
    if not running:
        tagging = UplinkTagging.OFF
    elif on_vf:
        tagging = UplinkTagging.ON_VF
    if tagging is UplinkTagging.TAGGED:
        uplink = (
            f"frames leave the uplink tagged with VLAN {sends_in(membership)}, so a private "
            "VLAN switch upstream holds the rule too"
        )
    elif tagging is UplinkTagging.OFF:
        why = "the VM is off" if not running else "the NIC is not plugged into its switch"
        uplink = f"nothing leaves the uplink: {why}"
    else:
        uplink = (
            f"frames leave the uplink untagged ({_TAGGING_WORDS[tagging]}), so the rule holds "
            "between this host's NICs only"
        )
    return {
        "mode": membership.mode.value,
        "primary_vlan": membership.primary_vlan,
        "secondary_vlan": membership.secondary_vlan,
        "enforced_by": path,
        "uplink_tagged": tagging is UplinkTagging.TAGGED,
        "description": f"{describe(membership)}, enforced {where}; {uplink}",
    }
