"""Applying VF arbitration to a switch: load the pool, plan, scrub, grant, log.

The rules live in ``domain.allocation``; this module only moves data between the
store, the hardware, the VM runtime and the plan, in the order that keeps the
promises: a released VF is scrubbed before anyone else can get it, and a NIC
never loses its software path.
"""

from __future__ import annotations

from iovctl.domain.allocation import Claim, Grant, Pool, Preemption, plan_pool
from iovctl.domain.model import (
    SCRUBBED,
    Adapter,
    EventLevel,
    VfAssignment,
    VmNetworkAdapter,
)
from iovctl.domain.nic_rules import unsupported_reason, vf_settings_for
from iovctl.services.context import Context


def release_vf(ctx: Context, nic: VmNetworkAdapter, why: str, code: str = "vf-released") -> None:
    """Take the NIC's VF back: detach from the VM, scrub to defaults, free it."""
    a = nic.assignment
    if a is None:
        return
    vf = ctx.hardware.virtual_function(a.adapter, a.index)
    ctx.runtime.detach_vf(nic.vm, nic.name, vf)
    ctx.hardware.set_vf_settings(a.adapter, a.index, SCRUBBED)
    ctx.store.set_assignment(nic.id, None)
    level = EventLevel.INFO if code == "vf-released" else EventLevel.WARNING
    ctx.event(
        level,
        code,
        "nic",
        nic.label,
        f"VF {a.index} of {a.adapter} released from {nic.label} ({why}) and scrubbed; "
        "traffic continues on the software path",
    )


def grant_vf(ctx: Context, nic: VmNetworkAdapter, uplink: Adapter, index: int, qps: int) -> None:
    ctx.hardware.set_vf_settings(uplink.name, index, vf_settings_for(nic.config))
    vf = ctx.hardware.virtual_function(uplink.name, index)
    ctx.runtime.attach_vf(nic.vm, nic.name, vf)
    ctx.store.set_assignment(nic.id, VfAssignment(uplink.name, index, qps))
    pairs = "queue pair" if qps == 1 else "queue pairs"
    ctx.event(
        EventLevel.INFO,
        "vf-assigned",
        "nic",
        nic.label,
        f"VF {index} ({vf.pci_address}) of {uplink.name} assigned to {nic.label} "
        f"(IOV weight {nic.config.iov_weight}, {qps} {pairs}, MAC {nic.config.mac})",
    )


def rebalance(ctx: Context, switch_name: str) -> None:
    """Bring the switch's VF pool to what the arbitration rules say. Idempotent."""
    store = ctx.store
    switch = store.get_switch(switch_name)
    uplink = ctx.hardware.adapter(switch.uplink)
    reasons = ctx.switch_reasons(switch, uplink)
    nics = store.claims_on_switch(switch.name)
    if reasons:
        for nic in nics:
            if nic.assignment is not None:
                release_vf(ctx, nic, reasons[0].message, "vf-revoked")
        return
    assert uplink.sriov is not None and uplink.driver is not None
    unsupported = ctx.hardware.unsupported_vf_settings(uplink.name)
    by_id: dict[int, VmNetworkAdapter] = {}
    claims: list[Claim] = []
    for nic in sorted(nics, key=lambda n: (n.claim_seq is None, n.claim_seq or 0, n.id)):
        if unsupported_reason(nic.config, uplink.driver, unsupported) is not None:
            if nic.assignment is not None:
                release_vf(ctx, nic, "its settings are not supported on VFs", "vf-revoked")
            continue
        seq = nic.claim_seq
        if seq is None:
            seq = store.next_seq("claim")
            store.set_claim(nic.id, seq, None)
        by_id[nic.id] = nic
        a = nic.assignment
        claims.append(
            Claim(
                nic.id,
                nic.config.iov_weight,
                seq,
                nic.config.iov_queue_pairs_requested,
                a.index if a else None,
                a.queue_pairs if a else 0,
            )
        )
    cap = uplink.sriov
    plan = plan_pool(
        Pool(
            tuple(range(uplink.num_vfs)), cap.queue_pairs, cap.max_queue_pairs_per_vf, tuple(claims)
        )
    )
    for step in plan.steps:
        nic = store.nic_by_id(step.nic_id)
        if isinstance(step, Preemption):
            winner = by_id[step.by_nic_id]
            release_vf(
                ctx,
                nic,
                f"preempted by {winner.label} with higher IOV weight "
                f"{winner.config.iov_weight} > {nic.config.iov_weight}",
                "vf-preempted",
            )
        elif isinstance(step, Grant):
            grant_vf(ctx, nic, uplink, step.vf_index, step.queue_pairs)
    for nic_id, reason in plan.waiting.items():
        nic = by_id[nic_id]
        if nic.wait_reason != reason.value:
            store.set_wait_reason(nic_id, reason.value)
            what = "VFs" if reason.value == "vfs-exhausted" else "queue pairs"
            ctx.event(
                EventLevel.WARNING,
                reason.value,
                "nic",
                nic.label,
                f"No {what} left on {uplink.name} ({uplink.num_vfs} VFs) for {nic.label} "
                f"(IOV weight {nic.config.iov_weight}): it stays on the software path until one frees up",
            )
