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
filters from :func:`denied_pairs`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    membership: PrivateVlan | None, *, running: bool, on_vf: bool
) -> dict[str, object] | None:
    """The ``pvlan`` part of a NIC's view: its membership, which path enforces it now,
    and what its frames carry on the uplink. None for a NIC in no private VLAN.

    ``enforced_by``: ``vf`` (the NIC's embedded switch, for a NIC on its VF),
    ``software`` (the switch's bridge), None while the VM is off. Both paths tell the
    other's NICs apart by MAC, so the rule holds between them too. ``uplink_tagged``
    is false: frames leave the uplink untagged (no primary or secondary VLAN tag), so
    the rule holds between this host's NICs and a switch upstream does not see it.
    """
    if membership is None:
        return None
    path = ("vf" if on_vf else "software") if running else None
    where = {
        "vf": "by the NIC's embedded switch (on its VF)",
        "software": "by the switch's bridge (software path)",
        None: "once the VM runs",
    }[path]
    return {
        "mode": membership.mode.value,
        "primary_vlan": membership.primary_vlan,
        "secondary_vlan": membership.secondary_vlan,
        "enforced_by": path,
        "uplink_tagged": False,
        "description": (
            f"{describe(membership)}, enforced {where}; frames leave the uplink untagged, "
            "so the rule holds between this host's NICs only"
        ),
    }
