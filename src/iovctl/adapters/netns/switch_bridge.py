"""The switch's software path in the host: a Linux bridge named by
``domain.names.bridge_name`` with the switch's uplink (its PF netdev) as a port.

Shared by the runtimes whose VM NICs plug into that bridge (network namespaces,
libvirt domains). Needs root. Must not import the CLI, the store or a runtime.
"""

from __future__ import annotations

from iovctl.adapters.netns.kernel import NO_IPV6_ADDRESSES, Links
from iovctl.domain.names import bridge_name
from iovctl.errors import HardwareError


def ensure_switch_bridge(links: Links, switch: str, uplink: str) -> int:
    """Ensure the switch's bridge exists, is up, and has ``uplink`` as a port; its
    ifindex. Idempotent. Raises HardwareError ``uplink-missing`` when the uplink has
    no netdev in this host (the bridge is left, empty, for the next try). Root."""
    name = bridge_name(switch)
    links.add(f"creating the bridge of switch {switch}", ifname=name, kind="bridge")
    index = links.index(name)
    links.set(
        f"starting the bridge of switch {switch}",
        index=index,
        state="up",
        IFLA_AF_SPEC=NO_IPV6_ADDRESSES,
    )
    message = links.get(uplink)
    if message is None:
        raise HardwareError(
            "uplink-missing",
            f"the uplink {uplink} of switch {switch} has no netdev in this host",
            "check the adapter: iovctl adapter show " + uplink,
        )
    if message.get("IFLA_MASTER") != index:
        links.set(
            f"attaching {uplink} to switch {switch}",
            index=message["index"],
            master=index,
            state="up",
        )
    assert index is not None
    return index


def remove_switch_bridge(links: Links, switch: str) -> None:
    """Delete the switch's bridge; its uplink stays. Idempotent. Root."""
    links.delete(bridge_name(switch))
