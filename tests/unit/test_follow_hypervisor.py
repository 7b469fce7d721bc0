"""The services that follow a hypervisor (issue 12): apply adopts the hypervisor's
power state instead of undoing it, guests that never negotiate failover lose their
VF with the reason, VFs of the hypervisor's own pools are shown and never handed
out, and readiness judges the runtime's facts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_domains import adopt_domain, one_vf_host

from iovctl.adapters.sim import runtime as sim
from iovctl.domain.model import RuntimeFacts, VmState
from iovctl.domain.readiness import runtime_reasons, unverified_runtime_facts
from iovctl.errors import NotFound
from iovctl.services import api, journal, power, vms
from iovctl.services.context import Context
from iovctl.services.failover_watch import FailoverWatch, give_up
from iovctl.services.vms import NicChanges


@pytest.fixture
def ctx() -> Iterator[Context]:
    with one_vf_host() as context:
        yield context


_domain = adopt_domain


def _machine(ctx: Context) -> object:
    return ctx.runtime.machine  # type: ignore[attr-defined]


def test_apply_follows_a_domain_started_outside_instead_of_stopping_it(ctx: Context) -> None:
    _domain(ctx, "web", 50)
    sim.start_domain(_machine(ctx), "web")  # type: ignore[arg-type]
    report = api.apply(ctx)
    assert [(c.action, c.vm, c.running) for c in report.changes] == [  # type: ignore[union-attr]
        ("follow-hypervisor", "web", True)
    ]
    assert ctx.runtime.is_running("web")
    assert ctx.store.get_nic("web", "nic0").assignment is not None
    assert api.apply(ctx).changed == 0  # it agrees now


def test_apply_still_stops_what_an_interrupted_command_left_of_its_own_vms(ctx: Context) -> None:
    api.vm_create(ctx, "own")
    ctx.runtime.start_vm("own")  # a stop killed before its journal
    report = api.apply(ctx)
    assert [c.action for c in report.changes] == ["remove-leftover-vm"]
    assert not ctx.runtime.is_running("own")


def test_a_report_that_agrees_with_the_store_changes_nothing(ctx: Context) -> None:
    _domain(ctx, "web", 50)
    api.vm_start(ctx, "web")  # iovctl's own start, reported back by the hypervisor
    seq = api.newest_event(ctx)
    assert journal.run(ctx, power.sync) == []
    assert api.newest_event(ctx) == seq


def test_a_stale_report_is_checked_against_the_hypervisor(ctx: Context) -> None:
    from iovctl.domain.model import VmPowerChange

    _domain(ctx, "web", 50)
    # "started" reported, but the domain was destroyed again before it was heard
    assert journal.run(ctx, power.follow, VmPowerChange("web", True, "virsh start")) is False
    assert ctx.store.get_vm("web").state is VmState.OFF


def test_a_guest_without_failover_loses_its_vf_after_the_bound(ctx: Context) -> None:
    _domain(ctx, "old", 50, failover=False)
    _domain(ctx, "web", 10)
    api.vm_start(ctx, "old")
    api.vm_start(ctx, "web")
    watch = FailoverWatch(bound=60)
    assert watch.look(ctx, 1000.0) == []
    assert watch.look(ctx, 1059.0) == []
    overdue = watch.look(ctx, 1060.0)
    assert [(vm, nic) for vm, nic, _ in overdue] == [("old", "nic0")]
    vm, nic, pci = overdue[0]
    assert journal.run(ctx, give_up, vm, nic, pci, 60) is True
    old = api.nic_show(ctx, "old", "nic0")
    assert (old.virtual_function, old.status_reason) == (None, "guest-no-failover")
    assert "Linux >= 4.18" in old.status_description
    assert api.nic_show(ctx, "web", "nic0").virtual_function is not None  # the next waiter
    assert journal.run(ctx, give_up, vm, nic, pci, 60) is False  # done already
    # A restart is a new chance (the guest may have been upgraded meanwhile).
    api.vm_stop(ctx, "web")
    api.vm_stop(ctx, "old")
    api.vm_start(ctx, "old")
    assert api.nic_show(ctx, "old", "nic0").virtual_function is not None


def test_a_guest_that_uses_its_vf_is_left_alone(ctx: Context) -> None:
    _domain(ctx, "web", 50)
    api.vm_start(ctx, "web")
    watch = FailoverWatch(bound=1)
    assert watch.look(ctx, 0.0) == [] and watch.look(ctx, 100.0) == []
    assert watch.idle_since == {}


def test_own_vms_are_never_given_up(ctx: Context) -> None:
    """Only a hypervisor's guests negotiate failover; the check asks the runtime."""
    api.vm_create(ctx, "own")
    api.nic_add(ctx, "own", "sw", iov_weight=50)
    api.vm_start(ctx, "own")
    ctx.runtime.detach_vf("own", "nic0", ctx.hardware.virtual_function("enp1s0", 0))
    watch = FailoverWatch(bound=1)
    watch.look(ctx, 0.0)
    overdue = watch.look(ctx, 5.0)
    assert [vm for vm, _, _ in overdue] == ["own"]  # idle: apply's business (it reattaches)
    assert api.apply(ctx).changed == 1
    assert watch.look(ctx, 10.0) == []


def test_a_domain_undefined_and_stopped_behind_the_daemons_back_frees_its_vf(
    ctx: Context,
) -> None:
    """``virsh undefine`` of a running domain, then its stop, with no daemon to hear
    it: the next sync (the daemon's start or resync, ``apply``) stops the VM in the
    store and hands its VF, scrubbed, to the next waiter; the record stays."""
    _domain(ctx, "web", 50)
    _domain(ctx, "next", 10)
    sim.start_domain(_machine(ctx), "web")  # type: ignore[arg-type]
    sim.start_domain(_machine(ctx), "next")  # type: ignore[arg-type]
    journal.run(ctx, power.sync)
    assert ctx.store.get_nic("web", "nic0").assignment is not None  # the one VF
    assert ctx.store.get_nic("next", "nic0").assignment is None
    sim.undefine_domain(_machine(ctx), "web")  # type: ignore[arg-type]
    assert journal.run(ctx, power.sync) == []  # still running, transient
    sim.stop_domain(_machine(ctx), "web")  # type: ignore[arg-type]
    assert journal.run(ctx, power.sync) == [("web", False)]
    assert ctx.store.get_vm("web").state is VmState.OFF
    assert ctx.store.get_nic("next", "nic0").assignment is not None  # handed on
    [event] = [e for e in api.events(ctx, object_name="web") if e.code == "vm-stopped"]
    assert "gone from the hypervisor" in event.message
    assert "iovctl vm delete web" in event.message
    with pytest.raises(NotFound):
        api.vm_start(ctx, "web")
    api.vm_delete(ctx, "web")
    assert journal.run(ctx, power.sync) == []


def test_a_vf_the_hypervisor_holds_is_shown_and_never_handed_out(ctx: Context) -> None:
    vf = ctx.hardware.virtual_function("enp1s0", 0)
    sim.hold_pool_vf(_machine(ctx), vf.pci_address, "network pool hostnet")  # type: ignore[arg-type]
    api.vm_create(ctx, "own")
    api.nic_add(ctx, "own", "sw", iov_weight=50)
    api.vm_start(ctx, "own")
    nic = api.nic_show(ctx, "own", "nic0")
    assert (nic.virtual_function, nic.status_reason) == (None, "vfs-exhausted")
    [shown] = api.vf_list(ctx, "enp1s0")
    assert (shown.in_use, shown.held_elsewhere, shown.vm_friendly_name) == (True, True, None)
    sim.release_pool_vf(_machine(ctx), vf.pci_address)  # type: ignore[arg-type]
    api.apply(ctx)
    assert api.nic_show(ctx, "own", "nic0").virtual_function is not None


def test_import_refusals_leave_no_vm(ctx: Context) -> None:
    sim.define_domain(_machine(ctx), "old", machine="pc-i440fx-7.2")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="machine type"):
        journal.run(ctx, vms.import_vm, "old")
    assert ctx.store.find_vm("old") is None
    assert [e.code for e in ctx.store.list_events()][-1] == "switch-created"


def test_delete_lets_go_of_an_imported_domain_without_removing_it(ctx: Context) -> None:
    _domain(ctx, "web", 50)
    api.vm_delete(ctx, "web")
    assert ctx.runtime.power_states() == {}
    api.vm_import(ctx, "web")  # still there to import again
    assert ctx.runtime.power_states() == {"web": False}
    assert ctx.store.list_nics("web") == []


@pytest.mark.parametrize(
    ("facts", "codes"),
    [
        (RuntimeFacts("libvirt", "qemu:///system", (9, 0, 0), (7, 2, 0), True), []),
        (
            RuntimeFacts("libvirt", "qemu:///system", (6, 0, 0), (4, 1, 1), False),
            ["libvirt-too-old", "qemu-too-old", "q35-missing"],
        ),
        (
            RuntimeFacts("libvirt", "qemu:///system", reachable=False, error="no socket"),
            ["vm-runtime-unreachable"],
        ),
    ],
)
def test_readiness_judges_the_runtime(facts: RuntimeFacts, codes: list[str]) -> None:
    reasons = runtime_reasons(facts, True)
    assert [r.code for r in reasons] == codes
    assert all(r.hint for r in reasons)
    assert runtime_reasons(RuntimeFacts("netns"), False) == []


def test_unknown_runtime_facts_are_listed_with_how_to_check() -> None:
    facts = RuntimeFacts("libvirt", "qemu:///system")
    listed = unverified_runtime_facts(facts, True)
    assert [r.code for r in listed] == [
        "libvirt-version-unverified",
        "qemu-version-unverified",
        "q35-unverified",
    ]
    assert all("qemu:///system" in r.hint for r in listed)
    assert unverified_runtime_facts(facts, False) == []
    assert runtime_reasons(facts, True) == []  # unknown is not missing


def test_host_shows_the_runtime_facts(ctx: Context) -> None:
    view = api.host_show(ctx)
    assert view.runtime_facts is not None and view.runtime_facts.q35_machine is True
    assert view.iov_support is True


def test_an_own_vms_change_is_not_the_hypervisors(ctx: Context) -> None:
    journal.run(ctx, vms.create_vm, "own")
    journal.run(ctx, vms.add_nic, "own", "sw", None, NicChanges(iov_weight=5))
    ctx.runtime.start_vm("own")
    assert journal.run(ctx, power.sync) == []  # not the hypervisor's: apply's business
    assert ctx.store.get_vm("own").state is VmState.OFF


def _configured_nics(ctx: Context, vm: str) -> dict[str, str]:
    rows = _machine(ctx).execute(  # type: ignore[attr-defined]
        "SELECT nic, mac FROM sim_vm_nic WHERE vm = ?", (vm,)
    )
    return dict(rows.fetchall())


def test_a_nic_added_to_a_stopped_domain_is_in_its_config_for_a_start_outside(
    ctx: Context,
) -> None:
    """virsh start boots what the domain's config holds: the NIC must be there before
    the daemon hears of the start (and its switch's bridge with it)."""
    _domain(ctx, "web", 50)
    assert ctx.store.get_vm("web").state is VmState.OFF
    mac = ctx.store.get_nic("web", "nic0").config.mac
    assert _configured_nics(ctx, "web") == {"nic0": mac}
    api.nic_set(ctx, "web", "nic0", mac="52:54:00:aa:bb:cc")
    assert _configured_nics(ctx, "web") == {"nic0": "52:54:00:aa:bb:cc"}
    api.nic_remove(ctx, "web", "nic0")
    assert _configured_nics(ctx, "web") == {}
