"""Fault injection at the ports, and the check that the store tells the machine's story.

:class:`Faulty` wraps a hardware or runtime port; the :class:`FaultPlan` it shares
with its sibling counts the side effects (mutating port calls) of a command and,
at the chosen one, makes the machine refuse it (``refuse``: nothing done, an
error like a kernel's) or kills the process (:class:`Killed`, which nothing in
iovctl catches: ``kill-before`` the call or ``kill-after`` it, before iovctl
hears that it was done). A killed context is dropped without any cleanup, as a
SIGKILL drops a process; the next one opens the same state and machine.

:func:`store_matches_machine` lists every way the store and the machine disagree.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iovctl.domain.model import SCRUBBED, VmState
from iovctl.domain.nic_rules import vf_settings_for
from iovctl.errors import HardwareError
from iovctl.services.context import Context

HARDWARE_WRITES = frozenset({"set_num_vfs", "set_vf_settings"})
RUNTIME_WRITES = frozenset(
    {
        "start_vm",
        "stop_vm",
        "plug_software_nic",
        "unplug_nic",
        "attach_vf",
        "detach_vf",
        "remove_switch",
        "define_vm",
        "adopt_vm",
        "forget_vm",
    }
)
MODES = ("refuse", "kill-before", "kill-after")


class Killed(BaseException):
    """SIGKILL, in-process: no handler runs, nothing is confirmed after it."""


@dataclass
class FaultPlan:
    #: The 1-based side effect to fail; None: count only.
    at: int | None = None
    mode: str = "refuse"
    calls: list[str] = field(default_factory=list)

    def hit(self, name: str, do: Callable[[], Any]) -> Any:
        self.calls.append(name)
        if len(self.calls) != self.at:
            return do()
        if self.mode == "refuse":
            raise HardwareError(
                "injected-fault", f"the machine refused {name} (injected)", "", errno.EIO
            )
        if self.mode == "kill-after":
            do()
        raise Killed(name)


class Faulty:
    """A port whose mutating calls go through a :class:`FaultPlan`."""

    def __init__(self, target: Any, writes: frozenset[str], plan: FaultPlan) -> None:
        self._target = target
        self._writes = writes
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._writes:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._plan.hit(name, lambda: attr(*args, **kwargs))

        return call


def inject(ctx: Context, plan: FaultPlan) -> Context:
    """The same context, its hardware and runtime behind ``plan``."""
    return Context(
        ctx.store,
        Faulty(ctx.hardware, HARDWARE_WRITES, plan),  # type: ignore[arg-type]
        Faulty(ctx.runtime, RUNTIME_WRITES, plan),  # type: ignore[arg-type]
        ctx.allocation_window,
    )


def store_matches_machine(ctx: Context) -> list[str]:
    """Every disagreement between the store and the machine (empty: one story).

    VF counts, VF settings (a tenant's on a held VF, scrubbed on a free one), which
    VMs run, which NICs have a VF attached, no VF held twice, nothing left in the
    journal or on its way back.
    """
    store, hw, rt = ctx.store, ctx.hardware, ctx.runtime
    problems = [f"unfinished operation {op}" for op in store.operations()]
    problems += [f"VF {a}/{i} still on its way back ({why})" for a, i, why in store.released_vfs()]
    desired = store.desired_num_vfs()
    adapters = [a for a in hw.adapters() if a.sriov is not None]
    for adapter in adapters:
        if adapter.name in desired and desired[adapter.name] != adapter.num_vfs:
            problems.append(
                f"{adapter.name}: store wants {desired[adapter.name]} VFs, "
                f"machine has {adapter.num_vfs}"
            )
    running = {vm.name for vm in store.list_vms() if vm.state is VmState.RUNNING}
    for vm in store.list_vms():
        if rt.is_running(vm.name) != (vm.name in running):
            problems.append(f"VM {vm.name}: store says {vm.state.value}, runtime disagrees")
    holders: dict[tuple[str, int], Any] = {}
    for nic in store.list_nics():
        a = nic.assignment
        if a is not None:
            if nic.vm not in running:
                problems.append(f"{nic.label} holds VF {a.index} but its VM is off")
            key = (a.adapter, a.index)
            if key in holders:
                problems.append(f"VF {key} held by {holders[key].label} and {nic.label}")
            holders[key] = nic
        attached = nic.vm in running and rt.vf_data_path_active(nic.vm, nic.name)
        if attached != (a is not None and nic.vm in running):
            problems.append(
                f"{nic.label}: store says {'VF ' + str(a.index) if a else 'software path'}, "
                f"runtime says VF attached={attached}"
            )
    for adapter in adapters:
        existing = {vf.index: vf for vf in hw.virtual_functions(adapter.name)}
        for (name, index), nic in holders.items():
            if name == adapter.name and index not in existing:
                problems.append(f"{nic.label} holds VF {index} of {name}, which does not exist")
        for index, vf in existing.items():
            holder = holders.get((adapter.name, index))
            expected = vf_settings_for(holder.config) if holder else SCRUBBED
            if vf.settings != expected:
                who = holder.label if holder else "nobody (free)"
                problems.append(f"VF {index} of {adapter.name} ({who}) carries {vf.settings}")
    return problems
