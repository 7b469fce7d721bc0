"""``iovctl apply``: bring the machine back to the stored desired state.

Run at boot (systemd unit ``iovctl-apply.service``) before the network: nothing in
sysfs or the PF driver survives a reboot. Idempotent: a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from iovctl.domain.model import SCRUBBED, EventLevel, VmNetworkAdapter, VmState
from iovctl.domain.nic_rules import vf_settings_for
from iovctl.domain.reconcile import SetVfCount, SetVfSettings, plan_counts, plan_settings
from iovctl.domain.steps import (
    AttachVf,
    ConfigureVf,
    PlugNic,
    ScrubVf,
    SetNumVfs,
    StartVm,
    StopVm,
)
from iovctl.services import power
from iovctl.services.allocation import pools_changed_elsewhere, revoke_unsupported
from iovctl.services.context import Context
from iovctl.services.views import (
    ApplyReport,
    LeftoverVmChange,
    VfAttachChange,
    VfCountChange,
    VfReleaseChange,
    VfSettingsChange,
    VmFollowedChange,
    vf_settings_view,
)


def apply(ctx: Context, dry_run: bool = False) -> ApplyReport:
    """Repair what drifted; report each change. Writes nothing when nothing drifted.

    Queues the repairs as journaled steps (run by ``services.journal``): VF counts,
    VF settings, and the VFs of running VMs that are no longer attached. A holder
    whose settings the driver cannot carry (it got its VF under an older rule) is
    not written again but moved to the software path, with the reason. Gives NICs
    the machine refused a VF another chance. Run it under ``journal.run(...,
    retry_stalled=True)``, which first finishes what earlier commands left.
    """
    hw = ctx.hardware
    adapters = {a.name: a for a in hw.adapters() if a.sriov is not None}
    actual = {name: a.num_vfs for name, a in adapters.items()}
    changes: list[
        VfCountChange
        | VfSettingsChange
        | VfReleaseChange
        | VfAttachChange
        | LeftoverVmChange
        | VmFollowedChange
    ] = []
    # VMs the hypervisor owns run when it says so: the store follows, first, so
    # that what follows sees their VFs granted or released.
    owned = set(ctx.runtime.power_states()) if ctx.runtime.follows_hypervisor else set()
    followed = power.sync(ctx)
    for name, running in followed:
        changes.append(VmFollowedChange("follow-hypervisor", name, running))
    # VFs the sync just granted are configured and attached by its own steps.
    granted = {(s.adapter, s.index) for s in ctx.planned if isinstance(s, ConfigureVf)}
    started = {name for name, running in followed if running}
    recreated: dict[str, int] = {}
    broken: set[str] = set()
    for step in plan_counts(ctx.store.desired_num_vfs(), actual):
        changes.append(_count_change(ctx, step))
        recreated[step.adapter] = step.desired
    for name in sorted(actual):
        for nic, why in revoke_unsupported(ctx, adapters[name]):
            a = nic.assignment
            assert a is not None
            changes.append(VfReleaseChange("release-vf", name, a.index, nic.label, why))
        holders = {n.assignment.index: n for n in ctx.store.nics_holding_vfs(name) if n.assignment}
        tenants = {i: (n.label, vf_settings_for(n.config)) for i, n in holders.items()}
        on_their_way = {index for _, index, _ in ctx.store.released_vfs(name)}
        if name in recreated:
            # Not created yet: new VFs come up with power-on defaults.
            current = dict.fromkeys(range(recreated[name]), SCRUBBED)
        else:
            current = {vf.index: vf.settings for vf in hw.virtual_functions(name)}
        for vf_step in plan_settings(name, current, tenants):
            if vf_step.index in on_their_way:  # their own operation scrubs them
                continue
            if (name, vf_step.index) in granted:
                continue
            changes.append(_settings_change(ctx, vf_step, holders.get(vf_step.index)))
        broken |= _broken_vms(ctx, holders.values(), actual[name], recreated.get(name)) - started
    changes.extend(_restore(ctx, broken))
    changes.extend(_stop_leftovers(ctx, owned))
    if not dry_run:
        # Another chance for NICs the machine refused a VF, and for waiters whose VF
        # a hypervisor's own pool may have let go meanwhile.
        ctx.store.clear_grant_errors()
        pools_changed_elsewhere(ctx)
    return ApplyReport(dry_run, len(changes), changes)


def _stop_leftovers(ctx: Context, owned: set[str]) -> list[LeftoverVmChange]:
    """VMs the store has off that still run (a stop killed before its journal, or a
    VM started behind iovctl's back): stopped, as a journaled step like any other.
    Not the hypervisor's own (``owned``): the store followed those instead."""
    out = []
    for vm in ctx.store.list_vms():
        if vm.name in owned:
            continue
        if vm.state is not VmState.OFF or not ctx.runtime.is_running(vm.name):
            continue
        ctx.do(StopVm(vm.name))
        out.append(LeftoverVmChange("remove-leftover-vm", vm.name))
        ctx.event(
            EventLevel.INFO,
            "apply-vm-cleaned",
            "vm",
            vm.name,
            f"apply: stopped what an interrupted command left running of stopped VM {vm.name}",
        )
    return out


def _broken_vms(
    ctx: Context, holders: Iterable[VmNetworkAdapter], count: int, recreated: int | None
) -> set[str]:
    """Running VMs holding VFs the runtime no longer has (a reboot, a PF reset)."""
    running = {vm.name for vm in ctx.store.list_vms() if vm.state is VmState.RUNNING}
    broken = set()
    for nic in holders:
        a = nic.assignment
        assert a is not None
        if nic.vm not in running:
            continue
        gone = a.index >= count or recreated is not None
        if gone or not ctx.runtime.vf_data_path_active(nic.vm, nic.name):
            broken.add(nic.vm)
    return broken


def _restore(ctx: Context, vms: set[str]) -> list[VfAttachChange]:
    """Put VMs back together: started, every NIC plugged, every VF attached."""
    out = []
    for vm in sorted(vms):
        nics = ctx.store.list_nics(vm)
        ctx.do(StartVm(vm), *(PlugNic(vm, n.name, n.id, n.config) for n in nics))
        for nic in nics:
            a = nic.assignment
            if a is None:
                continue
            ctx.do(AttachVf(a.adapter, a.index, vm, nic.name, nic.id))
            out.append(VfAttachChange("attach-vf", a.adapter, a.index, nic.label))
        ctx.event(
            EventLevel.INFO,
            "apply-vm-restored",
            "vm",
            vm,
            f"apply: VM {vm} put back together: its NICs plugged and its VFs attached again",
        )
    return out


def power_cycle(ctx: Context) -> None:
    """Reboot a simulated host's hardware: what ``apply`` exists for. Conflict
    ``not-simulated`` on a real host (HostHardware.power_cycle)."""
    ctx.hardware.power_cycle()
    ctx.event(
        EventLevel.WARNING,
        "host-power-cycled",
        "host",
        ctx.hardware.backend_name,
        "Simulated host rebooted: VF counts and VF settings are back to power-on defaults",
    )


def _count_change(ctx: Context, step: SetVfCount) -> VfCountChange:
    ctx.do(*(SetNumVfs(step.adapter, value) for value in step.writes))
    ctx.event(
        EventLevel.INFO,
        "apply-vf-count",
        "adapter",
        step.adapter,
        f"apply: VF count of {step.adapter} restored {step.current} -> {step.desired}",
    )
    return VfCountChange("set-vf-count", step.adapter, step.current, step.desired)


def _settings_change(
    ctx: Context, step: SetVfSettings, tenant: VmNetworkAdapter | None
) -> VfSettingsChange:
    what = f"for {step.tenant}" if step.tenant else "scrubbed (free VF)"
    if tenant is None:
        ctx.do(ScrubVf(step.adapter, step.index))
    else:
        ctx.do(
            ConfigureVf(step.adapter, step.index, tenant.vm, tenant.name, tenant.id, step.desired)
        )
    ctx.event(
        EventLevel.INFO,
        "apply-vf-settings",
        "vf",
        f"{step.adapter}/{step.index}",
        f"apply: VF {step.index} of {step.adapter} settings restored {what}",
    )
    return VfSettingsChange(
        "set-vf-settings",
        step.adapter,
        step.index,
        step.tenant,
        vf_settings_view(step.current),
        vf_settings_view(step.desired),
    )
