"""Guests that never negotiate failover: their VF goes to the next waiter.

QEMU plugs a VF of a failover pair only once the guest's virtio_net accepted
``VIRTIO_NET_F_STANDBY``; a guest without it (Linux < 4.18, a kernel built without
NET_FAILOVER, another OS) never sees the VF, and the VF would sit idle in the VM
forever. :class:`FailoverWatch` looks, now and then, at the NICs that hold a VF in
a running VM: one whose VF data path stayed inactive (``VmRuntime.
vf_data_path_active``) for longer than the bound is moved back to the software
path by :func:`give_up`, with the reason ``guest-no-failover`` and a hint, and its
VF goes to the next waiter. It waits for nothing itself: each look is one read
snapshot, each give-up one short journaled write (the store's lock is never held
across the bound). The daemon runs it (``http.follower``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iovctl.domain.model import EventLevel, VmState
from iovctl.domain.nic_rules import GUEST_NO_FAILOVER
from iovctl.services.allocation import rebalance, release_vf
from iovctl.services.context import Context

#: Seconds a VF may stay plugged without carrying traffic before its guest is taken
#: to lack failover. The guest must boot far enough to load virtio_net: under TCG
#: that took 150-215 s in the nested testbed; QEMU plugs the VF 8-16 s after.
BOUND_S = 300.0

#: (VM, NIC, the VF's PCI address): one grant of one VF.
Holding = tuple[str, str, str]


@dataclass
class FailoverWatch:
    """What one look saw, between looks: since when each grant has been idle."""

    bound: float = BOUND_S
    idle_since: dict[Holding, float] = field(default_factory=dict)

    def look(self, ctx: Context, now: float) -> list[Holding]:
        """Read-only (run it in a read snapshot): the grants idle beyond the bound.
        A grant seen carrying traffic, or gone, is forgotten. Only a hypervisor's
        guests negotiate failover: other runtimes' VFs are never given up here."""
        if not ctx.runtime.follows_hypervisor:
            return []
        running = {vm.name for vm in ctx.store.list_vms() if vm.state is VmState.RUNNING}
        seen: set[Holding] = set()
        overdue = []
        for switch in ctx.store.list_switches():
            for nic in ctx.store.nics_holding_vfs(switch.uplink):
                a = nic.assignment
                if a is None or nic.vm not in running:
                    continue
                key = (nic.vm, nic.name, a.pci_address)
                if ctx.runtime.vf_data_path_active(nic.vm, nic.name):
                    continue
                seen.add(key)
                since = self.idle_since.setdefault(key, now)
                if now - since >= self.bound:
                    overdue.append(key)
        self.idle_since = {k: v for k, v in self.idle_since.items() if k in seen}
        return overdue

    def forget(self, holding: Holding) -> None:
        self.idle_since.pop(holding, None)


def give_up(ctx: Context, vm: str, nic_name: str, pci_address: str, seconds: float) -> bool:
    """The NIC's guest never took its VF: back to the software path with the reason,
    the VF scrubbed and handed to the next waiter. A mutating service (run it under
    ``services.journal.run``). Checks again under the lock: nothing happens if the VF
    moved or started carrying traffic meanwhile; True when it gave up."""
    nic = ctx.store.find_nic(vm, nic_name)
    a = nic.assignment if nic is not None else None
    if nic is None or a is None or a.pci_address != pci_address:
        return False
    found = ctx.store.find_vm(vm)
    if found is None or found.state is not VmState.RUNNING:
        return False
    if ctx.runtime.vf_data_path_active(vm, nic_name):
        return False
    why = (
        f"its guest never took VF {a.index} of {a.adapter} in {seconds:.0f} s "
        "(virtio_net did not negotiate failover)"
    )
    release_vf(ctx, nic, why, "vf-revoked")
    ctx.store.set_wait_reason(nic.id, GUEST_NO_FAILOVER)
    ctx.store.set_grant_error(nic.id, why)
    ctx.event(
        EventLevel.WARNING,
        GUEST_NO_FAILOVER,
        "nic",
        nic.label,
        f"{nic.label}: {why}; it stays on the software path and the VF goes to the next "
        "waiter. The guest needs virtio_net with failover (Linux >= 4.18)",
    )
    rebalance(ctx, nic.config.switch)
    return True
