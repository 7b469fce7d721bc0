"""``iovctl apply``: bring the machine back to the stored desired state.

Run at boot (systemd unit ``iovctl-apply.service``) before the network: nothing in
sysfs or the PF driver survives a reboot. Idempotent: a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from iovctl.domain.model import SCRUBBED, EventLevel, VfSettings, VmState
from iovctl.domain.nic_rules import vf_settings_for
from iovctl.domain.reconcile import SetVfCount, SetVfSettings, plan_counts, plan_settings
from iovctl.services.context import Context


def _settings_view(s: VfSettings) -> dict[str, Any]:
    return {
        "mac": s.mac,
        "vlan": s.vlan,
        "qos": s.qos,
        "spoof_check": s.spoof_check,
        "trust": s.trust,
        "max_rate": s.max_rate,
    }


def apply(ctx: Context, *, dry_run: bool = False) -> dict[str, Any]:
    """Repair what drifted; report each change. Writes nothing when nothing drifted."""
    hw = ctx.hardware
    actual = {a.name: a.num_vfs for a in hw.adapters() if a.sriov is not None}
    changes: list[dict[str, Any]] = []
    recreated: dict[str, int] = {}
    for step in plan_counts(ctx.store.desired_num_vfs(), actual):
        changes.append(_count_change(ctx, step, dry_run))
        recreated[step.adapter] = step.desired
    for name in sorted(actual):
        tenants = {
            n.assignment.index: (n.label, vf_settings_for(n.config))
            for n in ctx.store.nics_holding_vfs(name)
            if n.assignment
        }
        if dry_run and name in recreated:
            # Not created yet: new VFs come up with power-on defaults.
            current = dict.fromkeys(range(recreated[name]), SCRUBBED)
        else:
            current = {vf.index: vf.settings for vf in hw.virtual_functions(name)}
        for vf_step in plan_settings(name, current, tenants):
            changes.append(_settings_change(ctx, vf_step, dry_run))
    off = [vm.name for vm in ctx.store.list_vms() if vm.state is VmState.OFF]
    if not dry_run:
        for vm in ctx.runtime.reconcile(off):
            changes.append({"action": "remove-leftover-vm", "vm": vm})
            ctx.event(
                EventLevel.INFO,
                "apply-vm-cleaned",
                "vm",
                vm,
                f"apply: removed what an interrupted command left of stopped VM {vm}",
            )
    return {"dry_run": dry_run, "changed": len(changes), "changes": changes}


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


def _count_change(ctx: Context, step: SetVfCount, dry_run: bool) -> dict[str, Any]:
    if not dry_run:
        for value in step.writes:
            ctx.hardware.set_num_vfs(step.adapter, value)
        ctx.event(
            EventLevel.INFO,
            "apply-vf-count",
            "adapter",
            step.adapter,
            f"apply: VF count of {step.adapter} restored {step.current} -> {step.desired}",
        )
    return {
        "action": "set-vf-count",
        "adapter": step.adapter,
        "from": step.current,
        "to": step.desired,
    }


def _settings_change(ctx: Context, step: SetVfSettings, dry_run: bool) -> dict[str, Any]:
    what = f"for {step.tenant}" if step.tenant else "scrubbed (free VF)"
    if not dry_run:
        ctx.hardware.set_vf_settings(step.adapter, step.index, step.desired)
        ctx.event(
            EventLevel.INFO,
            "apply-vf-settings",
            "vf",
            f"{step.adapter}/{step.index}",
            f"apply: VF {step.index} of {step.adapter} settings restored {what}",
        )
    return {
        "action": "set-vf-settings",
        "adapter": step.adapter,
        "index": step.index,
        "tenant": step.tenant,
        "from": _settings_view(step.current),
        "to": _settings_view(step.desired),
    }
