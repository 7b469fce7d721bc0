"""The VM-runtime contract (ports.VmRuntime), one suite for every runtime.

Runs on the simulated runtime and on the namespace runtime (root, over an emulated
NIC: under the shared lock, see tests/privileged); a libvirt runtime joins by
adding a builder in runtimes.py. What it holds: every method is idempotent, a
NIC's VF data path is active exactly between attach and detach while its VM runs,
``reconcile`` removes what a killed command left of VMs that are off, and
``remove_switch`` can be repeated, a NIC's counters show which half carried what
its guest sent, and a stopped VM is released. A difference between runtimes is a bug in one of
them, never a reason to special-case the test.

Not marked ``contract``: the testbed selects that marker for the hardware suite.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import time

import pytest

from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import NicTxBytes, RuntimeFacts, VmPowerChange
from iovctl.errors import Conflict, HardwareError, NotFound
from iovctl.ports import VmRuntime

from .runtimes import Outside, RuntimeUnderTest

#: Seconds a watch may take to report a change (the simulated one polls every 0.1 s).
WATCH_BOUND_S = 10.0
#: Seconds a watch is given to begin: it reports what happens after it began, and
#: the port has no "ready" signal (the daemon syncs power_states besides).
WATCH_BEGIN_S = 0.5


def test_declares_the_driver_its_vfs_need(under_test: RuntimeUnderTest) -> None:
    assert isinstance(under_test.runtime.vf_driver, VfDriver)


def test_start_and_stop_are_idempotent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("a")
    rt.stop_vm(vm)  # never started: nothing to do
    rt.start_vm(vm)
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    assert rt.vf_data_path_active(vm, "nic0") is False
    rt.stop_vm(vm)
    rt.stop_vm(vm)
    assert rt.vf_data_path_active(vm, "nic0") is False


def test_the_vf_path_is_active_between_attach_and_detach(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("b")
    vf = under_test.vf(0)
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())

    rt.attach_vf(vm, "nic0", vf)
    rt.attach_vf(vm, "nic0", vf)
    assert rt.vf_data_path_active(vm, "nic0") is True

    rt.detach_vf(vm, "nic0", vf)
    rt.detach_vf(vm, "nic0", vf)
    assert rt.vf_data_path_active(vm, "nic0") is False

    rt.attach_vf(vm, "nic0", vf)  # the same VF can come back
    assert rt.vf_data_path_active(vm, "nic0") is True
    rt.stop_vm(vm)
    assert rt.vf_data_path_active(vm, "nic0") is False


def test_nics_are_independent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("c")
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config(1))
    rt.plug_software_nic(vm, "nic1", under_test.config(2))
    rt.attach_vf(vm, "nic1", under_test.vf(1))
    assert [rt.vf_data_path_active(vm, n) for n in ("nic0", "nic1")] == [False, True]
    rt.detach_vf(vm, "nic1", under_test.vf(1))
    rt.stop_vm(vm)


def test_unplug_is_idempotent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("d")
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    rt.plug_software_nic(vm, "nic0", under_test.config())  # plug is ensure too
    rt.unplug_nic(vm, "nic0")
    rt.unplug_nic(vm, "nic0")
    assert rt.vf_data_path_active(vm, "nic0") is False
    rt.plug_software_nic(vm, "nic0", under_test.config())  # and can come back
    rt.stop_vm(vm)
    rt.unplug_nic(vm, "nic0")  # off VM: nothing running to unplug from


def test_a_leftover_is_seen_running_and_stopped_alone(under_test: RuntimeUnderTest) -> None:
    """A stop killed after the store committed "off": the VM still runs, with its VF.
    ``apply`` finds it with is_running and stops it (services/reconcile.py)."""
    rt = under_test.runtime
    left, running = under_test.vm("e"), under_test.vm("f")
    for vm, index in ((left, 0), (running, 1)):
        rt.start_vm(vm)
        rt.plug_software_nic(vm, "nic0", under_test.config(index + 1))
        rt.attach_vf(vm, "nic0", under_test.vf(index))

    assert rt.is_running(left)
    rt.stop_vm(left)
    rt.stop_vm(left)  # idempotent
    assert not rt.is_running(left)
    assert rt.vf_data_path_active(left, "nic0") is False
    assert rt.vf_data_path_active(running, "nic0") is True  # not the store's "off"
    # The VF the leftover held can be taken by another VM.
    rt.detach_vf(running, "nic0", under_test.vf(1))
    rt.attach_vf(running, "nic0", under_test.vf(0))
    assert rt.vf_data_path_active(running, "nic0") is True
    rt.stop_vm(running)


def test_remove_switch_is_idempotent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("g")
    rt.remove_switch(under_test.switch)  # nothing built yet
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    rt.unplug_nic(vm, "nic0")
    rt.stop_vm(vm)
    rt.remove_switch(under_test.switch)
    rt.remove_switch(under_test.switch)


def test_guest_address_is_stable_or_absent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("h")
    first = rt.guest_address(vm, "nic0", under_test.config())
    assert first is None or isinstance(first, ipaddress.IPv4Interface)
    assert rt.guest_address(vm, "nic0", under_test.config()) == first


def _in_guest(prefix: list[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_guest_command_runs_programs_in_the_running_vm(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("i")
    assert rt.guest_command(vm) is None  # not running: nowhere to run
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    prefix = rt.guest_command(vm)
    address = rt.guest_address(vm, "nic0", under_test.config())
    if prefix is not None and address is not None:
        # The NIC's address is the guest's own: it can bind it there, not in the host.
        bind = (
            "import socket\n"
            f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(('{address.ip}', 0))\n"
        )
        done = _in_guest(prefix, bind)
        assert done.returncode == 0, done.stderr
        with pytest.raises(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((str(address.ip), 0))
    rt.stop_vm(vm)
    assert rt.guest_command(vm) is None


def _send_broadcast(prefix: list[str], address: ipaddress.IPv4Interface, count: int) -> None:
    """``count`` 1000-byte UDP datagrams to the NIC's subnet broadcast, from the guest."""
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n"
        f"s.bind(('{address.ip}', 0))\n"
        f"for _ in range({count}):\n"
        f"    s.sendto(bytes(1000), ('{address.network.broadcast_address}', 9))\n"
    )
    done = _in_guest(prefix, code)
    assert done.returncode == 0, done.stderr


def test_nic_tx_bytes_count_the_half_that_carried(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("j")
    assert rt.nic_tx_bytes(vm, "nic0") == NicTxBytes()  # not running
    rt.start_vm(vm)
    assert rt.nic_tx_bytes(vm, "nic0") == NicTxBytes()  # not plugged
    rt.plug_software_nic(vm, "nic0", under_test.config())
    first = rt.nic_tx_bytes(vm, "nic0")
    assert first.synthetic >= 0 and first.vf == 0  # no VF yet
    prefix = rt.guest_command(vm)
    address = rt.guest_address(vm, "nic0", under_test.config())
    if prefix is not None and address is not None:  # a runtime that moves packets
        sent = 20 * 1000
        _send_broadcast(prefix, address, 20)
        software = rt.nic_tx_bytes(vm, "nic0")
        assert software.synthetic - first.synthetic >= sent
        assert software.vf == 0

        rt.attach_vf(vm, "nic0", under_test.vf(0))
        before = rt.nic_tx_bytes(vm, "nic0")
        _send_broadcast(prefix, address, 20)
        on_vf = rt.nic_tx_bytes(vm, "nic0")
        assert on_vf.vf - before.vf >= sent
        assert on_vf.synthetic - before.synthetic < sent  # parked: not the path
        rt.detach_vf(vm, "nic0", under_test.vf(0))
    later = rt.nic_tx_bytes(vm, "nic0")
    assert later.synthetic >= first.synthetic  # counters never go back
    rt.stop_vm(vm)
    assert rt.nic_tx_bytes(vm, "nic0") == NicTxBytes()


def test_a_stopped_vm_is_released(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("k")
    assert rt.wait_released(vm, ["nic0"], 1.0) is True  # never ran
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    assert rt.wait_released(vm, ["nic0"], 0.05) is False  # it runs
    rt.stop_vm(vm)
    assert rt.wait_released(vm, ["nic0"], 10.0) is True


# -- VMs the hypervisor owns (VmRuntime: define, adopt, forget, power, watch) ----------


def _outside(under_test: RuntimeUnderTest) -> Outside:
    """The outside world's hands; a runtime whose VMs only iovctl starts has none."""
    if not under_test.runtime.follows_hypervisor:
        pytest.skip("the runtime's VMs start and stop only by iovctl's commands")
    assert under_test.outside is not None, "a runtime that follows a hypervisor needs Outside"
    return under_test.outside


class _Watching:
    """``watch`` in a thread of its own, as the daemon runs it."""

    def __init__(self, under_test: RuntimeUnderTest) -> None:
        self.changes: list[VmPowerChange] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(
            target=under_test.runtime.watch, args=(self.changes.append, self.stop), daemon=True
        )

    def __enter__(self) -> _Watching:
        self._thread.start()
        time.sleep(WATCH_BEGIN_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(2.0)
        assert not self._thread.is_alive(), "watch did not return within a second of stop"

    def wait_for(self, vm: str, running: bool) -> VmPowerChange:
        deadline = time.monotonic() + WATCH_BOUND_S
        while time.monotonic() < deadline:
            for change in self.changes:
                if change.vm == vm and change.running is running:
                    return change
            time.sleep(0.05)
        raise AssertionError(f"no report of {vm} {'starting' if running else 'stopping'}")


def test_declares_whether_it_follows_a_hypervisor_and_its_facts(
    under_test: RuntimeUnderTest,
) -> None:
    rt = under_test.runtime
    assert isinstance(rt.follows_hypervisor, bool)
    facts = rt.facts()
    assert isinstance(facts, RuntimeFacts) and facts.kind
    assert facts.reachable is True and facts.error == ""
    assert isinstance(rt.vfs_held_elsewhere(), frozenset)


def test_define_and_forget_are_idempotent(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("def")
    rt.define_vm(vm, under_test.template)
    rt.define_vm(vm, under_test.template)
    assert rt.power_states().get(vm, False) is False  # defined, not started
    rt.forget_vm(vm)
    rt.forget_vm(vm)
    assert vm not in rt.power_states()


def test_power_states_agree_with_is_running(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("pw")
    rt.define_vm(vm, under_test.template)
    rt.start_vm(vm)
    states = rt.power_states()
    assert all(states[name] == rt.is_running(name) for name in states)
    assert states.get(vm, True) is True
    rt.stop_vm(vm)
    assert rt.power_states().get(vm, False) is False
    rt.forget_vm(vm)


def test_watch_returns_soon_after_stop(under_test: RuntimeUnderTest) -> None:
    with _Watching(under_test):
        pass


def test_importing_what_the_hypervisor_lacks_is_refused(under_test: RuntimeUnderTest) -> None:
    rt, vm = under_test.runtime, under_test.vm("nosuch", prepared=False)
    expected: type[Exception] = NotFound if rt.follows_hypervisor else Conflict
    with pytest.raises(expected) as info:
        rt.adopt_vm(vm)
    assert info.value.code in ("unknown-domain", "cannot-import")  # type: ignore[attr-defined]
    assert vm not in rt.power_states()


@pytest.mark.parametrize(
    ("q35", "slots", "code"), [(False, 4, "not-q35"), (True, 0, "no-hotplug-slot")]
)
def test_a_vm_that_cannot_carry_a_pair_is_not_adopted(
    under_test: RuntimeUnderTest, q35: bool, slots: int, code: str
) -> None:
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm(code[:6], prepared=False)
    outside.define(vm, q35, slots, True)
    with pytest.raises(Conflict) as info:
        rt.adopt_vm(vm)
    assert info.value.code == code and info.value.hint
    assert vm not in rt.power_states()


def test_a_vm_the_hypervisor_has_is_not_defined_again(under_test: RuntimeUnderTest) -> None:
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm("dup", prepared=False)
    outside.define(vm, True, 4, True)
    with pytest.raises(Conflict) as info:
        rt.define_vm(vm, under_test.template)
    assert info.value.code == "domain-exists"


def test_an_adopted_vm_is_followed_through_outside_starts_and_stops(
    under_test: RuntimeUnderTest,
) -> None:
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm("adopt", prepared=False)
    outside.define(vm, True, 4, True)
    rt.adopt_vm(vm)
    rt.adopt_vm(vm)
    assert rt.power_states()[vm] is False
    with _Watching(under_test) as watching:
        outside.start(vm)
        watching.wait_for(vm, True)
        assert rt.power_states()[vm] is True and rt.is_running(vm)
        rt.start_vm(vm)  # iovctl's start of a running VM: nothing to do
        rt.plug_software_nic(vm, "nic0", under_test.config())
        rt.attach_vf(vm, "nic0", under_test.vf(0))
        assert rt.vf_data_path_active(vm, "nic0") is True
        outside.stop(vm)
        watching.wait_for(vm, False)
    assert rt.power_states()[vm] is False and not rt.is_running(vm)
    assert rt.vf_data_path_active(vm, "nic0") is False  # the VF left with the VM
    assert rt.wait_released(vm, ["nic0"], 5.0)
    rt.forget_vm(vm)
    rt.forget_vm(vm)
    assert vm not in rt.power_states()
    rt.adopt_vm(vm)  # forgotten, not removed: the hypervisor still has it
    rt.forget_vm(vm)


def _adopted(under_test: RuntimeUnderTest, suffix: str) -> tuple[Outside, VmRuntime, str]:
    """A domain defined outside iovctl (q35, 4 root ports, failover) and adopted."""
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm(suffix, prepared=False)
    outside.define(vm, True, 4, True)
    rt.adopt_vm(vm)
    return outside, rt, vm


#: Longest wait for a guest to power off when asked (a few seconds here under TCG).
SHUTDOWN_BOUND_S = 120.0


def test_a_guest_asked_to_shut_down_powers_off(under_test: RuntimeUnderTest) -> None:
    """``vm stop`` without ``--turn-off``: a guest OS powers itself off; a VM without
    one is left to ``stop_vm``."""
    rt, vm = under_test.runtime, under_test.vm("shut")
    rt.start_vm(vm)
    under_test.guest_up(vm)
    assert rt.shut_down_guest(vm, SHUTDOWN_BOUND_S) is True
    assert rt.is_running(vm) is not under_test.guest_os
    rt.stop_vm(vm)
    assert not rt.is_running(vm)
    assert rt.shut_down_guest(vm, 1.0) is True  # off: nothing to ask


def test_a_guest_that_ignores_a_shutdown_keeps_running(under_test: RuntimeUnderTest) -> None:
    if under_test.deaf is None:
        pytest.skip("no guest OS here to ignore a shutdown request")
    rt, vm = under_test.runtime, under_test.vm("deaf", prepared=False)
    under_test.deaf(vm)
    rt.start_vm(vm)
    under_test.guest_up(vm)
    assert rt.shut_down_guest(vm, 3.0) is False
    assert rt.is_running(vm)
    rt.stop_vm(vm)  # what --turn-off does
    assert not rt.is_running(vm)


def test_a_domain_undefined_outside_is_lost_once_it_stops(under_test: RuntimeUnderTest) -> None:
    """``virsh undefine`` of a running domain leaves it running (transient) until it
    stops; then it is gone, its stop is still reported, and ``lost_vms`` names it."""
    outside, rt, vm = _adopted(under_test, "undef")
    assert rt.lost_vms([vm]) == frozenset()
    with _Watching(under_test) as watching:
        outside.start(vm)
        watching.wait_for(vm, True)
        outside.undefine(vm)
        assert rt.is_running(vm) and rt.power_states()[vm] is True
        assert rt.lost_vms([vm]) == frozenset()  # still there while it runs
        outside.stop(vm)
        watching.wait_for(vm, False)
    assert not rt.is_running(vm) and vm not in rt.power_states()
    assert rt.lost_vms([vm]) == {vm}
    with pytest.raises(NotFound) as info:
        rt.start_vm(vm)
    assert info.value.code == "unknown-domain"
    rt.forget_vm(vm)  # iovctl vm delete of a lost VM: nothing left to forget


def test_a_stopped_domain_undefined_outside_is_lost_at_once(under_test: RuntimeUnderTest) -> None:
    outside, rt, vm = _adopted(under_test, "undef2")
    outside.undefine(vm)
    assert rt.lost_vms([vm]) == {vm} and vm not in rt.power_states()
    outside.define(vm, True, 4, True)  # defined again: not iovctl's until imported
    rt.adopt_vm(vm)
    assert rt.lost_vms([vm]) == frozenset()
    rt.forget_vm(vm)


def test_a_guest_without_failover_never_carries_on_its_vf(under_test: RuntimeUnderTest) -> None:
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm("nofo", prepared=False)
    outside.define(vm, True, 4, False)
    rt.adopt_vm(vm)
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    rt.attach_vf(vm, "nic0", under_test.vf(1))  # the hypervisor takes it, holds it back
    assert rt.vf_data_path_active(vm, "nic0") is False
    rt.detach_vf(vm, "nic0", under_test.vf(1))
    rt.stop_vm(vm)
    rt.forget_vm(vm)


def test_a_vf_the_hypervisor_gave_out_is_reported_and_not_attached(
    under_test: RuntimeUnderTest,
) -> None:
    outside = _outside(under_test)
    rt, vm = under_test.runtime, under_test.vm("pool")
    vf = under_test.vf(1)
    outside.hold_vf(vf.pci_address)
    assert vf.pci_address in rt.vfs_held_elsewhere()
    rt.start_vm(vm)
    rt.plug_software_nic(vm, "nic0", under_test.config())
    with pytest.raises(HardwareError):
        rt.attach_vf(vm, "nic0", vf)
    assert rt.vf_data_path_active(vm, "nic0") is False
    rt.stop_vm(vm)
