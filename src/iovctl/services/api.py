"""The front-end API: one function per command, with the arguments a user gives.

Every front end calls these and nothing else of services: the CLI maps its parsed
options onto the keyword arguments by name, an HTTP handler would map a request
body the same way, and both get the same validation, defaults and errors
(:mod:`iovctl.errors`). Arguments are plain values (str, int, bool, None);
numbers must be real ints (``True`` or ``"5"`` are refused, as a typo would be).

Reads run inside the caller's snapshot (:mod:`iovctl.services.runner`); a write runs
its change as one journaled operation (:mod:`iovctl.services.journal`), then reads
what it returns. Each returns a view (:mod:`iovctl.services.views`).
Must not import the CLI, argparse or any adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from iovctl.domain.validation import (
    check_event_window,
    check_integer,
    check_rate,
    check_shutdown_timeout,
    check_vlan,
    conflicting,
)
from iovctl.errors import InvalidInput
from iovctl.services import adapters, journal, power, reconcile, switches, vms
from iovctl.services.context import Context
from iovctl.services.metrics import HardwareSample, MetricsView, metrics_view, sample_hardware
from iovctl.services.readers import host_view
from iovctl.services.views import (
    AdapterDetailView,
    AdapterView,
    ApplyReport,
    DeletedView,
    EventView,
    HostView,
    NicView,
    SwitchView,
    VfView,
    VmDetailView,
    VmView,
    event_view,
)
from iovctl.services.vm_template import template_from
from iovctl.services.vms import NicChanges, make_pvlan

T = TypeVar("T")


def _read(ctx: Context, fn: Callable[..., T], *args: object) -> T:
    """What a write shows, read once its operation is done."""
    with ctx.store.snapshot():
        return fn(ctx, *args)


# -- host -----------------------------------------------------------------------


def host_show(ctx: Context) -> HostView:
    """``Get-VMHost``: readiness with reasons, and the adapters."""
    return host_view(ctx)


def host_snapshot(ctx: Context, name: str | None = None) -> dict[str, Any]:
    """This machine as a host spec document (``--sim FILE`` loads it)."""
    from iovctl.services.snapshot import snapshot

    return snapshot(ctx, name)


def host_power_cycle(ctx: Context) -> HostView:
    """Simulated hosts: reboot the hardware; VF counts and settings are lost."""
    journal.run(ctx, reconcile.power_cycle)
    return _read(ctx, host_view)


def apply(ctx: Context, dry_run: bool = False) -> ApplyReport:
    """Finish what earlier commands left, then restore VF counts, VF settings and the
    VFs of running VMs to the stored desired state (boot). ``dry_run``: say what."""
    if dry_run:
        return journal.preview(ctx, reconcile.apply, True)
    return journal.run(ctx, reconcile.apply, retry_stalled=True)


# -- adapters and VFs -------------------------------------------------------------


def adapter_list(ctx: Context) -> list[AdapterView]:
    return adapters.list_adapters(ctx)


def adapter_show(ctx: Context, name: str) -> AdapterDetailView:
    return adapters.show_adapter(ctx, name)


def adapter_enable(ctx: Context, name: str, num_vfs: int | None = None) -> AdapterDetailView:
    """All VFs unless ``num_vfs`` is given."""
    if num_vfs is not None:
        check_integer("--num-vfs", num_vfs)
    journal.run(ctx, adapters.enable, name, num_vfs)
    return _read(ctx, adapters.show_adapter, name)


def adapter_disable(ctx: Context, name: str, force: bool = False) -> AdapterDetailView:
    """Refused while VMs hold its VFs, unless ``force`` (their NICs fall back first)."""
    journal.run(ctx, adapters.disable, name, force=force)
    return _read(ctx, adapters.show_adapter, name)


def adapter_set(ctx: Context, name: str, num_vfs: int, force: bool = False) -> AdapterDetailView:
    check_integer("--num-vfs", num_vfs)
    journal.run(ctx, adapters.set_num_vfs, name, num_vfs, force=force)
    return _read(ctx, adapters.show_adapter, name)


def vf_list(ctx: Context, adapter: str | None = None) -> list[VfView]:
    return adapters.list_vfs(ctx, adapter)


# -- switches ----------------------------------------------------------------------


def switch_create(ctx: Context, name: str, uplink: str, iov: bool = False) -> SwitchView:
    return journal.run(ctx, switches.create, name, uplink, iov)


def switch_list(ctx: Context) -> list[SwitchView]:
    return switches.list_all(ctx)


def switch_show(ctx: Context, name: str) -> SwitchView:
    return switches.show(ctx, name)


def switch_set(ctx: Context, name: str, iov: bool) -> SwitchView:
    journal.run(ctx, switches.set_iov, name, iov)
    return _read(ctx, switches.show, name)


def switch_delete(ctx: Context, name: str) -> DeletedView:
    journal.run(ctx, switches.delete, name)
    return DeletedView("switch", name)


# -- VMs --------------------------------------------------------------------------------


def vm_create(
    ctx: Context,
    name: str,
    memory: int | None = None,
    vcpus: int | None = None,
    disk: str | None = None,
    kernel: str | None = None,
    initrd: str | None = None,
    cmdline: str | None = None,
) -> VmView:
    """A new VM; on a hypervisor runtime defined from the template options."""
    template = template_from(memory, vcpus, disk, kernel, initrd, cmdline)
    return journal.run(ctx, vms.create_vm, name, template)


def vm_import(ctx: Context, name: str) -> VmDetailView:
    """Take over the hypervisor's VM ``name``; it has the power state it has there."""
    journal.run(ctx, vms.import_vm, name)
    journal.run(ctx, power.sync_vm, name)
    return _read(ctx, vms.show_vm, name)


def vm_delete(ctx: Context, name: str) -> DeletedView:
    journal.run(ctx, vms.delete_vm, name)
    return DeletedView("vm", name)


def vm_list(ctx: Context) -> list[VmView]:
    return vms.list_vms(ctx)


def vm_show(ctx: Context, name: str) -> VmDetailView:
    return vms.show_vm(ctx, name)


def vm_start(ctx: Context, name: str) -> VmDetailView:
    journal.run(ctx, vms.start_vm, name)
    return _read(ctx, vms.show_vm, name)


def vm_stop(
    ctx: Context, name: str, turn_off: bool = False, timeout: int | None = None
) -> VmDetailView:
    """``Stop-VM``: the guest OS shuts down (waited for up to ``timeout`` seconds), or
    with ``turn_off`` the VM is powered off at once (``Stop-VM -TurnOff``)."""
    if turn_off:
        if timeout is not None:
            raise conflicting("--turn-off", "--timeout", "power off at once, or wait for the guest")
        journal.run(ctx, vms.stop_vm, name)
    else:
        seconds = vms.SHUTDOWN_TIMEOUT_S
        if timeout is not None:
            seconds = check_shutdown_timeout(check_integer("--timeout", timeout))
        vms.shut_down(ctx, name, seconds)
        journal.run(ctx, vms.shut_down_done, name)
    return _read(ctx, vms.show_vm, name)


# -- NICs -------------------------------------------------------------------------------


def _nic_changes(
    *,
    switch: str | None = None,
    mac: str | None,
    iov_weight: int | None,
    iov_queue_pairs: int | None,
    vlan: int | None,
    pvlan: str | None,
    primary_vlan: int | None,
    secondary_vlan: int | None,
    max_rate: int | None,
    allow_mac_spoofing: bool | None,
    trust: bool | None,
    untagged: bool = False,
    no_pvlan: bool = False,
    unlimited: bool = False,
) -> NicChanges:
    """The changes a front end asked for, checked and assembled (defaults: unchanged)."""
    for option, value in (
        ("--iov-weight", iov_weight),
        ("--iov-queue-pairs", iov_queue_pairs),
        ("--vlan", vlan),
        ("--primary-vlan", primary_vlan),
        ("--secondary-vlan", secondary_vlan),
        ("--max-rate", max_rate),
    ):
        if value is not None:
            check_integer(option, value)
    if vlan is not None and untagged:
        raise conflicting("--vlan", "--untagged", "an access VLAN, or none")
    if max_rate is not None and unlimited:
        raise conflicting("--max-rate", "--unlimited", "a bandwidth limit, or none")
    wants_pvlan = pvlan is not None or primary_vlan is not None or secondary_vlan is not None
    if wants_pvlan and no_pvlan:
        raise conflicting("--pvlan", "--no-pvlan", "a private VLAN, or none")
    # 0 is how "no VLAN"/"no limit" is carried below; typed by a user it is an error.
    if vlan is not None:
        check_vlan(vlan)
    if max_rate is not None:
        check_rate(max_rate)
    private = make_pvlan(pvlan or "", primary_vlan, secondary_vlan) if wants_pvlan else None
    return NicChanges(
        switch=switch,
        mac=mac,
        iov_weight=iov_weight,
        iov_queue_pairs_requested=iov_queue_pairs,
        vlan=0 if untagged else vlan,
        pvlan=private,
        clear_pvlan=no_pvlan,
        max_rate=0 if unlimited else max_rate,
        allow_mac_spoofing=allow_mac_spoofing,
        trust=trust,
    )


def nic_add(
    ctx: Context,
    vm: str,
    switch: str,
    name: str | None = None,
    *,
    mac: str | None = None,
    iov_weight: int | None = None,
    iov_queue_pairs: int | None = None,
    vlan: int | None = None,
    pvlan: str | None = None,
    primary_vlan: int | None = None,
    secondary_vlan: int | None = None,
    max_rate: int | None = None,
    allow_mac_spoofing: bool | None = None,
    trust: bool | None = None,
) -> NicView:
    """``Add-VMNetworkAdapter``: weight 0 (SR-IOV off) and a generated MAC by default."""
    changes = _nic_changes(
        mac=mac,
        iov_weight=iov_weight,
        iov_queue_pairs=iov_queue_pairs,
        vlan=vlan,
        pvlan=pvlan,
        primary_vlan=primary_vlan,
        secondary_vlan=secondary_vlan,
        max_rate=max_rate,
        allow_mac_spoofing=allow_mac_spoofing,
        trust=trust,
    )
    added = journal.run(ctx, vms.add_nic, vm, switch, name, changes)
    return _read(ctx, vms.show_nic, vm, added)


def nic_set(
    ctx: Context,
    vm: str,
    nic: str,
    *,
    switch: str | None = None,
    mac: str | None = None,
    iov_weight: int | None = None,
    iov_queue_pairs: int | None = None,
    vlan: int | None = None,
    untagged: bool = False,
    pvlan: str | None = None,
    primary_vlan: int | None = None,
    secondary_vlan: int | None = None,
    no_pvlan: bool = False,
    max_rate: int | None = None,
    unlimited: bool = False,
    allow_mac_spoofing: bool | None = None,
    trust: bool | None = None,
) -> NicView:
    """``Set-VMNetworkAdapter``: only what is given changes."""
    changes = _nic_changes(
        switch=switch,
        mac=mac,
        iov_weight=iov_weight,
        iov_queue_pairs=iov_queue_pairs,
        vlan=vlan,
        pvlan=pvlan,
        primary_vlan=primary_vlan,
        secondary_vlan=secondary_vlan,
        max_rate=max_rate,
        allow_mac_spoofing=allow_mac_spoofing,
        trust=trust,
        untagged=untagged,
        no_pvlan=no_pvlan,
        unlimited=unlimited,
    )
    journal.run(ctx, vms.set_nic, vm, nic, changes)
    return _read(ctx, vms.show_nic, vm, nic)


def nic_remove(ctx: Context, vm: str, nic: str) -> DeletedView:
    journal.run(ctx, vms.remove_nic, vm, nic)
    return DeletedView("nic", f"{vm}/{nic}")


def nic_list(ctx: Context, vm: str | None = None) -> list[NicView]:
    return vms.list_nics(ctx, vm)


def nic_show(ctx: Context, vm: str, nic: str) -> NicView:
    return vms.show_nic(ctx, vm, nic)


# -- metrics ----------------------------------------------------------------------------


def metrics_sample(ctx: Context) -> HardwareSample:
    """Read the machine for metrics (kept by the caller for a bounded time)."""
    return sample_hardware(ctx)


def metrics(ctx: Context, sample: HardwareSample) -> MetricsView:
    """What a scrape shows: the store now, the hardware as ``sample`` saw it."""
    return metrics_view(ctx, sample)


# -- events -----------------------------------------------------------------------------


def events(
    ctx: Context,
    limit: int | None = None,
    since: int = 0,
    level: str | None = None,
    kind: str | None = None,
    object_name: str | None = None,
) -> list[EventView]:
    """The event log after ``since``, oldest first; the last ``limit`` that match
    ``level`` (that level or worse), ``kind`` and ``object_name`` (a VM's name takes in
    its NICs' events)."""
    if limit is not None:
        check_integer("--limit", limit)
    check_integer("--since", since)
    check_event_window(limit, since)
    floor = check_level(level) if level is not None else None
    if kind is not None and kind not in KINDS:
        raise InvalidInput(
            "invalid-kind", f"object kind {kind!r} is unknown", f"use one of: {', '.join(KINDS)}"
        )
    if floor is None and kind is None and object_name is None:
        return [event_view(e) for e in ctx.store.list_events(limit, since)]
    picked = [
        e
        for e in ctx.store.list_events(None, since)
        if (floor is None or LEVELS.index(e.level.value) >= floor)
        and (kind is None or e.object_kind == kind)
        and (
            object_name is None
            or e.object_name == object_name
            or e.object_name.startswith(f"{object_name}/")
        )
    ]
    return [event_view(e) for e in (picked[-limit:] if limit is not None else picked)]


def newest_event(ctx: Context) -> int:
    """The seq of the newest event (0: none yet); ``events(since=...)`` goes on from it."""
    last = ctx.store.list_events(1, 0)
    return last[-1].seq if last else 0


#: Event levels, least severe first (``--level warning`` shows warnings and errors).
LEVELS = ("info", "warning", "error")
#: The kinds of object an event is about.
KINDS = ("host", "adapter", "vf", "switch", "vm", "nic", "operation")


def check_level(level: str) -> int:
    if level not in LEVELS:
        raise InvalidInput(
            "invalid-level", f"event level {level!r} is unknown", "use info, warning or error"
        )
    return LEVELS.index(level)
