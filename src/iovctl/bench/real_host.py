"""``iovctl bench datapath --adapter PF``: the bench on a real SR-IOV adapter.

The bench takes the PF for the run: it enables VFs, makes the PF the uplink of a
throwaway switch (a Linux bridge), and puts the VMs on real VFs. Its "world" is a
peer VM on the software path of that switch, since the real world beyond the wire
runs no probe: a VM on a VF reaches it through the NIC's loopback to the PF (the
peer's MAC is in the PF's own filter), a VM on the software path through the bridge.

The PF must be idle, because bridging it would cut whatever uses it: no VFs, no
addresses, no master. It is given back as found: VFs 0, no master, up or down. The
adapter's facts come from the services, its link's from the traffic lab (a port).
"""

from __future__ import annotations

from iovctl.errors import Conflict, InvalidInput
from iovctl.ports.traffic_lab import PfLink, TrafficLab
from iovctl.services import adapters
from iovctl.services.context import Context

HINT = "give the bench an idle SR-IOV PF (no VFs, no addresses, not in a bridge or bond)"


def take(ctx: Context, pf: str, lab: TrafficLab) -> PfLink:
    """Check that ``pf`` is an idle SR-IOV PF the bench may take; returns its link as
    found, which :func:`give_back` restores."""
    link = lab.pf_link(pf)
    known = {a.name: a for a in adapters.list_adapters(ctx)}
    if link is None or pf not in known:
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
    if link.has_master:
        raise Conflict("adapter-in-use", f"adapter {pf} is a port of another device", HINT)
    if link.addresses:
        raise Conflict(
            "adapter-in-use",
            f"adapter {pf} carries addresses ({', '.join(link.addresses)}); "
            "a bridge would cut them",
            HINT,
        )
    return link


def give_back(found: PfLink, lab: TrafficLab) -> None:
    """The PF as it was: out of any bridge, and down again if it was down."""
    lab.restore_pf(found)
