"""``iovctl bench datapath --adapter PF``: the bench on a real SR-IOV adapter.

The bench takes the PF for the run: it enables VFs, makes the PF the uplink of a
throwaway switch (a Linux bridge), and puts the VMs on real VFs. Its "world" is a
peer VM on the software path of that switch, since the real world beyond the wire
runs no probe: a VM on a VF reaches it through the NIC's loopback to the PF (the
peer's MAC is in the PF's own filter), a VM on the software path through the bridge.

The PF must be idle, because bridging it would cut whatever uses it: no VFs, no
addresses, no master. It is given back as found: VFs 0, no master, up or down.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from iovctl.adapters.netns.kernel import Links
from iovctl.errors import Conflict, InvalidInput
from iovctl.services import adapters
from iovctl.services.context import Context

IFF_UP = 0x1
HINT = "give the bench an idle SR-IOV PF (no VFs, no addresses, not in a bridge or bond)"


@dataclass(frozen=True)
class PfState:
    """What the bench must put back."""

    name: str
    was_up: bool


def take(ctx: Context, pf: str, links: Links) -> PfState:
    """Check that ``pf`` is an idle SR-IOV PF the bench may take; remember its state."""
    message = links.get(pf)
    known = {a.name: a for a in adapters.list_adapters(ctx)}
    if message is None or pf not in known:
        raise InvalidInput(
            "adapter-not-found",
            f"network adapter {pf} does not exist on this host",
            "list them: iovctl adapter list",
        )
    adapter = known[pf]
    if not adapter.sriov_capable:
        raise InvalidInput("adapter-not-capable", f"adapter {pf} does not support SR-IOV", HINT)
    if adapter.num_vfs or adapter.switch_name:
        raise Conflict(
            "adapter-in-use",
            f"adapter {pf} has {adapter.num_vfs} VFs or a switch already",
            HINT,
        )
    if message.get("IFLA_MASTER"):
        raise Conflict("adapter-in-use", f"adapter {pf} is a port of another device", HINT)
    addresses = [
        str(a.get("IFA_ADDRESS"))
        for a in links().get_addr(index=message["index"])
        if a["family"] == socket.AF_INET or a["scope"] == 0  # IPv4, or global IPv6
    ]
    if addresses:
        raise Conflict(
            "adapter-in-use",
            f"adapter {pf} carries addresses ({', '.join(addresses)}); a bridge would cut them",
            HINT,
        )
    return PfState(pf, bool(message["flags"] & IFF_UP))


def give_back(state: PfState, links: Links) -> None:
    """The PF as it was: out of any bridge, and down again if it was down."""
    index = links.index(state.name)
    if index is not None:
        links.set(f"releasing {state.name}", index=index, master=0)
        if not state.was_up:
            links.set(f"taking {state.name} down", index=index, state="down")
