"""Fault injection: every side effect of every mutating command, refused or killed.

For each scenario the command runs once undisturbed to count its side effects
(mutating port calls); then, for each of them and each mode (``refuse``,
``kill-before``, ``kill-after``; see faults.py), the scenario runs again from
scratch with that one side effect disturbed. After it:

- if the journal is empty, the store and the machine must already tell one story;
- then ``iovctl apply`` (as a new process after a kill) finishes or compensates
  what is left, and they must tell one story: VF counts, VF settings, which VMs
  run, which NIC has a VF attached, no VF held twice.

Not marked ``contract``: it brings its own backends, so the QEMU guest (which runs
the ``contract`` marker against the real igb) has nothing to add to it.
Runs on the simulated host and on the Linux backend over a fake sysfs tree and a
fake rtnetlink kernel (with the simulated runtime). The namespace runtime runs a
subset in tests/privileged/test_fault_injection_netns.py.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.sim.machine import mark_powered_on, open_machine, powered_on
from iovctl.adapters.sim.runtime import (
    SimulatedVmRuntime,
    define_domain,
    start_domain,
    stop_domain,
)
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.domain.model import VmPowerChange
from iovctl.errors import HardwareError, IovctlError
from iovctl.services import adapters, journal, power, reconcile, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges
from iovctl.wiring import Options, open_context

from .faults import MODES, FaultPlan, Killed, inject, store_matches_machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from linux.fake_rtnl import FakeRtnl, FakeVf
from linux.kernel_seams import KernelSysfs
from linux.sysfs_tree import Tree, build, igb_host

PF = "enp1s0"

# -- backends: how to open (again) one machine ----------------------------------------

Opener = Callable[[Path], Context]


def _sim_backend(tmp: Path) -> Opener:
    def open_(state: Path) -> Context:
        return open_context(Options(state_dir=state, sim="igb"))

    return open_


class _CoupledSysfs(KernelSysfs):
    """The kernel's VF count and rtnetlink's VF list are one: new VFs are clean."""

    def __init__(self, tree: Tree, fake: FakeRtnl, **kwargs: Any) -> None:
        super().__init__(tree, **kwargs)
        self.fake = fake

    def _numvfs(self, path: Path, count: int) -> None:
        before = int(path.read_text())
        super()._numvfs(path, count)
        if count != before:
            self.fake.vfs = [FakeVf() for _ in range(count)]


def _linux_backend(tmp: Path) -> Opener:
    from pyroute2 import IPRoute

    from iovctl.adapters.linux.host import LinuxHost
    from iovctl.adapters.linux.netlink import NetlinkVfs

    spec = igb_host()
    tree = build(tmp / "machine", spec)
    fake = FakeRtnl(0)

    def open_(state: Path) -> Context:
        store = SqliteStore.open(state)
        host = LinuxHost(
            tree.root,
            sysfs=_CoupledSysfs(tree, fake, vf_create_timeout=2, poll_interval=0.01),
            netlink=NetlinkVfs(lambda: IPRoute(use_socket=fake)),
            kernel_release=spec.kernel_release,
        )
        machine = open_machine(state)
        runtime = SimulatedVmRuntime(machine)
        if not powered_on(machine):
            runtime.ensure_schema()
            mark_powered_on(machine)
        return Context(store, host, runtime)

    return open_


BACKENDS: dict[str, Callable[[Path], Opener]] = {"sim": _sim_backend, "linux": _linux_backend}

# -- scenarios ------------------------------------------------------------------------


def run(ctx: Context, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return journal.run(ctx, fn, *args, **kwargs)


@dataclass(frozen=True)
class Names:
    """What a scenario calls its PF, switch and VMs (a host of its own needs unique
    names: namespaces and bridges are the kernel's, not the state directory's)."""

    pf: str = PF
    switch: str = "sw"
    prefix: str = ""

    def vm(self, name: str) -> str:
        return self.prefix + name


def _vm(ctx: Context, n: Names, name: str, weight: int, *, start: bool) -> None:
    run(ctx, vms.create_vm, n.vm(name))
    run(ctx, vms.add_nic, n.vm(name), n.switch, "nic0", NicChanges(iov_weight=weight))
    if start:
        run(ctx, vms.start_vm, n.vm(name))


def _pool(ctx: Context, n: Names, vfs: int, *running: tuple[str, int]) -> None:
    if vfs:
        run(ctx, adapters.set_num_vfs, n.pf, vfs)
    run(ctx, switches.create, n.switch, n.pf, True)
    for name, weight in running:
        _vm(ctx, n, name, weight, start=True)


Step = Callable[[Context, Names], object]


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Step
    command: Step


def _behind_the_back(ctx: Context, n: Names) -> None:
    """The VF count changed behind iovctl (a PF reset, someone's echo 0 > sriov_numvfs)."""
    ctx.hardware.set_num_vfs(n.pf, 0)


def _machine(ctx: Context) -> Any:
    return ctx.runtime.machine  # type: ignore[attr-defined]


def _domain(ctx: Context, n: Names, name: str, weight: int, *, running: bool) -> None:
    """A libvirt-like domain, imported, with a NIC of ``weight``."""
    define_domain(_machine(ctx), n.vm(name))
    if running:
        start_domain(_machine(ctx), n.vm(name))
    run(ctx, vms.import_vm, n.vm(name))
    run(ctx, power.sync_vm, n.vm(name))
    run(ctx, vms.add_nic, n.vm(name), n.switch, "nic0", NicChanges(iov_weight=weight))


def _import(ctx: Context, n: Names) -> None:
    run(ctx, vms.import_vm, n.vm("web"))
    run(ctx, power.sync_vm, n.vm("web"))


def _outside(ctx: Context, n: Names, running: bool) -> None:
    (start_domain if running else stop_domain)(_machine(ctx), n.vm("web"))


SCENARIOS = [
    Scenario(
        "vm-import",
        lambda c, n: (
            _pool(c, n, 2, ("a", 50)),
            define_domain(_machine(c), n.vm("web")),
            start_domain(_machine(c), n.vm("web")),
        ),
        _import,
    ),
    Scenario(
        "vm-delete-imported",
        lambda c, n: (_pool(c, n, 2), _domain(c, n, "web", 50, running=False)),
        lambda c, n: run(c, vms.delete_vm, n.vm("web")),
    ),
    Scenario(
        "started-outside",
        lambda c, n: (
            _pool(c, n, 1, ("a", 20)),
            _domain(c, n, "web", 50, running=False),
            _outside(c, n, True),
        ),
        lambda c, n: run(c, power.follow, VmPowerChange(n.vm("web"), True, "virsh start")),
    ),
    Scenario(
        "stopped-outside",
        lambda c, n: (
            _pool(c, n, 1),
            _domain(c, n, "web", 50, running=True),
            _vm(c, n, "b", 20, start=True),
            _outside(c, n, False),
        ),
        lambda c, n: run(c, power.follow, VmPowerChange(n.vm("web"), False, "crashed")),
    ),
    Scenario(
        "adapter-enable",
        lambda c, n: _pool(c, n, 0, ("a", 50), ("b", 20)),
        lambda c, n: run(c, adapters.enable, n.pf, 2),
    ),
    Scenario(
        "adapter-set",
        lambda c, n: _pool(c, n, 2, ("a", 50), ("b", 20)),
        lambda c, n: run(c, adapters.set_num_vfs, n.pf, 3, force=True),
    ),
    Scenario(
        "adapter-disable",
        lambda c, n: _pool(c, n, 2, ("a", 50), ("b", 20)),
        lambda c, n: run(c, adapters.disable, n.pf, force=True),
    ),
    Scenario(
        "vm-start",
        lambda c, n: (_pool(c, n, 2, ("a", 50)), _vm(c, n, "b", 20, start=False)),
        lambda c, n: run(c, vms.start_vm, n.vm("b")),
    ),
    Scenario(
        "preemption",
        lambda c, n: (_pool(c, n, 2, ("a", 50), ("b", 20)), _vm(c, n, "c", 80, start=False)),
        lambda c, n: run(c, vms.start_vm, n.vm("c")),
    ),
    Scenario(
        "vm-stop",
        lambda c, n: _pool(c, n, 2, ("a", 50), ("b", 20), ("c", 10)),
        lambda c, n: run(c, vms.stop_vm, n.vm("a")),
    ),
    Scenario(
        "nic-add",
        lambda c, n: _pool(c, n, 2, ("a", 50)),
        lambda c, n: run(c, vms.add_nic, n.vm("a"), n.switch, "nic1", NicChanges(iov_weight=60)),
    ),
    Scenario(
        "nic-set-weight",
        lambda c, n: _pool(c, n, 2, ("a", 50), ("b", 20), ("c", 10)),
        lambda c, n: run(c, vms.set_nic, n.vm("a"), "nic0", NicChanges(iov_weight=0)),
    ),
    Scenario(
        "nic-set-settings",
        lambda c, n: _pool(c, n, 2, ("a", 50)),
        lambda c, n: run(c, vms.set_nic, n.vm("a"), "nic0", NicChanges(vlan=7, trust=True)),
    ),
    Scenario(
        "nic-remove",
        lambda c, n: _pool(c, n, 2, ("a", 50), ("b", 20), ("c", 10)),
        lambda c, n: run(c, vms.remove_nic, n.vm("a"), "nic0"),
    ),
    Scenario(
        "apply",
        lambda c, n: (_pool(c, n, 2, ("a", 50), ("b", 20)), _behind_the_back(c, n)),
        lambda c, n: run(c, reconcile.apply, retry_stalled=True),
    ),
]

# -- the test ---------------------------------------------------------------------------


@dataclass
class Outcome:
    failed: str | None = None
    problems_before_recovery: list[str] | None = None
    problems: list[str] | None = None


def disturbed(
    opener: Opener, state: Path, scenario: Scenario, plan: FaultPlan, names: Names = Names()
) -> Outcome:
    """Run the scenario with ``plan``'s fault, then apply as the next process would."""
    ctx = opener(state)
    scenario.setup(ctx, names)
    outcome = Outcome()
    try:
        scenario.command(inject(ctx, plan), names)
    except IovctlError as exc:
        outcome.failed = exc.code
    except Killed:
        ctx.store.close()  # the kernel drops the dead process's locks
        ctx = opener(state)  # the next process
        outcome.failed = "killed"
    if not ctx.store.operations():
        outcome.problems_before_recovery = store_matches_machine(ctx)
    run(ctx, reconcile.apply, retry_stalled=True)
    outcome.problems = store_matches_machine(ctx)
    ctx.store.close()
    return outcome


def count(opener: Opener, state: Path, scenario: Scenario, names: Names = Names()) -> int:
    """How many side effects the undisturbed command has."""
    ctx = opener(state)
    scenario.setup(ctx, names)
    plan = FaultPlan()
    scenario.command(inject(ctx, plan), names)
    assert store_matches_machine(ctx) == []
    ctx.store.close()
    return len(plan.calls)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_side_effect_refused_or_killed_ends_in_one_story(
    tmp_path: Path, backend: str, scenario: Scenario
) -> None:
    counted = count(BACKENDS[backend](tmp_path / "count"), tmp_path / "count-state", scenario)
    assert counted > 0, "the scenario has no side effect to disturb"
    failures = []
    for at in range(1, counted + 1):
        for mode in MODES:
            where = tmp_path / f"{at}-{mode}"
            opener = BACKENDS[backend](where)
            outcome = disturbed(opener, where / "state", scenario, FaultPlan(at, mode))
            if outcome.problems_before_recovery:
                failures.append((at, mode, "before apply", outcome.problems_before_recovery))
            if outcome.problems:
                failures.append((at, mode, "after apply", outcome.problems))
    assert failures == [], f"{scenario.name} on {backend} ({counted} side effects): {failures}"


def test_the_harness_sees_a_store_that_lies(tmp_path: Path) -> None:
    """store_matches_machine is not blind: a store that claims a VF the machine never
    configured or attached is caught."""
    ctx = _sim_backend(tmp_path)(tmp_path / "state")
    _pool(ctx, Names(), 2, ("a", 50))
    assert store_matches_machine(ctx) == []
    with ctx.store.transaction():
        ctx.store.set_desired_num_vfs(PF, 3)
    assert any("wants 3 VFs" in p for p in store_matches_machine(ctx))
    ctx.store.close()


def test_a_refused_grant_does_not_undo_another_vms_stop(tmp_path: Path, backend: str) -> None:
    """The issue's case: ``vm stop a`` frees a VF, and giving it to the waiting c is
    refused. a stays stopped, c waits on the software path with the reason, the VF
    is scrubbed and free, the command succeeds; apply gives c its chance again."""
    opener = BACKENDS[backend](tmp_path)
    ctx = opener(tmp_path / "state")
    _pool(ctx, Names(), 2, ("a", 50), ("b", 20), ("c", 10))

    class RefuseTheGrant(FaultPlan):
        """The stop's second VF write is c's grant (the first scrubs a's VF)."""

        def hit(self, name: str, do: Callable[[], Any]) -> Any:
            self.calls.append(name)
            if name == "set_vf_settings" and self.calls.count(name) == 2:
                raise HardwareError("injected-fault", "the VF's settings were refused")
            return do()

    faulty = inject(ctx, RefuseTheGrant())
    run(faulty, vms.stop_vm, "a")  # no error: the stop itself went through

    assert ctx.store.get_vm("a").state.value == "off"
    c = ctx.store.get_nic("c", "nic0")
    assert c.assignment is None and c.grant_error is not None
    shown = vms.show_nic(ctx, "c", "nic0")
    assert shown.status == "degraded" and "refused it a VF" in shown.status_description
    codes = [e.code for e in ctx.store.list_events()]
    assert "vf-grant-failed" in codes
    assert store_matches_machine(ctx) == []

    run(ctx, reconcile.apply, retry_stalled=True)
    assert ctx.store.get_nic("c", "nic0").assignment is not None
    assert store_matches_machine(ctx) == []
    ctx.store.close()
