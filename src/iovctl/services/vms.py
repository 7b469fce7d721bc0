"""VM and VM network adapter use cases: ``New-VM``, ``Start-/Stop-VM``,
``Add-/Set-/Remove-VMNetworkAdapter``. VFs follow the VM's life: assigned when it
starts, returned (scrubbed) when it stops."""

from __future__ import annotations

from dataclasses import dataclass, replace

from iovctl.domain.model import (
    Adapter,
    EventLevel,
    NicConfig,
    PrivateVlan,
    PvlanMode,
    VirtualMachine,
    VmNetworkAdapter,
    VmState,
    VmTemplate,
)
from iovctl.domain.nic_rules import unsupported_reason, vf_settings_for
from iovctl.domain.steps import (
    AdoptVm,
    ConfigureVf,
    DefineVm,
    ForgetVm,
    PlugNic,
    StartVm,
    StopVm,
    UnplugNic,
)
from iovctl.domain.validation import (
    check_name,
    check_queue_pairs,
    check_rate,
    check_vlan,
    check_weight,
    normalize_mac,
)
from iovctl.errors import Conflict, InvalidInput
from iovctl.services.allocation import rebalance, release_vf
from iovctl.services.context import Context
from iovctl.services.readers import NicViewer, vm_view, vm_views
from iovctl.services.views import NicView, VmDetailView, VmView, vm_detail_view

# -- VMs ----------------------------------------------------------------------


def create_vm(ctx: Context, name: str, template: VmTemplate | None = None) -> VmView:
    """``New-VM``: the record, and the hypervisor's VM defined from ``template``
    (runtimes whose VMs are iovctl's own records define nothing)."""
    check_name("VM", name)
    if ctx.store.find_vm(name) is not None:
        raise Conflict("duplicate-name", f"VM {name!r} already exists", "pick another name")
    if template is not None and not ctx.runtime.follows_hypervisor:
        raise InvalidInput(
            "template-unused",
            f"VM {name}: this host's VM runtime ({ctx.runtime.facts().kind}) has no memory,"
            " vCPUs or boot files to set",
            f"leave out the template options: iovctl vm create {name}",
        )
    vm = VirtualMachine(name)
    ctx.store.add_vm(vm)
    # Its event comes when the hypervisor defined it (services.journal): a refused
    # definition leaves no VM and no word of one.
    ctx.do(DefineVm(name, template or VmTemplate()))
    return vm_view(vm, [])


def import_vm(ctx: Context, name: str) -> VmView:
    """``vm import``: the hypervisor's existing VM becomes an iovctl VM (off in the
    store; ``services.power`` then gives it the hypervisor's power state)."""
    check_name("VM", name)
    if ctx.store.find_vm(name) is not None:
        raise Conflict(
            "duplicate-name", f"VM {name!r} already exists in iovctl", f"iovctl vm show {name}"
        )
    vm = VirtualMachine(name)
    ctx.store.add_vm(vm)
    ctx.do(AdoptVm(name))  # its event comes when the hypervisor handed it over
    return vm_view(vm, [])


def vm_summary(ctx: Context, name: str) -> VmView:
    """The VM as ``vm list`` shows it."""
    return vm_view(ctx.store.get_vm(name), ctx.store.list_nics(name))


def show_vm(ctx: Context, name: str) -> VmDetailView:
    vm = ctx.store.get_vm(name)
    nics = ctx.store.list_nics(name)
    viewer = NicViewer(ctx)
    created, started = ctx.store.vm_times(name)
    return vm_detail_view(
        vm_view(vm, nics),
        [viewer.view(n, vm.state) for n in nics],
        created,
        started if vm.state is VmState.RUNNING else None,
    )


def list_vms(ctx: Context) -> list[VmView]:
    return vm_views(ctx)


def start_vm(ctx: Context, name: str) -> None:
    """Start the VM; each NIC gets its software path, and a VF where arbitration allows."""
    vm = ctx.store.get_vm(name)
    if vm.state is VmState.RUNNING:
        raise Conflict("vm-running", f"VM {name} is already running", f"iovctl vm show {name}")
    started(ctx, name, f"VM {name} started")


def started(ctx: Context, name: str, message: str) -> None:
    """Make the store say the VM runs (by ``vm start``, or outside iovctl: then
    ``StartVm`` finds it running, a no-op): its NICs plugged, VFs by weight."""
    nics = ctx.store.list_nics(name)
    ctx.do(StartVm(name))
    ctx.do(*(PlugNic(name, nic.name, nic.id, nic.config) for nic in nics))
    for nic in nics:
        if nic.grant_error is not None:
            ctx.store.set_grant_error(nic.id, None)  # a new start is a new chance
    ctx.store.set_vm_state(name, VmState.RUNNING)
    ctx.event(EventLevel.INFO, "vm-started", "vm", name, message)
    for switch in sorted({n.config.switch for n in nics}):
        rebalance(ctx, switch)


#: How long ``vm stop`` waits for a guest to shut down unless told (``--timeout``).
SHUTDOWN_TIMEOUT_S = 120


def shut_down(ctx: Context, name: str, timeout: int) -> None:
    """``vm stop`` without ``--turn-off``: the guest OS is asked to power off, and
    waited for, before the VM's operation (:func:`shut_down_done`) is planned; no
    lock is held meanwhile. Refused (``shutdown-timeout``) when it still runs after
    ``timeout`` seconds: nothing changed, though the guest may still power off later
    (then the store follows, as for any stop outside iovctl)."""
    vm = ctx.store.get_vm(name)
    if vm.state is VmState.OFF:
        raise Conflict("vm-not-running", f"VM {name} is not running", f"iovctl vm start {name}")
    if not ctx.runtime.shut_down_guest(name, timeout):
        raise Conflict(
            "shutdown-timeout",
            f"VM {name} did not power off within {timeout} s of the shutdown request "
            "(ACPI power button); it keeps its VFs, and may still be shutting down",
            f"wait longer (--timeout), or power it off at once: iovctl vm stop {name} --turn-off",
        )


def stop_vm(ctx: Context, name: str) -> None:
    """Power the VM off at once (``--turn-off``); its VFs are scrubbed, then go to the best
    waiting NICs."""
    vm = ctx.store.get_vm(name)
    if vm.state is VmState.OFF:
        raise Conflict("vm-not-running", f"VM {name} is not running", f"iovctl vm start {name}")
    stopped(ctx, name, f"VM {name} stopped", f"VM {name} stopped")


def shut_down_done(ctx: Context, name: str) -> None:
    """The store after :func:`shut_down`: the VM is off (``StopVm`` finds it so, or
    ends a VM without a guest OS), its VFs handed on. Nothing when the daemon's
    follower already heard of the power-off."""
    if ctx.store.get_vm(name).state is VmState.RUNNING:
        # Still running: a VM without a guest OS to ask, which StopVm ends.
        how = "stopped" if ctx.runtime.is_running(name) else "shut down"
        stopped(ctx, name, f"VM {name} {how}", f"VM {name} {how}")


def stopped(ctx: Context, name: str, why: str, message: str) -> None:
    """Make the store say the VM is off (by ``vm stop``, or outside iovctl: then
    ``StopVm`` finds it off, a no-op): its VFs released, scrubbed, handed on."""
    scrubs = []
    freed = set()
    for nic in ctx.store.list_nics(name):
        scrub = release_vf(ctx, nic, why, scrub=False)
        if scrub is not None:
            scrubs.append(scrub)
            freed.add(nic.config.switch)
        ctx.store.set_claim(nic.id, None, None)
    ctx.do(StopVm(name), *scrubs)
    ctx.store.set_vm_state(name, VmState.OFF)
    ctx.event(EventLevel.INFO, "vm-stopped", "vm", name, message)
    for switch in sorted(freed):  # the next tenants, after the scrubs
        rebalance(ctx, switch)


def delete_vm(ctx: Context, name: str) -> None:
    vm = ctx.store.get_vm(name)
    if vm.state is VmState.RUNNING:
        raise Conflict(
            "vm-running", f"VM {name} is running", f"stop it first: iovctl vm stop {name}"
        )
    for nic in ctx.store.list_nics(name):
        ctx.do(UnplugNic(name, nic.name))
        ctx.store.delete_nic(nic.id)
    ctx.do(ForgetVm(name))
    ctx.store.delete_vm(name)
    ctx.event(EventLevel.INFO, "vm-deleted", "vm", name, f"VM {name} deleted")


# -- NICs ---------------------------------------------------------------------


@dataclass(frozen=True)
class NicChanges:
    """Fields of a NIC to set; None = leave as is. ``vlan``/``max_rate`` 0 = clear."""

    switch: str | None = None
    mac: str | None = None
    iov_weight: int | None = None
    iov_queue_pairs_requested: int | None = None
    vlan: int | None = None
    pvlan: PrivateVlan | None = None
    clear_pvlan: bool = False
    max_rate: int | None = None
    allow_mac_spoofing: bool | None = None
    trust: bool | None = None


def make_pvlan(mode: str, primary: int | None, secondary: int | None) -> PrivateVlan:
    try:
        pmode = PvlanMode(mode)
    except ValueError as exc:
        raise InvalidInput(
            "invalid-pvlan",
            f"private VLAN mode {mode!r} is unknown",
            "use isolated, community or promiscuous",
        ) from exc
    if primary is None:
        raise InvalidInput(
            "invalid-pvlan",
            f"private VLAN mode {mode} needs a primary VLAN",
            "add --primary-vlan ID (and --secondary-vlan ID for isolated/community)",
        )
    check_vlan(primary, "primary VLAN")
    if secondary is None and pmode is not PvlanMode.PROMISCUOUS:
        raise InvalidInput(
            "invalid-pvlan",
            f"private VLAN mode {mode} needs a secondary VLAN",
            "add --secondary-vlan ID",
        )
    if secondary is not None:
        check_vlan(secondary, "secondary VLAN")
        if secondary == primary:
            raise InvalidInput(
                "invalid-pvlan",
                f"secondary VLAN {secondary} equals the primary VLAN",
                "a secondary VLAN must differ from its primary",
            )
    return PrivateVlan(pmode, primary, secondary)


def _apply_changes(config: NicConfig, ch: NicChanges) -> NicConfig:
    out = config
    if ch.switch is not None:
        out = replace(out, switch=ch.switch)
    if ch.mac is not None:
        out = replace(out, mac=normalize_mac(ch.mac))
    if ch.iov_weight is not None:
        out = replace(out, iov_weight=check_weight(ch.iov_weight))
    if ch.iov_queue_pairs_requested is not None:
        out = replace(
            out, iov_queue_pairs_requested=check_queue_pairs(ch.iov_queue_pairs_requested)
        )
    if ch.vlan is not None:
        out = replace(
            out, vlan=check_vlan(ch.vlan) if ch.vlan else None, pvlan=None if ch.vlan else out.pvlan
        )
    if ch.clear_pvlan:
        out = replace(out, pvlan=None)
    if ch.pvlan is not None:
        if ch.vlan:
            raise InvalidInput(
                "invalid-pvlan",
                "a NIC is either in an access VLAN or in a private VLAN, not both",
                "give --vlan or --pvlan, not both",
            )
        out = replace(out, pvlan=ch.pvlan, vlan=None)
    if ch.max_rate is not None:
        out = replace(out, max_rate=check_rate(ch.max_rate) if ch.max_rate else None)
    if ch.allow_mac_spoofing is not None:
        out = replace(out, allow_mac_spoofing=ch.allow_mac_spoofing)
    if ch.trust is not None:
        out = replace(out, trust=ch.trust)
    return out


def _generated_mac(ctx: Context) -> str:
    # 52:54:00 is the prefix libvirt and QEMU admins know; a counter keeps MACs unique.
    while True:
        n = ctx.store.next_seq("mac")
        mac = f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"
        if not ctx.store.mac_in_use(mac):
            return mac


def add_nic(ctx: Context, vm_name: str, switch: str, name: str | None, changes: NicChanges) -> str:
    """``Add-VMNetworkAdapter``; returns the NIC's name. Weight defaults to 0 (SR-IOV
    off), as in Hyper-V."""
    vm = ctx.store.get_vm(vm_name)
    ctx.store.get_switch(switch)
    if name is None:
        taken = {n.name for n in ctx.store.list_nics(vm_name)}
        name = next(f"nic{i}" for i in range(len(taken) + 1) if f"nic{i}" not in taken)
    check_name("network adapter", name)
    mac = normalize_mac(changes.mac) if changes.mac else None
    config = _apply_changes(
        NicConfig(switch=switch, mac=mac or "02:00:00:00:00:00", iov_weight=0),
        replace(changes, mac=None, switch=None),
    )
    config = replace(config, mac=mac or _generated_mac(ctx))
    ctx.store.add_nic(vm_name, name, config)
    ctx.event(
        EventLevel.INFO,
        "nic-added",
        "nic",
        f"{vm_name}/{name}",
        f"Network adapter {vm_name}/{name} ({config.mac}) connected to {switch}, "
        f"IOV weight {config.iov_weight}",
    )
    if vm.state is VmState.RUNNING or ctx.runtime.follows_hypervisor:
        # A hypervisor's VM carries the NIC in its config at once: it may be started
        # outside iovctl (virsh start) with the NIC and its switch's bridge there.
        nic_id = ctx.store.get_nic(vm_name, name).id
        ctx.do(PlugNic(vm_name, name, nic_id, config))
    if vm.state is VmState.RUNNING:
        rebalance(ctx, switch)
    return name


def set_nic(ctx: Context, vm_name: str, name: str, changes: NicChanges) -> None:
    """``Set-VMNetworkAdapter``: settings hold on both paths; VF follows the weight."""
    nic = ctx.store.get_nic(vm_name, name)
    vm = ctx.store.get_vm(vm_name)
    if changes.switch is not None:
        ctx.store.get_switch(changes.switch)
    config = _apply_changes(nic.config, changes)
    if config == nic.config:
        return
    ctx.store.update_nic_config(nic, config)
    ctx.store.set_grant_error(nic.id, None)  # new settings, a new chance at a VF
    ctx.event(
        EventLevel.INFO, "nic-changed", "nic", nic.label, f"Network adapter {nic.label} changed"
    )
    if vm.state is not VmState.RUNNING:
        if ctx.runtime.follows_hypervisor:  # the config a start outside iovctl boots with
            ctx.do(PlugNic(vm_name, name, nic.id, config, previous=nic.config))
        return
    ctx.do(PlugNic(vm_name, name, nic.id, config, previous=nic.config))
    a = nic.assignment
    moved = config.switch != nic.config.switch
    if config.iov_weight == 0 or moved:
        why = (
            "IOV weight set to 0" if config.iov_weight == 0 else f"moved to switch {config.switch}"
        )
        release_vf(ctx, nic, why)
        ctx.store.set_claim(nic.id, None, None)
    elif a is not None:
        uplink = ctx.hardware.adapter(a.adapter)
        assert uplink.driver is not None
        unsupported = ctx.hardware.unsupported_vf_settings(uplink.name)
        reason = unsupported_reason(config, uplink.driver, unsupported)
        if reason is not None:
            # New settings, or old ones a VF was given under an older rule.
            release_vf(ctx, nic, reason.message, "vf-revoked")
        else:
            # Settings must hold on the VF path too: rewrite the VF in place.
            ctx.do(ConfigureVf(a.adapter, a.index, vm_name, name, nic.id, vf_settings_for(config)))
            if config.iov_queue_pairs_requested != nic.config.iov_queue_pairs_requested:
                _resize_queue_pairs(ctx, nic, config, uplink)
    if nic.config.iov_weight == 0 and config.iov_weight > 0:
        ctx.store.set_claim(nic.id, None, None)
    for switch in sorted({nic.config.switch, config.switch}):
        rebalance(ctx, switch)


def _resize_queue_pairs(
    ctx: Context, nic: VmNetworkAdapter, config: NicConfig, uplink: Adapter
) -> None:
    """A holder asked for other queue pairs: grant min(requested, per-VF limit, left)."""
    a = nic.assignment
    assert a is not None and uplink.sriov is not None
    _, in_use = ctx.store.usage_on_adapter(uplink.name)
    left = uplink.sriov.queue_pairs - in_use + a.queue_pairs
    qps = max(1, min(config.iov_queue_pairs_requested, uplink.sriov.max_queue_pairs_per_vf, left))
    if qps != a.queue_pairs:
        ctx.store.set_assignment(nic.id, replace(a, queue_pairs=qps))
        ctx.event(
            EventLevel.INFO,
            "queue-pairs-changed",
            "nic",
            nic.label,
            f"{nic.label} on VF {a.index} of {a.adapter}: {a.queue_pairs} -> {qps} queue pairs",
        )


def remove_nic(ctx: Context, vm_name: str, name: str) -> None:
    nic = ctx.store.get_nic(vm_name, name)
    scrub = release_vf(ctx, nic, "network adapter removed", scrub=False)
    ctx.do(UnplugNic(vm_name, name))
    if scrub is not None:
        ctx.do(scrub)
    ctx.store.delete_nic(nic.id)
    ctx.event(
        EventLevel.INFO, "nic-removed", "nic", nic.label, f"Network adapter {nic.label} removed"
    )


def list_nics(ctx: Context, vm_name: str | None = None) -> list[NicView]:
    if vm_name is not None:
        ctx.store.get_vm(vm_name)
    return NicViewer(ctx).views(ctx.store.list_nics(vm_name))


def show_nic(ctx: Context, vm_name: str, name: str) -> NicView:
    return NicViewer(ctx).view(ctx.store.get_nic(vm_name, name))
