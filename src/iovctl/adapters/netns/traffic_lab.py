"""NetnsTrafficLab: ``ports.traffic_lab.TrafficLab`` with network namespaces.

The emulation's world is a namespace (``ip netns exec``); a real PF is checked and
restored over rtnetlink; a run's objects are found by the names ``names`` derives
from what the run named, and removed by ``cleanup``. Needs root.

Must not import services, the CLI or the store.
"""

from __future__ import annotations

import socket

from iovctl.adapters.netns import names
from iovctl.adapters.netns.cleanup import cleanup, leftovers
from iovctl.adapters.netns.kernel import Links
from iovctl.domain.names import bridge_name
from iovctl.ports.traffic_lab import LabObjects, LabRun, PfLink

IFF_UP = 0x1
#: RT_SCOPE_UNIVERSE: a global IPv6 address (link-local ones cut nothing).
_GLOBAL_SCOPE = 0


def run_prefixes(run: LabRun) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Namespace and host-link name prefixes of everything ``run`` may have made."""
    spaces: tuple[str, ...] = (names.vm_netns(run.vm_prefix),)
    host_links: tuple[str, ...] = (
        bridge_name(run.switch),
        *(names.synthetic_host_ifname(vm, run.nic) for vm in run.vms),
    )
    if run.emulated_adapter is not None:  # the emulated adapter is the run's own
        # Its VF netdevs start with its name (names.vf_netdev).
        spaces += (names.nic_netns(run.emulated_adapter),)
        host_links = (run.emulated_adapter, *host_links)
    if run.world is not None:
        spaces += (run.world,)
    return spaces, host_links


class NetnsTrafficLab:
    """Implements ``TrafficLab`` (ports) with namespaces and rtnetlink. Root."""

    def __init__(self) -> None:
        self._links: Links | None = None

    @property
    def links(self) -> Links:
        if self._links is None:
            self._links = Links()
        return self._links

    def world_command(self, world: str) -> list[str]:
        """``ip netns exec WORLD``: the world is the namespace the spec names."""
        return ["ip", "netns", "exec", world]

    def pf_link(self, pf: str) -> PfLink | None:
        message = self.links.get(pf)
        if message is None:
            return None
        addresses = tuple(
            str(a.get("IFA_ADDRESS"))
            for a in self.links().get_addr(index=message["index"])
            if a["family"] == socket.AF_INET or a["scope"] == _GLOBAL_SCOPE
        )
        return PfLink(
            pf,
            up=bool(message["flags"] & IFF_UP),
            has_master=bool(message.get("IFLA_MASTER")),
            addresses=addresses,
        )

    def restore_pf(self, link: PfLink) -> None:
        index = self.links.index(link.name)
        if index is None:
            return
        self.links.set(f"releasing {link.name}", index=index, master=0)
        if not link.up:
            self.links.set(f"taking {link.name} down", index=index, state="down")

    def remove_run(self, run: LabRun) -> LabObjects:
        spaces, host_links = run_prefixes(run)
        done = cleanup(netns_prefix=spaces, link_prefix=host_links, extra_links=())
        return LabObjects(tuple(done.namespaces), tuple(done.links), tuple(done.nft_chains))

    def run_leftovers(self, run: LabRun) -> LabObjects:
        spaces, host_links = run_prefixes(run)
        found = leftovers(spaces, host_links)
        return LabObjects(tuple(found[0]), tuple(found[1]), tuple(found[2]))

    def close(self) -> None:
        if self._links is not None:
            self._links.close()
            self._links = None
