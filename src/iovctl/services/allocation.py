"""Applying VF arbitration to a switch: load the pool, plan, scrub, grant, log.

The rules live in ``domain.allocation``; this module only moves data between the
store, the hardware, the VM runtime and the plan, in the order that keeps the
promises: a released VF is scrubbed before anyone else can get it, and a NIC
never loses its software path.
"""

from __future__ import annotations

from iovctl.domain.allocation import Claim, Grant, Plan, Pool, Preemption, WaitReason, plan_pool
from iovctl.domain.model import (
    Adapter,
    EventLevel,
    VfAssignment,
    VmNetworkAdapter,
)
from iovctl.domain.nic_rules import mask_reason, settings_mask, vf_settings_for
from iovctl.domain.steps import AttachVf, ConfigureVf, DetachVf, ScrubVf, SetNumVfs
from iovctl.services.context import Context


def release_vf(
    ctx: Context,
    nic: VmNetworkAdapter,
    why: str,
    code: str = "vf-released",
    *,
    scrub: bool = True,
) -> ScrubVf | None:
    """Take the NIC's VF back: detach it from the VM, then scrub it to defaults.

    The VF is out of the pool (``hold_released_vf``) until its scrub is done, so
    nobody else gets it first. With ``scrub=False`` the scrub step is returned for
    the caller to queue after its own steps (a VM stop scrubs after the stop).
    """
    a = nic.assignment
    if a is None:
        return None
    ctx.store.set_assignment(nic.id, None)
    ctx.store.hold_released_vf(a.adapter, a.index)
    ctx.do(DetachVf(a.adapter, a.index, nic.vm, nic.name, a.pci_address))
    scrubbing = ScrubVf(a.adapter, a.index, nic.vm)
    if scrub:
        ctx.do(scrubbing)
    level = EventLevel.INFO if code == "vf-released" else EventLevel.WARNING
    ctx.event(
        level,
        code,
        "nic",
        nic.label,
        f"VF {a.index} of {a.adapter} released from {nic.label} ({why}) and scrubbed; "
        "traffic continues on the software path",
    )
    return None if scrub else scrubbing


def revoke_unsupported(ctx: Context, uplink: Adapter) -> list[tuple[VmNetworkAdapter, str]]:
    """Take back the VFs of ``uplink`` whose holders' settings its driver cannot carry,
    with the reason: each NIC goes on to the software path, where they hold.

    Such a holder got its VF under an older rule (a promiscuous private VLAN once
    asked its VF for nothing more: store schema 3 gave it the private VLAN need).
    Writing its settings again would only be refused by the driver; every command
    that would do so (``apply``, ``nic set``, a rebalance after a VF comes back)
    calls this first. Returns (NIC, why) of each NIC whose VF was taken back.
    """
    if uplink.sriov is None or uplink.driver is None:
        return []
    unsupported = ctx.hardware.unsupported_vf_settings(uplink.name)
    revoked = []
    for nic in ctx.store.holders_needing(uplink.name, settings_mask(unsupported)):
        reason = mask_reason(nic.vf_needs, uplink.driver, unsupported)
        if reason is not None:
            release_vf(ctx, nic, reason.message, "vf-revoked")
            revoked.append((nic, reason.message))
    return revoked


def grant_vf(ctx: Context, nic: VmNetworkAdapter, uplink: Adapter, index: int, qps: int) -> None:
    """Give the VF to the NIC: configure it with the NIC's settings, then attach it."""
    vf = ctx.hardware.virtual_function(uplink.name, index)
    ctx.store.set_assignment(nic.id, VfAssignment(uplink.name, index, qps, vf.pci_address))
    ctx.do(
        ConfigureVf(uplink.name, index, nic.vm, nic.name, nic.id, vf_settings_for(nic.config)),
        AttachVf(uplink.name, index, nic.vm, nic.name, nic.id),
    )
    pairs = "queue pair" if qps == 1 else "queue pairs"
    ctx.event(
        EventLevel.INFO,
        "vf-assigned",
        "nic",
        nic.label,
        f"VF {index} ({vf.pci_address}) of {uplink.name} assigned to {nic.label} "
        f"(IOV weight {nic.config.iov_weight}, {qps} {pairs}, MAC {nic.config.mac})",
    )


def _claim(nic: VmNetworkAdapter) -> Claim:
    a = nic.assignment
    assert nic.claim_seq is not None
    return Claim(
        nic.id,
        nic.config.iov_weight,
        nic.claim_seq,
        nic.config.iov_queue_pairs_requested,
        a.index if a else None,
        a.queue_pairs if a else 0,
    )


def rebalance(ctx: Context, switch_name: str) -> None:
    """Bring the switch's VF pool to what the arbitration rules say. Idempotent.

    NICs that became eligible since the last call (VM started, weight raised, NIC
    added) get their place in line (``claim_seq``) first.
    """
    store = ctx.store
    switch = store.get_switch(switch_name)
    uplink = ctx.hardware.adapter(switch.uplink)
    fresh = store.unclaimed_nics(switch.name)
    for nic in fresh:
        store.set_claim(nic.id, store.next_seq("claim"), None)
    reasons = ctx.switch_reasons(switch, uplink)
    if reasons:
        for nic in store.nics_holding_vfs(uplink.name):
            release_vf(ctx, nic, reasons[0].message, "vf-revoked")
        return
    revoke_unsupported(ctx, uplink)
    cap = uplink.sriov
    assert cap is not None
    mask = settings_mask(ctx.hardware.unsupported_vf_settings(uplink.name))
    vf_indexes = tuple(range(uplink.num_vfs))
    elsewhere = held_elsewhere(ctx, uplink)
    # One planning round loads only the best waiters and the weakest holders
    # (ctx.allocation_window of each); a round that used them all is followed by
    # another, so the window bounds the work per VM start, not the outcome.
    window = ctx.allocation_window
    seen_waiting: set[int] = set()
    granted: set[int] = set()
    last_reason = WaitReason.VFS_EXHAUSTED
    while True:
        waiters = store.waiting_claims(switch.name, mask, window)
        if not waiters:
            break
        victims = store.weakest_holders(uplink.name, window)
        free = (
            set(store.free_vf_indexes(uplink.name, uplink.num_vfs))
            | _scrubbed_first(ctx, uplink.name)
        ) - elsewhere
        held = set(vf_indexes).difference(free)
        qps_used = store.usage_on_adapter(uplink.name)[1]
        victim_vfs = {v.assignment.index for v in victims if v.assignment}
        victim_qps = sum(v.assignment.queue_pairs for v in victims if v.assignment)
        plan = plan_pool(
            Pool(
                vf_indexes,
                cap.queue_pairs,
                cap.max_queue_pairs_per_vf,
                tuple(_claim(n) for n in waiters + victims),
                frozenset(held - victim_vfs),
                qps_used - victim_qps,
            )
        )
        by_id = {n.id: n for n in waiters + victims}
        _apply(ctx, plan, by_id, uplink)
        granted |= {g.nic_id for g in plan.grants}
        for nic_id, reason in plan.waiting.items():
            _mark_waiting(ctx, by_id[nic_id], reason, uplink)
            seen_waiting.add(nic_id)
            last_reason = reason
        preempted = {p.nic_id for p in plan.preemptions}
        more_waiters = len(waiters) == window and not any(w.id in plan.waiting for w in waiters)
        more_victims = (
            len(victims) == window and bool(victims) and all(v.id in preempted for v in victims)
        )
        if not (more_waiters or (more_victims and plan.waiting)):
            break
    # NICs that joined the line behind the window still deserve their event.
    for nic in fresh:
        if nic.id not in granted and nic.id not in seen_waiting and not nic.vf_needs & mask:
            _mark_waiting(ctx, nic, last_reason, uplink)


def held_elsewhere(ctx: Context, uplink: Adapter) -> set[int]:
    """Indexes of the uplink's VFs the hypervisor gave out by its own means (libvirt's
    hostdev pools): never free for iovctl. One question to the runtime per planning
    round; the VFs' addresses are read only when it holds any."""
    addresses = ctx.runtime.vfs_held_elsewhere()
    if not addresses or not uplink.num_vfs:
        return set()
    return {
        vf.index
        for vf in ctx.hardware.virtual_functions(uplink.name)
        if vf.pci_address in addresses
    }


def pools_changed_elsewhere(ctx: Context) -> None:
    """The hypervisor gave VFs out or took them back by its own means: every IOV
    pool gets another planning round (``services.journal.settle``), so a VF its
    pool let go reaches a waiting NIC. A mutating service: run it under
    ``journal.run``."""
    for switch in ctx.store.list_switches():
        if switch.iov_enabled:
            ctx.store.mark_rebalance_due(switch.name)


def _scrubbed_first(ctx: Context, adapter: str) -> set[int]:
    """VFs this plan releases and scrubs that nobody holds: free for the same plan.

    Their grant's steps come after the scrub in the operation, so the next tenant
    gets the VF scrubbed (and waits, or is abandoned, if the scrub is refused:
    services.refusals), and a VM stop hands its VFs on in the transaction that
    records it. Not while the plan changes the adapter's VF count: those VFs may
    be about to go.
    """
    planned = ctx.planned
    if any(isinstance(s, SetNumVfs) and s.adapter == adapter for s in planned):
        return set()
    return {
        s.index
        for s in planned
        if isinstance(s, ScrubVf)
        and s.adapter == adapter
        and not ctx.store.vf_holder_exists(adapter, s.index)
    }


def _apply(ctx: Context, plan: Plan, by_id: dict[int, VmNetworkAdapter], uplink: Adapter) -> None:
    for step in plan.steps:
        nic = ctx.store.nic_by_id(step.nic_id)
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


def _mark_waiting(ctx: Context, nic: VmNetworkAdapter, reason: WaitReason, uplink: Adapter) -> None:
    if nic.wait_reason == reason.value:
        return
    ctx.store.set_wait_reason(nic.id, reason.value)
    what = "VFs" if reason is WaitReason.VFS_EXHAUSTED else "queue pairs"
    ctx.event(
        EventLevel.WARNING,
        reason.value,
        "nic",
        nic.label,
        f"No {what} left on {uplink.name} ({uplink.num_vfs} VFs) for {nic.label} "
        f"(IOV weight {nic.config.iov_weight}): it stays on the software path until one frees up",
    )
