"""What happens when the machine refuses a journaled step (services.journal).

Called under the store's write lock, with the step's operation still open.

- A refused **grant** is abandoned: the store is made to say what the machine did,
  and what the grant had already done is undone by new steps appended to the
  operation. A VF the machine would not take for a NIC leaves that NIC waiting
  with the reason (``grant_error``) and touches nobody else; a VM that would not
  start stays off; a VF count that would not take leaves the desired count at
  what the adapter has.
- A refused **release** stays pending (retried by ``iovctl apply`` or by the next
  command on the same objects); the VF it concerns stays out of the pool with the
  reason, and grants queued behind it are abandoned so no NIC waits on a VF it
  will not get.
"""

from __future__ import annotations

from iovctl.domain.allocation import WaitReason
from iovctl.domain.model import EventLevel, NicConfig, VmNetworkAdapter, VmState
from iovctl.domain.steps import (
    AdoptVm,
    AttachVf,
    ConfigureVf,
    DefineVm,
    DetachVf,
    JournalStep,
    PlugNic,
    ScrubVf,
    SetNumVfs,
    StartVm,
    Step,
    StopVm,
    UnplugNic,
    keys_meet,
    vm_key,
)
from iovctl.errors import IovctlError
from iovctl.services.context import Context

#: ``wait_reason`` of a NIC the machine refused a VF.
GRANT_FAILED = "vf-grant-failed"


def release_refused(ctx: Context, js: JournalStep, exc: IovctlError) -> None:
    step = js.step
    store = ctx.store
    store.set_step_state(js.op, js.seq, "pending", exc.message)
    if isinstance(step, DetachVf | ScrubVf):
        store.hold_released_vf(
            step.adapter, step.index, f"could not {step.describe()}: {exc.message}"
        )
    for later in _pending_after(ctx, js):
        if later.step.kind == "grant" and any(
            keys_meet(a, b) for a in later.step.touches() for b in step.touches()
        ):
            _abandon_grant(ctx, later, f"waits for: {step.describe()}")
    ctx.event(
        EventLevel.WARNING,
        "release-failed",
        "operation",
        str(js.op),
        f"Could not {step.describe()}: {exc.message}. It is retried by iovctl apply "
        "and by the next command on the same objects; the VF stays out of the pool meanwhile",
    )


def grant_refused(ctx: Context, js: JournalStep, exc: IovctlError) -> IovctlError | None:
    """Abandon the grant; return the error when it was the command's own subject."""
    step = js.step
    match step:
        case ConfigureVf() | AttachVf():
            _vf_refused(ctx, js, exc)
            return None
        case DefineVm(vm=vm) | AdoptVm(vm=vm):
            _vm_refused(ctx, js, vm, exc)
            return exc
        case StartVm(vm=vm):
            _start_refused(ctx, js, vm, exc)
            return exc
        case PlugNic(previous=previous) if previous is not None:
            _change_refused(ctx, js, step, previous, exc)
            return exc
        case PlugNic(vm=vm) if _starts_vm(ctx, js.op, vm):
            _start_refused(ctx, js, vm, exc)
            return exc
        case PlugNic():
            _add_refused(ctx, js, step, exc)
            return exc
        case SetNumVfs():
            _count_refused(ctx, js, step, exc)
            return exc
        case _:
            return exc


# -- one kind of refusal each ---------------------------------------------------


def _vf_refused(ctx: Context, js: JournalStep, exc: IovctlError) -> None:
    step = js.step
    assert isinstance(step, ConfigureVf | AttachVf)
    for later in _pending_after(ctx, js):
        if isinstance(later.step, ConfigureVf | AttachVf) and later.step.nic_id == step.nic_id:
            ctx.store.set_step_state(later.op, later.seq, "cancelled")
    nic = _nic(ctx, step.vm, step.nic_id)
    label = f"{step.vm}/{step.nic}"
    if nic is not None and _holds(nic, step.adapter, step.index):
        ctx.store.set_assignment(nic.id, None)
        ctx.store.set_grant_error(nic.id, exc.message)
        ctx.store.set_wait_reason(nic.id, GRANT_FAILED)
    _release(ctx, js.op, [(step.vm, step.nic, step.adapter, step.index, "")])
    ctx.event(
        EventLevel.WARNING,
        GRANT_FAILED,
        "nic",
        label,
        f"VF {step.index} of {step.adapter} could not be given to {label}: {exc.message}. "
        "It stays on the software path; a VM restart, nic set or iovctl apply tries again",
    )


def _vm_refused(ctx: Context, js: JournalStep, vm: str, exc: IovctlError) -> None:
    """The hypervisor would not define or hand over the VM: it is not iovctl's. The
    record goes again, without an event (none said it came: services.journal); the
    command's error says why."""
    for later in _pending_after(ctx, js):
        if _is_vms(later.step, vm):
            ctx.store.set_step_state(later.op, later.seq, "cancelled")
    if ctx.store.find_vm(vm) is not None:
        for nic in ctx.store.list_nics(vm):
            ctx.store.delete_nic(nic.id)
        ctx.store.delete_vm(vm)


def _start_refused(ctx: Context, js: JournalStep, vm: str, exc: IovctlError) -> None:
    store = ctx.store
    for later in _pending_after(ctx, js):
        if later.step.kind == "grant" and _is_vms(later.step, vm):
            store.set_step_state(later.op, later.seq, "cancelled")
    held = []
    for nic in store.list_nics(vm):
        a = nic.assignment
        if a is not None:
            store.set_assignment(nic.id, None)
            held.append((vm, nic.name, a.adapter, a.index, a.pci_address))
        store.set_claim(nic.id, None, None)
    store.set_vm_state(vm, VmState.OFF)
    _release(ctx, js.op, held, between=StopVm(vm))
    ctx.event(
        EventLevel.ERROR,
        "vm-start-failed",
        "vm",
        vm,
        f"VM {vm} did not start: {exc.message}. It is off; what was started of it is undone",
    )


def _add_refused(ctx: Context, js: JournalStep, step: PlugNic, exc: IovctlError) -> None:
    nic = _nic(ctx, step.vm, step.nic_id)
    _cancel_nic_grants(ctx, js, step.nic_id)
    held = []
    if nic is not None:
        a = nic.assignment
        if a is not None:
            held.append((step.vm, step.nic, a.adapter, a.index, a.pci_address))
        ctx.store.delete_nic(nic.id)
    _release(ctx, js.op, held, between=UnplugNic(step.vm, step.nic))
    ctx.event(
        EventLevel.ERROR,
        "nic-add-failed",
        "nic",
        f"{step.vm}/{step.nic}",
        f"Network adapter {step.vm}/{step.nic} could not be plugged: {exc.message}; "
        "it was not added",
    )


def _change_refused(
    ctx: Context, js: JournalStep, step: PlugNic, previous: NicConfig, exc: IovctlError
) -> None:
    nic = _nic(ctx, step.vm, step.nic_id)
    _cancel_nic_grants(ctx, js, step.nic_id)
    if nic is not None:
        ctx.store.update_nic_config(nic, previous)
        a = nic.assignment
        if a is not None:
            # Its VF may carry some of the new settings: give it back, scrubbed.
            ctx.store.set_assignment(nic.id, None)
            _release(ctx, js.op, [(step.vm, step.nic, a.adapter, a.index, a.pci_address)])
    ctx.store.append_steps(js.op, [PlugNic(step.vm, step.nic, step.nic_id, previous)])
    ctx.event(
        EventLevel.ERROR,
        "nic-change-failed",
        "nic",
        f"{step.vm}/{step.nic}",
        f"Network adapter {step.vm}/{step.nic} kept its settings: the change could not be "
        f"plugged: {exc.message}",
    )


def _count_refused(ctx: Context, js: JournalStep, step: SetNumVfs, exc: IovctlError) -> None:
    """The adapter keeps (or gets back) the count it had; the desired count follows."""
    adapter = step.adapter
    for later in _pending_after(ctx, js):
        if isinstance(later.step, SetNumVfs) and later.step.adapter == adapter:
            ctx.store.set_step_state(later.op, later.seq, "cancelled")
    actual = ctx.hardware.adapter(adapter).num_vfs
    target = actual
    if step.restore and actual != step.restore:
        # The kernel wants 0 before a new count: the old VFs are gone. Ask for them again.
        target = step.restore
        ctx.store.append_steps(js.op, [SetNumVfs(adapter, step.restore)])
    ctx.store.set_desired_num_vfs(adapter, target)
    switch = ctx.store.find_switch_by_uplink(adapter)
    if switch is not None:
        ctx.store.mark_rebalance_due(switch.name)
    ctx.event(
        EventLevel.ERROR,
        "adapter-vfs-failed",
        "adapter",
        adapter,
        f"VF count of {adapter} could not be set to {step.count}: {exc.message}; "
        + (
            f"its {target} VFs are created again (scrubbed)"
            if target != actual
            else f"it keeps {actual} VFs"
        ),
    )


# -- helpers --------------------------------------------------------------------

#: (vm, nic, adapter, index, pci address) of a VF to take back.
Holding = tuple[str, str, str, int, str]


def _release(ctx: Context, op: int, held: list[Holding], between: Step | None = None) -> None:
    """Detach, then ``between`` (a stop or unplug), then scrub: the VFs are out of
    the pool until their scrub is done."""
    steps: list[Step] = [DetachVf(a, i, vm, nic, pci) for vm, nic, a, i, pci in held]
    if between is not None:
        steps.append(between)
    steps += [ScrubVf(a, i, vm) for vm, _, a, i, _ in held]
    for _, _, a, i, _ in held:
        ctx.store.hold_released_vf(a, i)
    if steps:
        ctx.store.append_steps(op, steps)


def _abandon_grant(ctx: Context, js: JournalStep, why: str) -> None:
    """A VF grant queued behind a refused release: the NIC goes back to waiting."""
    ctx.store.set_step_state(js.op, js.seq, "cancelled", why)
    step = js.step
    if isinstance(step, ConfigureVf | AttachVf):
        nic = _nic(ctx, step.vm, step.nic_id)
        if nic is not None and _holds(nic, step.adapter, step.index):
            ctx.store.set_assignment(nic.id, None)
            ctx.store.set_wait_reason(nic.id, WaitReason.VFS_EXHAUSTED.value)


def _cancel_nic_grants(ctx: Context, js: JournalStep, nic_id: int) -> None:
    for later in _pending_after(ctx, js):
        if isinstance(later.step, ConfigureVf | AttachVf) and later.step.nic_id == nic_id:
            ctx.store.set_step_state(later.op, later.seq, "cancelled")


def _pending_after(ctx: Context, js: JournalStep) -> list[JournalStep]:
    return [s for s in ctx.store.operation_steps(js.op) if s.seq > js.seq]


def _starts_vm(ctx: Context, op: int, vm: str) -> bool:
    return any(
        isinstance(s.step, StartVm) and s.step.vm == vm
        for s in ctx.store.operation_steps(op, state=None)
    )


def _is_vms(step: Step, vm: str) -> bool:
    return vm_key(vm) in step.touches()


def _nic(ctx: Context, vm: str, nic_id: int) -> VmNetworkAdapter | None:
    return next((n for n in ctx.store.list_nics(vm) if n.id == nic_id), None)


def _holds(nic: VmNetworkAdapter, adapter: str, index: int) -> bool:
    a = nic.assignment
    return a is not None and a.adapter == adapter and a.index == index
