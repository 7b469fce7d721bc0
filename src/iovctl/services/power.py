"""The store follows the hypervisor: VMs it starts and stops outside iovctl.

A libvirt domain starts by ``virsh start``, virt-manager or autostart and stops by
``virsh destroy``, a guest shutdown or a crash, none of which asks iovctl. When the
runtime says it follows a hypervisor (``VmRuntime.follows_hypervisor``), what it
reports (one ``VmPowerChange``, or the ``power_states`` of every VM it owns) is
made true in the store through the ordinary start and stop paths: a VM started
outside gets its NICs plugged and VFs by weight (``StartVm`` finds it running: a
no-op), one stopped outside gives its VFs back, scrubbed, to the next waiters.

Each function is a mutating service: run it under ``services.journal.run``. A
report that already agrees with the store (iovctl's own start, reported back by
the hypervisor) changes nothing. The hypervisor's current answer (``is_running``)
decides, not the report: changes may arrive late or out of order.
"""

from __future__ import annotations

from iovctl.domain.model import VmPowerChange, VmState
from iovctl.services import vms
from iovctl.services.context import Context


def follow(ctx: Context, change: VmPowerChange) -> bool:
    """Make the store agree with the hypervisor about ``change.vm``; True when it
    changed something. VMs iovctl does not know are not its business."""
    vm = ctx.store.find_vm(change.vm)
    if vm is None or not ctx.runtime.follows_hypervisor:
        return False
    return _agree(ctx, vm.name, vm.state, ctx.runtime.is_running(vm.name), change.detail)


def sync(ctx: Context) -> list[tuple[str, bool]]:
    """Make the store agree with every VM the hypervisor owns (the daemon's start,
    ``apply``); returns (VM, running) of each VM whose state changed. A running VM
    whose domain is gone (undefined behind iovctl's back, then stopped) is stopped
    too: its VFs go to the next waiters, and its record stays for ``vm delete``."""
    if not ctx.runtime.follows_hypervisor:
        return []
    changed = []
    in_store = [vm.name for vm in ctx.store.list_vms() if vm.state is VmState.RUNNING]
    for name in sorted(ctx.runtime.lost_vms(in_store)):
        why = f"VM {name} is gone from the hypervisor (undefined outside iovctl)"
        vms.stopped(
            ctx,
            name,
            why,
            f"{why}: its VFs were released; iovctl vm delete {name} removes its record "
            f"(then iovctl vm import {name} takes over a domain defined again by that name)",
        )
        changed.append((name, False))
    for name, running in sorted(ctx.runtime.power_states().items()):
        vm = ctx.store.find_vm(name)
        if vm is not None and _agree(ctx, name, vm.state, running, ""):
            changed.append((name, running))
    return changed


def sync_vm(ctx: Context, name: str) -> bool:
    """:func:`sync` for one VM (after ``vm import``)."""
    running = ctx.runtime.power_states().get(name)
    vm = ctx.store.find_vm(name)
    if running is None or vm is None:
        return False
    return _agree(ctx, name, vm.state, running, "")


def _agree(ctx: Context, name: str, state: VmState, running: bool, detail: str) -> bool:
    how = f" ({detail})" if detail else ""
    if running and state is VmState.OFF:
        vms.started(ctx, name, f"VM {name} started outside iovctl{how}")
        return True
    if not running and state is VmState.RUNNING:
        why = f"VM {name} stopped outside iovctl{how}"
        vms.stopped(ctx, name, why, f"{why}: its VFs were released")
        return True
    return False
