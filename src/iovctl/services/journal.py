"""The operation journal: how every mutating command reaches the machine.

A kernel write or a hot-plug cannot be rolled back with the store, so a command
runs in four phases (:func:`run`):

1. **Plan** under the store's write lock: the service changes the store (what it
   wants the machine to be) and queues its side effects (``ctx.do``). The store's
   changes and the journal (an operation with its steps) commit together, before
   the first side effect. An operation whose steps meet those of an unfinished one
   (``domain.steps.keys_meet``) waits for it, without the lock.
2. **Execute** without the lock: each step runs, then its completion commits.
3. **Refusals** go to a policy, under the lock (:mod:`services.refusals`): a refused
   grant is abandoned and the store made to say what the machine did (the NIC
   waits with the reason, the VM stays off); a refused release stays pending and
   the operation stalls, to be retried by ``iovctl apply`` or the next command on
   the same objects.
4. **Finish**: the operation is deleted. Switches whose VF pool changed
   (``rebalance_due``: a VF scrubbed that no plan handed on, a VF count written) are
   handed to the allocator in the transaction that records the change, their
   grants joining the operation; what meets another operation is left due for
   whoever finishes last. (A VM stop or a preemption hands its VFs on in its own
   plan, the grants after the scrubs: services.allocation.)

A process killed anywhere leaves a journal that the next command finishes: its
operations' owner lease is free (adapters/sqlite/lease.py), so their pending
steps run again. Every step is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from iovctl.domain.model import SCRUBBED, EventLevel, VirtualFunction
from iovctl.domain.steps import (
    AdoptVm,
    AttachVf,
    ConfigureVf,
    DefineVm,
    DetachVf,
    ForgetVm,
    JournalStep,
    OperationRecord,
    PlugNic,
    RemoveSwitch,
    ScrubVf,
    SetNumVfs,
    StartVm,
    Step,
    StopVm,
    UnplugNic,
    keys_meet,
)
from iovctl.errors import HardwareError, IovctlError, StateError
from iovctl.services import refusals
from iovctl.services.context import Context

T = TypeVar("T")

#: How long a command waits for another one working on the same objects.
WAIT_FOR_OTHERS_S = 120.0
#: Rounds of one operation before it is called a bug (policies append steps).
MAX_ROUNDS = 1000


class OperationInterrupted(KeyboardInterrupt):
    """Ctrl-C once the plan was recorded: the journal holds the rest, which the next
    command (or ``iovctl apply``) finishes; nothing is rolled back."""


class _Blocked(Exception):
    def __init__(self, ops: list[OperationRecord]) -> None:
        super().__init__("blocked")
        self.ops = ops


@dataclass
class Outcome:
    """What running an operation came to, for the command that asked for it."""

    #: The machine refused the command's own subject (VM start, VF count...).
    error: IovctlError | None = None
    #: A release was refused: the operation waits in the journal.
    stalled: IovctlError | None = None

    def first(self) -> IovctlError | None:
        return self.error or self.stalled


def run(
    ctx: Context,
    fn: Callable[..., T],
    *args: object,
    retry_stalled: bool = False,
    **kwargs: object,
) -> T:
    """Run the mutating service ``fn(ctx, *args, **kwargs)`` as one journaled operation.

    Returns what ``fn`` returned. Raises what ``fn`` raised (then nothing was
    done), or the error the machine gave for the command's own subject after the
    store was made to agree with the machine, or ``operation-incomplete`` when a
    release was refused (``iovctl apply`` retries it).
    """
    recover(ctx, retry_stalled=retry_stalled)
    name = getattr(fn, "__name__", "command").replace("_", "-")
    result, op, steps = _plan(ctx, lambda: fn(ctx, *args, **kwargs), name)
    try:
        outcome = drive(ctx, op, steps) if op is not None else Outcome()
        settle(ctx)
    except OperationInterrupted:
        raise
    except KeyboardInterrupt as exc:
        raise OperationInterrupted from exc
    problem = outcome.first()
    if problem is not None:
        raise problem
    return result


class _Preview(Exception):
    pass


def preview(ctx: Context, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` for its answer only: its store changes and steps are dropped."""
    answer: list[T] = []
    try:
        with ctx.store.transaction():
            answer.append(fn(ctx, *args))
            raise _Preview
    except _Preview:
        pass
    finally:
        ctx.planned.clear()
    return answer[0]


# -- planning -------------------------------------------------------------------


def _keys(steps: Iterable[Step]) -> set[str]:
    return {k for s in steps for k in s.touches()}


def _plan(
    ctx: Context, body: Callable[[], T], name: str
) -> tuple[T, int | None, list[JournalStep]]:
    """Plan under the lock; wait (unlocked) for operations on the same objects."""
    deadline = time.monotonic() + WAIT_FOR_OTHERS_S
    while True:
        ctx.planned.clear()
        ctx.hardware.refresh()  # other commands may have changed the machine meanwhile
        try:
            with ctx.store.transaction():
                result = body()
                steps = list(ctx.planned)
                if not steps:
                    return result, None, []
                blockers = ctx.store.operations(_keys(steps))
                if blockers:
                    raise _Blocked(blockers)
                op, recorded = ctx.store.begin_operation(name, ctx.store.lease(), steps)
            return result, op, recorded
        except _Blocked as blocked:
            _wait_for(ctx, blocked.ops, deadline)
        finally:
            ctx.planned.clear()


def _wait_for(ctx: Context, ops: list[OperationRecord], deadline: float) -> None:
    mine = ctx.store.lease()
    for other in ops:
        if other.owner == mine:
            # Ours and unfinished: a release we could not do. Say so, don't wait on us.
            raise _incomplete(other)
        if ctx.store.lease_alive(other.owner):
            if not ctx.store.wait_lease(other.owner, max(0.0, deadline - time.monotonic())):
                raise StateError(
                    "state-busy",
                    f"operation {other.id} ({other.command}) of another iovctl still works on "
                    f"the same objects after {WAIT_FOR_OTHERS_S:.0f} s",
                    "wait for the other iovctl command to finish, then retry",
                )
            continue
        outcome = take_over(ctx, other)
        if outcome is not None and outcome.stalled is not None:
            raise outcome.stalled


def _incomplete(op: OperationRecord) -> HardwareError:
    return HardwareError(
        "operation-incomplete",
        f"an earlier operation ({op.command}) could not finish: {op.error or 'interrupted'}",
        "fix the cause, then run: iovctl apply (it finishes the operation)",
    )


# -- recovery -------------------------------------------------------------------


def recover(ctx: Context, *, retry_stalled: bool = False) -> list[OperationRecord]:
    """Finish operations whose process died (and, with ``retry_stalled``, stalled ones)."""
    ops = ctx.store.operations()
    if not ops:
        return []
    mine = ctx.store.lease()
    done = []
    for op in ops:
        if op.state == "stalled" and not retry_stalled:
            continue
        if op.owner != mine and ctx.store.lease_alive(op.owner):
            continue
        if op.owner == mine and op.state != "stalled":
            continue
        take_over(ctx, op)
        done.append(op)
    return done


def take_over(ctx: Context, op: OperationRecord) -> Outcome | None:
    """Become the owner of a dead (or our own stalled) operation and drive it."""
    mine = ctx.store.lease()
    with ctx.store.transaction():
        current = next((o for o in ctx.store.operations() if o.id == op.id), None)
        if current is None:
            return None  # finished meanwhile
        if current.owner != mine and ctx.store.lease_alive(current.owner):
            return None  # another command took it first
        ctx.store.set_operation_state(op.id, "running", None, owner=mine)
        ctx.event(
            EventLevel.INFO,
            "operation-resumed",
            "operation",
            str(op.id),
            f"Finishing operation {op.id} ({op.command}) that "
            + (
                "could not finish before" if op.state == "stalled" else "an interrupted iovctl left"
            ),
        )
    if current.owner != mine:
        ctx.store.forget_lease(current.owner)
    return drive(ctx, op.id)


# -- execution ------------------------------------------------------------------


def drive(ctx: Context, op: int, steps: list[JournalStep] | None = None) -> Outcome:
    """Run the operation's pending steps until none can run; finish or stall it.

    Completions are recorded after the steps ran, a batch at a time: before a
    refusal's policy reads the journal, before the pools the steps changed are
    rebalanced, and with the operation's end. A process killed before a batch is
    recorded has those steps run again by the next one, which every step allows
    (idempotent). Pools this operation changed are rebalanced within it, unless
    that meets another operation (then whoever finishes last does it). Steps that
    meet a refused release wait behind it (they stay pending)."""
    outcome = Outcome()
    blocked: set[str] = set()
    ran: list[JournalStep] = []  # done, not yet recorded
    pending = list(steps) if steps is not None else ctx.store.operation_steps(op)
    for _ in range(MAX_ROUNDS):
        runnable = [js for js in pending if not _meets(js.step, blocked)]
        if runnable:
            for js in runnable:
                result = _execute(ctx, js, outcome, ran)
                if result == "stalled":
                    blocked |= js.step.touches()
                if result != "done":
                    # A policy recorded what ran, and may have cancelled or added steps.
                    pending = ctx.store.operation_steps(op)
                    break
            else:
                pending = [js for js in pending if js not in runnable]
            continue
        with ctx.store.transaction():
            for js in ran:  # their effects; the rows go with the operation if it ends here
                _completed(ctx, js.step)
            due = ctx.store.rebalances_due()
            if not due and not pending:
                ctx.store.finish_operation(op)
                ran.clear()
                return outcome
            ctx.store.set_steps_done(op, [js.seq for js in ran])
            ran.clear()
            # In the same transaction: the pools' next owners are chosen with the
            # completions that freed their VFs, under one lock.
            added = _rebalance_within(ctx, op, due) if due else []
        if not added:
            break
        pending += added
    else:
        raise RuntimeError(f"operation {op} did not settle in {MAX_ROUNDS} rounds")
    if not pending:
        with ctx.store.transaction():
            ctx.store.finish_operation(op)
        return outcome
    assert outcome.stalled is not None
    with ctx.store.transaction():
        ctx.store.set_operation_state(op, "stalled", outcome.stalled.message)
    return outcome


def _record(ctx: Context, ran: list[JournalStep]) -> None:
    """Record the completion of steps that ran (under the lock), and its effects."""
    for js in ran:
        _completed(ctx, js.step)
    for op in {js.op for js in ran}:
        ctx.store.set_steps_done(op, [js.seq for js in ran if js.op == op])
    ran.clear()


def _rebalance_within(ctx: Context, op: int, due: list[str]) -> list[JournalStep]:
    """Plan the due pools' rebalancing into ``op`` (the caller holds the transaction);
    returns the steps added."""
    planned: list[JournalStep] = []
    ctx.hardware.refresh()  # the steps ran without the lock: others may have run too
    for switch in due:
        planned += _rebalance(ctx, switch, op) or []
    return planned


def _rebalance(ctx: Context, switch: str, op: int | None) -> list[JournalStep] | None:
    """Rebalance one due pool; its steps join ``op`` (None: a new operation). In the
    caller's transaction if there is one (a savepoint of it), else in its own. None,
    and the pool stays due, when they would meet another unfinished operation: that
    one settles it when it finishes."""
    from iovctl.services.allocation import rebalance

    ctx.planned.clear()
    try:
        with ctx.store.transaction(), ctx.store.savepoint():
            ctx.store.clear_rebalance_due(switch)
            if ctx.store.find_switch(switch) is None:
                return []
            rebalance(ctx, switch)
            steps = list(ctx.planned)
            if not steps:
                return []
            if [o for o in ctx.store.operations(_keys(steps)) if o.id != op]:
                raise _Blocked([])
            if op is None:
                return ctx.store.begin_operation("rebalance", ctx.store.lease(), steps)[1]
            return ctx.store.append_steps(op, steps)
    except _Blocked:
        return None
    finally:
        ctx.planned.clear()


def _meets(step: Step, keys: set[str]) -> bool:
    return any(keys_meet(k, b) for k in step.touches() for b in keys)


def _execute(ctx: Context, js: JournalStep, outcome: Outcome, ran: list[JournalStep]) -> str:
    """Run one step: ``done``, ``refused`` (a grant, compensated) or ``stalled``."""
    try:
        perform(ctx, js.step)
    except IovctlError as exc:
        with ctx.store.transaction():
            _record(ctx, ran)
            if js.step.kind == "release":
                refusals.release_refused(ctx, js, exc)
                outcome.stalled = outcome.stalled or HardwareError(
                    "operation-incomplete",
                    f"could not {js.step.describe()}: {exc.message}",
                    "fix the cause, then run: iovctl apply (it finishes the operation)",
                    exc.errno if isinstance(exc, HardwareError) else None,
                )
                return "stalled"
            ctx.store.set_step_state(js.op, js.seq, "failed", exc.message)
            subject_error = refusals.grant_refused(ctx, js, exc)
            if subject_error is not None and outcome.error is None:
                outcome.error = subject_error
        return "refused"
    ran.append(js)
    return "done"


def perform(ctx: Context, step: Step) -> None:
    """The side effect itself: one port call (idempotent)."""
    hw, rt = ctx.hardware, ctx.runtime
    match step:
        case DefineVm(vm=vm, template=template):
            rt.define_vm(vm, template)
        case AdoptVm(vm=vm):
            rt.adopt_vm(vm)
        case ForgetVm(vm=vm):
            rt.forget_vm(vm)
        case StartVm(vm=vm):
            rt.start_vm(vm)
        case StopVm(vm=vm):
            rt.stop_vm(vm)
        case PlugNic(vm=vm, nic=nic, config=config):
            rt.plug_software_nic(vm, nic, config)
        case UnplugNic(vm=vm, nic=nic):
            rt.unplug_nic(vm, nic)
        case RemoveSwitch(switch=switch):
            rt.remove_switch(switch)
        case SetNumVfs(adapter=adapter, count=count):
            hw.set_num_vfs(adapter, count)
        case ConfigureVf(adapter=adapter, index=index, settings=settings):
            hw.set_vf_settings(adapter, index, settings)
        case AttachVf(adapter=adapter, index=index, vm=vm, nic=nic):
            # The driver the runtime needs (vfio-pci for a VM, the net driver for a
            # namespace): a VF another runtime or a past run left on the other one
            # would not attach. A no-op when it is bound right already.
            hw.bind_vf_driver(adapter, index, rt.vf_driver)
            rt.attach_vf(vm, nic, hw.virtual_function(adapter, index))
        case DetachVf(adapter=adapter, index=index, vm=vm, nic=nic, pci_address=pci):
            rt.detach_vf(vm, nic, _vf_or_remains(ctx, adapter, index, pci))
        case ScrubVf(adapter=adapter, index=index):
            try:
                hw.set_vf_settings(adapter, index, SCRUBBED)
            except HardwareError as exc:
                if exc.code != "vf-not-found":
                    raise
                # Gone (VF count changed, PF reset): nothing of any tenant is left on it.
        case _:
            raise TypeError(f"no executor for step {step!r}")


def _vf_or_remains(ctx: Context, adapter: str, index: int, pci: str) -> VirtualFunction:
    """The VF, or what is known of it when it is gone: the runtime still lets go."""
    try:
        return ctx.hardware.virtual_function(adapter, index)
    except HardwareError as exc:
        if exc.code != "vf-not-found":
            raise
        return VirtualFunction(adapter, index, pci)


def _completed(ctx: Context, step: Step) -> None:
    """Store effects of a step the machine did."""
    store = ctx.store
    match step:
        case DefineVm(vm=vm):
            ctx.event(EventLevel.INFO, "vm-created", "vm", vm, f"VM {vm} created")
        case AdoptVm(vm=vm):
            ctx.event(
                EventLevel.INFO,
                "vm-imported",
                "vm",
                vm,
                f"VM {vm} imported from the hypervisor: it keeps its definition, iovctl "
                "adds its NICs' failover pairs and follows its starts and stops",
            )
        case ScrubVf(adapter=adapter, index=index):
            store.free_released_vf(adapter, index)
            if not store.vf_holder_exists(adapter, index):  # a preemption's winner has it
                _pool_changed(ctx, adapter)
        case SetNumVfs(adapter=adapter):
            _pool_changed(ctx, adapter)
        case _:
            pass


def _pool_changed(ctx: Context, adapter: str) -> None:
    switch = ctx.store.find_switch_by_uplink(adapter)
    if switch is not None:
        ctx.store.mark_rebalance_due(switch.name)


# -- settling -------------------------------------------------------------------


def settle(ctx: Context) -> None:
    """Hand changed VF pools to the allocator, each in an operation of its own.

    A pool whose steps would meet an unfinished operation is left due: that
    operation settles it when it finishes (whoever finishes last sees it).
    """
    for _ in range(MAX_ROUNDS):
        due = ctx.store.rebalances_due()
        if not due:
            return
        ctx.hardware.refresh()
        started = None
        for switch in due:
            started = _rebalance(ctx, switch, None)
            if started:
                break
        if not started:
            return
        drive(ctx, started[0].op, started)
