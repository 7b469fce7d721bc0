"""No write lock across a kernel wait; commands on the same objects still serialize.

Two commands in two threads, each with its own connections and lease, as two
processes would have; a side effect is held open on an Event (a driver creating
VFs, a hot-plug), never on a clock. The speed of it is measured apart, in
benchmarks/bench_lock.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.faults import store_matches_machine
from iovctl.domain.model import VmState
from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges
from iovctl.wiring import Options, open_context

SPEC = """\
name: two-pfs
adapters:
  - {name: ens0f0, pci_address: "0000:3b:00.0", driver: ice, sriov: {total_vfs: 8}}
  - {name: ens1f0, pci_address: "0000:5e:00.0", driver: ice, sriov: {total_vfs: 8}}
"""


class Held:
    """A port whose method ``name`` stops inside the call until released."""

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name != self._name:
            return attr

        def held(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.entered.set()
            assert self.release.wait(30), "never released"
            return result

        return held


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    state = tmp_path / "state"
    ctx = _open(state, spec)
    journal.run(ctx, adapters.set_num_vfs, "ens1f0", 2)
    journal.run(ctx, switches.create, "sw0", "ens0f0", True)
    journal.run(ctx, switches.create, "sw1", "ens1f0", True)
    for vm, switch in (("x", "sw1"), ("y", "sw1")):
        journal.run(ctx, vms.create_vm, vm)
        journal.run(ctx, vms.add_nic, vm, switch, None, NicChanges(iov_weight=50))
    ctx.store.close()
    yield state, spec


def _open(state: Path, spec: Path) -> Context:
    return open_context(Options(state_dir=state, sim=str(spec)))


def _command(
    state: Path, spec: Path, fn: Any, *args: Any, hold: tuple[str, str] | None = None
) -> tuple[threading.Thread, list[BaseException], Held | None]:
    """Run ``fn`` as a command in a thread of its own (its own connections, as
    SQLite wants, and its own lease); with ``hold`` = (port, method) that side
    effect stops until released."""
    errors: list[BaseException] = []
    held: list[Held] = []
    ready = threading.Event()

    def body() -> None:
        ctx = _open(state, spec)
        if hold is not None:
            port, method = hold
            held.append(Held(getattr(ctx, port), method))
            setattr(ctx, port, held[0])
        ready.set()
        try:
            journal.run(ctx, fn, *args)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            ctx.store.close()

    thread = threading.Thread(target=body)
    thread.start()
    assert ready.wait(30)
    return thread, errors, held[0] if held else None


def test_a_command_on_another_adapter_proceeds_while_vfs_are_created(host) -> None:
    state, spec = host
    count, count_errors, held = _command(
        state, spec, adapters.set_num_vfs, "ens0f0", 4, hold=("hardware", "set_num_vfs")
    )
    assert held is not None and held.entered.wait(30), count_errors

    other = _open(state, spec)
    journal.run(other, vms.start_vm, "x")  # returns while the VF count change waits
    assert count.is_alive()
    assert other.store.get_nic("x", "nic0").assignment is not None

    held.release.set()
    count.join(30)
    assert count_errors == []
    assert other.hardware.adapter("ens0f0").num_vfs == 4
    assert store_matches_machine(other) == []
    other.store.close()


def test_two_commands_on_the_same_vm_run_one_after_the_other(host) -> None:
    state, spec = host
    start, start_errors, held = _command(
        state, spec, vms.start_vm, "x", hold=("runtime", "attach_vf")
    )
    assert held is not None and held.entered.wait(30), start_errors  # its VF attached

    stop, stop_errors, _ = _command(state, spec, vms.stop_vm, "x")
    stop.join(0.5)
    assert stop.is_alive(), "the stop did not wait for the start on the same VM"

    held.release.set()
    start.join(30)
    stop.join(30)
    assert start_errors == [] and stop_errors == []
    check = _open(state, spec)
    assert check.store.get_vm("x").state is VmState.OFF
    assert store_matches_machine(check) == []
    check.store.close()


def test_nothing_is_granted_twice_when_two_starts_race_for_one_vf(host) -> None:
    state, spec = host
    setup = _open(state, spec)
    journal.run(setup, adapters.set_num_vfs, "ens1f0", 1, force=True)
    setup.store.close()
    first, first_errors, held = _command(
        state, spec, vms.start_vm, "x", hold=("runtime", "attach_vf")
    )
    assert held is not None and held.entered.wait(30), first_errors

    second = _open(state, spec)
    journal.run(second, vms.start_vm, "y")  # the only VF is x's: y waits for a VF
    assert second.store.get_nic("y", "nic0").assignment is None

    held.release.set()
    first.join(30)
    assert first_errors == []
    holders = second.store.nics_holding_vfs("ens1f0")
    assert [n.vm for n in holders] == ["x"]
    assert store_matches_machine(second) == []
    second.store.close()
