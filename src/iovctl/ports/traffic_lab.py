"""Port: the machine as a traffic lab, what ``iovctl bench`` needs beyond the services.

The bench builds its host through the services like any command; around that it
needs a place to run traffic outside the VMs (the emulation's world), a real PF
checked idle before it takes it and given back afterwards, and a sweep that removes
every object one run made, found by what the run named, and says what is left.
What runs inside VMs and what their NICs sent are runtime facts (``VmRuntime``).

The network-namespace adapter implements it (``adapters/netns/traffic_lab.py``);
wiring builds it (``wiring.traffic_lab``). Must not import any adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PfLink:
    """A real PF's netdev as the bench checks it and must put it back."""

    name: str
    up: bool
    #: It is a port of another device (a bridge, a bond).
    has_master: bool
    #: Its IPv4 and global IPv6 addresses: traffic a bridge would cut.
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabRun:
    """What one bench run named: everything it may have made derives from these."""

    #: Every VM of the run starts with this (also VMs a killed run did not record).
    vm_prefix: str
    #: The VMs it created, and the NIC each has.
    vms: tuple[str, ...]
    nic: str
    switch: str
    #: The emulated adapter and its world when the run made them; None on a real PF
    #: (which is not the run's to remove).
    emulated_adapter: str | None = None
    world: str | None = None


@dataclass(frozen=True)
class LabObjects:
    """Host objects of a run, by kind (the bench's JSON names these kinds)."""

    namespaces: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    nft_chains: tuple[str, ...] = ()


class TrafficLab(Protocol):
    """The machine around the VMs, for benchmarks. Needs root."""

    def world_command(self, world: str) -> list[str]:
        """The argv prefix that runs a program in the emulation's world ``world`` (as
        the emulation spec names it): the far end of the emulated uplink's wire."""
        ...

    def pf_link(self, pf: str) -> PfLink | None:
        """The PF's netdev (up, master, addresses); None when there is none."""
        ...

    def restore_pf(self, link: PfLink) -> None:
        """Put the PF back as ``link`` found it: out of any bridge, and down if it was
        down. A PF that has gone is left alone. Idempotent."""
        ...

    def remove_run(self, run: LabRun) -> LabObjects:
        """Delete every host object ``run`` made (also after it was killed midway),
        and nothing of anyone else's; waits (bounded) for the kernel. Returns what
        went. Idempotent."""
        ...

    def run_leftovers(self, run: LabRun) -> LabObjects:
        """What of ``run`` still exists (what :meth:`remove_run` would delete)."""
        ...

    def close(self) -> None:
        """Release what the lab holds open (sockets). Idempotent."""
        ...
