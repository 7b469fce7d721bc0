"""Stateful property test: the store follows a hypervisor (issue 12, items 2 and 6).

Any sequence of outside starts, stops and undefines of imported domains (``virsh
start``, ``virsh destroy``, crashes, ``virsh undefine``), iovctl's own commands on them and on its own VMs,
weight changes, ``apply``, and VFs the hypervisor gives out by its own means (a
libvirt hostdev pool). Each outside change reaches the store as the daemon brings
it: one reported change (``power.follow``), or a full sync (daemon start, apply).

After every step: the store and the machine tell one story (contract/faults.py:
which VMs run, which NIC has which VF attached, VF settings), no VF is held twice,
no VF held elsewhere is granted, and no eligible NIC waits while a VF iovctl may
hand out is free.

Runs on the real services, SQLite store (in memory) and the simulated hypervisor.
"""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contract.faults import store_matches_machine
from iovctl.adapters.sim import runtime as sim
from iovctl.adapters.sim import simulated_machine
from iovctl.adapters.sim.spec import parse_spec
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.domain.model import VmPowerChange, VmState
from iovctl.errors import IovctlError
from iovctl.services import adapters as adapter_service
from iovctl.services import journal, power, reconcile, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges

SPEC = {
    "name": "prop",
    "adapters": [
        {
            "name": "pf0",
            "pci_address": "0000:01:00.0",
            "driver": "igb",
            "sriov": {"total_vfs": 4, "queue_pairs": 8, "max_queue_pairs_per_vf": 1},
        }
    ],
}
DOMAINS = ["web", "db", "mail"]
OWN = ["own0", "own1"]


class FollowMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        store = SqliteStore.open(None)
        hw, rt = simulated_machine(parse_spec(SPEC))
        self.machine = hw.machine
        self.ctx = Context(store, hw, rt)
        journal.run(self.ctx, adapter_service.enable, "pf0", 3)
        journal.run(self.ctx, switches.create, "sw", "pf0", True)
        for i, name in enumerate(DOMAINS):
            sim.define_domain(self.machine, name)
            journal.run(self.ctx, vms.import_vm, name)
            journal.run(self.ctx, vms.add_nic, name, "sw", None, NicChanges(iov_weight=10 + i * 30))
        for name in OWN:
            journal.run(self.ctx, vms.create_vm, name)
            journal.run(self.ctx, vms.add_nic, name, "sw", None, NicChanges(iov_weight=40))

    def _do(self, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(IovctlError):  # refusals leave state as it was
            journal.run(self.ctx, fn, *args, **kwargs)

    def _bring(self, vm: str, running: bool, detail: str, full: bool) -> None:
        """The daemon hears of it: one change, or a full sync."""
        if full:
            self._do(power.sync)
        else:
            self._do(power.follow, VmPowerChange(vm, running, detail))

    @rule(vm=st.sampled_from(DOMAINS), full=st.booleans())
    def outside_start(self, vm: str, full: bool) -> None:
        with contextlib.suppress(ValueError):  # libvirt: "domain is already active"
            sim.start_domain(self.machine, vm)
        self._bring(vm, True, "virsh start", full)

    @rule(
        vm=st.sampled_from(DOMAINS),
        how=st.sampled_from(["virsh destroy", "crashed", "shut down"]),
        full=st.booleans(),
    )
    def outside_stop(self, vm: str, how: str, full: bool) -> None:
        with contextlib.suppress(ValueError):  # "domain is not running"
            sim.stop_domain(self.machine, vm, how)
        self._bring(vm, False, how, full)

    @rule(vm=st.sampled_from(DOMAINS), full=st.booleans())
    def outside_undefine(self, vm: str, full: bool) -> None:
        """``virsh undefine``: a running domain stays, transient, until it stops."""
        with contextlib.suppress(ValueError):  # undefined already
            sim.undefine_domain(self.machine, vm)
        self._bring(vm, self.ctx.runtime.is_running(vm), "undefined", full)

    @rule(vm=st.sampled_from(DOMAINS))
    def delete_and_import_again(self, vm: str) -> None:
        """What the event of a lost VM says: vm delete, define again, vm import."""
        if vm not in self.ctx.runtime.lost_vms([vm]):
            return
        self._do(vms.delete_vm, vm)
        sim.define_domain(self.machine, vm)
        self._do(vms.import_vm, vm)
        self._do(vms.add_nic, vm, "sw", None, NicChanges(iov_weight=50))

    @rule(vm=st.sampled_from(DOMAINS + OWN))
    def start(self, vm: str) -> None:
        self._do(vms.start_vm, vm)

    @rule(vm=st.sampled_from(DOMAINS + OWN))
    def stop(self, vm: str) -> None:
        self._do(vms.stop_vm, vm)

    @rule(vm=st.sampled_from(DOMAINS + OWN), weight=st.integers(0, 100))
    def set_weight(self, vm: str, weight: int) -> None:
        self._do(vms.set_nic, vm, "nic0", NicChanges(iov_weight=weight))

    @rule(index=st.integers(0, 2))
    def pool_takes_a_free_vf(self, index: int) -> None:
        """A libvirt hostdev pool takes a VF nobody in iovctl holds; iovctl must
        never hand it out (its next planning round sees it)."""
        if self.ctx.store.vf_holder_exists("pf0", index):
            return
        vf = self.ctx.hardware.virtual_function("pf0", index)
        sim.hold_pool_vf(self.machine, vf.pci_address, "network pool hostnet")
        self.ctx.store.mark_rebalance_due("sw")

    @precondition(lambda self: bool(self.ctx.runtime.vfs_held_elsewhere()))
    @rule(data=st.data())
    def pool_gives_a_vf_back(self, data: st.DataObject) -> None:
        pci = data.draw(st.sampled_from(sorted(self.ctx.runtime.vfs_held_elsewhere())))
        sim.release_pool_vf(self.machine, pci)
        self.ctx.store.mark_rebalance_due("sw")

    @rule()
    def apply(self) -> None:
        self._do(reconcile.apply, retry_stalled=True)

    @invariant()
    def one_story(self) -> None:
        ctx = self.ctx
        journal.settle(ctx)  # what the daemon's next write would hand on
        assert store_matches_machine(ctx) == []
        elsewhere = ctx.runtime.vfs_held_elsewhere()
        holders = [n for n in ctx.store.list_nics() if n.assignment is not None]
        held = [n.assignment.pci_address for n in holders if n.assignment]
        assert len(held) == len(set(held)), "a VF held twice"
        assert not set(held) & elsewhere, "a VF the hypervisor gave out is granted"
        names = [vm.name for vm in ctx.store.list_vms()]
        for name in ctx.runtime.lost_vms(names):
            assert ctx.store.get_vm(name).state is VmState.OFF, f"lost {name} runs in the store"
        states = ctx.runtime.power_states()
        for vm in ctx.store.list_vms():
            if vm.name in states:
                assert states[vm.name] == (vm.state is VmState.RUNNING), vm.name
        running = {vm.name for vm in ctx.store.list_vms() if vm.state is VmState.RUNNING}
        waiting = [
            n
            for n in ctx.store.list_nics()
            if n.vm in running and n.config.iov_weight > 0 and n.assignment is None
        ]
        pf = ctx.hardware.adapter("pf0")
        usable = {
            vf.pci_address
            for vf in ctx.hardware.virtual_functions("pf0")
            if vf.pci_address not in elsewhere
        }
        if waiting and pf.num_vfs:
            assert len(held) == len(usable), "a NIC waits while a usable VF is free"


FollowMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=25, deadline=None)
TestFollowHypervisor = FollowMachine.TestCase
