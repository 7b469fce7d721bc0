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

Filtering is switched on when a switch's first NIC with a VLAN is plugged and then
stays on; a bridge that never had one runs as before, untouched. A kernel built
without ``CONFIG_BRIDGE_VLAN_FILTERING`` refuses it: a NIC with a VLAN then does not
start, because on the software path its frames would leave untagged, in the VLAN of
every NIC without one. VLAN changes go through one ``bridge -batch`` run (none when
nothing changes).

Must not import the CLI, the store or other adapters.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable
from typing import Any

from pyroute2 import NetlinkError

from iovctl.adapters.netns.kernel import Links, kernel_error, run_tool
from iovctl.errors import HardwareError

#: The VLAN a Linux bridge gives each new port (``default_pvid``), untagged.
DEFAULT_PVID = 1
_ACCESS = frozenset({"PVID", "Egress Untagged"})


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


def plan(
    current: dict[str, dict[int, frozenset[str]]],
    port: str,
    vlan: int,
    uplink: str,
    neighbours: Iterable[str],
) -> list[str]:
    """``bridge -batch`` lines that make ``port`` an access port of ``vlan`` (0: the
    default VLAN) and ``uplink`` a trunk of the VLANs its ``neighbours`` (the bridge's
    other NIC ports) and ``port`` use. Pure."""
    access = vlan or DEFAULT_PVID
    lines = [
        f"vlan del dev {port} vid {vid}" for vid in sorted(current.get(port, {})) if vid != access
    ]
    if current.get(port, {}).get(access) != _ACCESS:
        lines.append(f"vlan add dev {port} vid {access} pvid untagged")
    trunk = {access}
    for other in neighbours:
        trunk |= {vid for vid, flags in current.get(other, {}).items() if "PVID" in flags}
    trunk.discard(DEFAULT_PVID)
    have = current.get(uplink, {})
    lines += [
        f"vlan del dev {uplink} vid {vid}"
        for vid in sorted(have)
        if vid != DEFAULT_PVID and vid not in trunk
    ]
    lines += [f"vlan add dev {uplink} vid {vid}" for vid in sorted(trunk) if vid not in have]
    return lines


def sync(links: Links, bridge: int, port: str, vlan: int, uplink: str) -> None:
    """Make the bridge's VLANs hold ``port``'s ``vlan`` (see :func:`plan`). Root."""
    current = port_vlans(run_tool(["bridge", "-j", "vlan", "show"]))
    neighbours = [
        str(m.get("IFLA_IFNAME"))
        for m in links().get_links()
        if m.get("IFLA_MASTER") == bridge and str(m.get("IFLA_IFNAME")) not in (port, uplink)
    ]
    lines = plan(current, port, vlan, uplink, neighbours)
    if lines:
        run_tool(["bridge", "-batch", "-"], stdin="\n".join(lines) + "\n")
