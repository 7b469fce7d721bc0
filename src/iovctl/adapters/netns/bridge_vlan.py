"""A NIC's access VLAN on the software path: the switch's bridge filters VLANs.

On the VF path the NIC holds the VLAN (the PF tags what the VF sends and hands the VF
only its VLAN's frames, untagged). On the software path the switch's Linux bridge does
the same once its VLAN filtering is on:

- the NIC's host end is an **access port**: its VLAN is the port's PVID and leaves it
  untagged, and no other VLAN reaches it; a NIC without a VLAN gets the bridge's
  default VLAN (1) the same way;
- the **uplink** is a trunk: VLAN 1 untagged (what a bridge gives every port), and
  each VLAN a NIC of this switch uses, tagged. The bridge programs them into the PF's
  VLAN filter, so the NIC's own switch hands tagged frames of those VLANs, from the
  wire and from VFs, up to the PF.

A NIC in a **private VLAN** gets the VLANs ``domain.pvlan.port_vlans`` says (its
port sends in its secondary VLAN, or the primary when promiscuous, and hears the
primary, or every secondary when promiscuous), and the uplink trunks them all, so
its frames leave the host tagged as a private VLAN switch sends them. The bridge
learns MACs per VLAN, so each such port's MAC is pinned (static, sticky) in every
VLAN the port gains: replies in another VLAN than their request are not flooded.

Filtering is switched on when a switch's first NIC with a VLAN (or a private VLAN the
uplink can tag) is plugged and then stays on; a bridge that never had one runs as
before, untouched. A kernel built without ``CONFIG_BRIDGE_VLAN_FILTERING`` refuses
it: a NIC with a VLAN then does not start, because on the software path its frames
would leave untagged, in the VLAN of every NIC without one; a NIC in a private VLAN
starts, its frames leave untagged and its status says so (the bridge's nftables
rules hold the private VLAN rule between this host's NICs). VLAN changes go through
one ``bridge -batch`` run (none when nothing changes); after a NIC leaves, the VLANs
no port uses any more leave the uplink (and a promiscuous port) too.

Must not import the CLI, the store or other adapters.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pyroute2 import NetlinkError

from iovctl.adapters.netns.kernel import Links, kernel_error, run_tool
from iovctl.domain.pvlan import PortVlans
from iovctl.errors import HardwareError

#: The VLAN a Linux bridge gives each new port (``default_pvid``), untagged.
DEFAULT_PVID = 1
_ACCESS = frozenset({"PVID", "Egress Untagged"})
_UNTAGGED = frozenset({"Egress Untagged"})


def filtering(bridge: Any) -> bool:
    """Whether the bridge's RTM_NEWLINK message says VLAN filtering is on."""
    return bool(bridge.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING"))


def ensure_filtering(links: Links, bridge: Any, switch: str, nic: str, vlan: int) -> None:
    """Switch VLAN filtering on for the bridge of ``switch``, for ``nic``'s ``vlan``."""
    if filtering(bridge):
        return
    try:
        links().link("set", index=bridge["index"], kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code in (errno.EOPNOTSUPP, errno.EINVAL):
            raise HardwareError(
                "software-vlan-unsupported",
                f"network adapter {nic} is in VLAN {vlan}, and this kernel's bridge cannot "
                f"filter VLANs: on switch {switch}'s software path its frames would leave "
                "untagged, in the VLAN of every NIC without one",
                f"use a kernel with CONFIG_BRIDGE_VLAN_FILTERING (distribution kernels have "
                f"it), or take the VLAN off: iovctl nic set {nic.replace('/', ' ')} --vlan 0",
                exc.code,
            ) from exc
        raise kernel_error(f"turning on VLAN filtering on switch {switch}", exc) from exc


def try_filtering(links: Links, bridge: Any, switch: str) -> bool:
    """Switch VLAN filtering on for the bridge of ``switch`` if this kernel can;
    whether it is on. For NICs that can do without (private VLANs: untagged, said so)."""
    if filtering(bridge):
        return True
    try:
        links().link("set", index=bridge["index"], kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code in (errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise kernel_error(f"turning on VLAN filtering on switch {switch}", exc) from exc
    return True


def port_vlans(text: str) -> dict[str, dict[int, frozenset[str]]]:
    """Parse ``bridge -j vlan show``: port -> VLAN id -> flags. iproute2 names a VLAN
    ``vlan`` (``vlanEnd`` for the last of a range)."""
    out: dict[str, dict[int, frozenset[str]]] = {}
    for entry in json.loads(text or "[]"):
        vids = out.setdefault(str(entry["ifname"]), {})
        for v in entry.get("vlans", []):
            first, last = int(v["vlan"]), int(v.get("vlanEnd", v["vlan"]))
            for vid in range(first, last + 1):
                vids[vid] = frozenset(v.get("flags", []))
    return out


def access(vlan: int) -> PortVlans:
    """An access port of ``vlan`` (0: the bridge's default VLAN)."""
    vid = vlan or DEFAULT_PVID
    return PortVlans(vid, frozenset({vid}))


def plan(
    current: dict[str, dict[int, frozenset[str]]],
    ports: Mapping[str, PortVlans],
    uplink: str,
    neighbours: Iterable[str] = (),
    pins: Mapping[str, str] | None = None,
) -> list[str]:
    """``bridge -batch`` lines that give each of ``ports`` exactly its VLANs (the PVID
    and every member VLAN untagged) and make ``uplink`` a trunk of every VLAN a NIC
    port of the bridge is in: ``ports`` and the ``neighbours`` (the bridge's other NIC
    ports, kept as they are). VLAN 1 stays the uplink's untagged default. ``pins``:
    port -> MAC pinned (static, sticky) in each VLAN the port gains. Pure."""
    lines = []
    trunk: set[int] = set()
    for port, want in sorted(ports.items()):
        have = current.get(port, {})
        trunk |= want.vlans
        lines += [f"vlan del dev {port} vid {vid}" for vid in sorted(have) if vid not in want.vlans]
        for vid in sorted(want.vlans):
            flags = _ACCESS if vid == want.pvid else _UNTAGGED
            if have.get(vid) != flags:
                pvid = " pvid" if vid == want.pvid else ""
                lines.append(f"vlan add dev {port} vid {vid}{pvid} untagged")
        mac = (pins or {}).get(port)
        if mac is not None:
            lines += [
                f"fdb replace {mac} dev {port} master static sticky vlan {vid}"
                for vid in sorted(want.vlans - have.keys())
            ]
    for other in neighbours:
        trunk |= set(current.get(other, {}))
    trunk.discard(DEFAULT_PVID)
    have = current.get(uplink, {})
    lines += [
        f"vlan del dev {uplink} vid {vid}"
        for vid in sorted(have)
        if vid != DEFAULT_PVID and vid not in trunk
    ]
    lines += [f"vlan add dev {uplink} vid {vid}" for vid in sorted(trunk) if vid not in have]
    return lines


def unpins(
    current: dict[str, dict[int, frozenset[str]]],
    ports: Mapping[str, PortVlans],
    macs: Mapping[str, str],
) -> list[str]:
    """``bridge -batch`` lines that take each port's MAC (``macs``) out of the FDB in
    each VLAN the port leaves: a static entry outlives its VLAN on the port (the
    kernel's br_fdb_delete_by_port keeps static entries). Pure."""
    return [
        f"fdb del {macs[port]} dev {port} master vlan {vid}"
        for port, want in sorted(ports.items())
        if port in macs
        for vid in sorted(set(current.get(port, {})) - want.vlans)
    ]


def sync(
    uplink: str,
    ports: Mapping[str, PortVlans],
    neighbours: Iterable[str],
    pins: Mapping[str, str] | None = None,
    macs: Mapping[str, str] | None = None,
) -> None:
    """Make the bridge's VLANs hold ``ports`` (see :func:`plan`), with their MACs
    (``macs``) unpinned from the VLANs they leave first (:func:`unpins`). Root."""
    current = port_vlans(run_tool(["bridge", "-j", "vlan", "show"]))
    gone = unpins(current, ports, macs or {})
    if gone:
        # -force: a pin that is not there (a NIC on its VF has none) is no reason to
        # keep the others.
        with contextlib.suppress(HardwareError):
            run_tool(["bridge", "-force", "-batch", "-"], stdin="\n".join(gone) + "\n")
    lines = plan(current, ports, uplink, neighbours, pins)
    if lines:
        run_tool(["bridge", "-batch", "-"], stdin="\n".join(lines) + "\n")


def vlans_of(port: str) -> list[int]:
    """The VLANs bridge port ``port`` is a member of, as the kernel says. Root."""
    return sorted(port_vlans(run_tool(["bridge", "-j", "vlan", "show", "dev", port])).get(port, {}))
