"""The VM runtimes the runtime contract runs against, each with the hardware it needs.

A :class:`RuntimeUnderTest` gives the contract a runtime, a switch whose software
path it can build, VFs it can attach (``vf(i)``), and VM names it may use (cleaned
up after the test). A runtime that follows a hypervisor also gives the contract the
outside world's hands (:class:`Outside`: define a VM iovctl does not have, start
and stop it behind iovctl's back, give a VF out by the hypervisor's own means). ``sim``: the simulated runtime beside a simulated igb host, in
memory. ``netns``: namespaces over an emulated NIC (root; run it under the shared
lock, see tests/privileged). ``libvirt``: domains of a real libvirtd + QEMU (TCG)
booting the minimal guest of tests/libvirt_guest, their virtio NICs on a switch bridge
whose uplink is a veth to a namespace peer (root, shared lock; see libvirt_host.py).
There are no VFs on that host: the tests that attach one skip, naming the igb
testbed where they can run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from iovctl.domain.model import NicConfig, VirtualFunction, VmTemplate
from iovctl.ports import HostHardware, VmRuntime


@dataclass
class Outside:
    """What happens to a hypervisor without iovctl (``virsh define/start/destroy/
    undefine``, a hostdev network pool). ``define(name, q35, slots, failover)``."""

    define: Callable[[str, bool, int, bool], None]
    start: Callable[[str], None]
    stop: Callable[[str], None]
    undefine: Callable[[str], None]
    #: Gives the VF of that PCI address out by the hypervisor's own means.
    hold_vf: Callable[[str], None]


@dataclass
class RuntimeUnderTest:
    name: str
    runtime: VmRuntime
    hardware: HostHardware
    adapter: str
    switch: str
    tag: str
    vms: list[str] = field(default_factory=list)
    #: None for runtimes whose VMs only iovctl starts (``follows_hypervisor`` False).
    outside: Outside | None = None
    #: What ``define_vm`` gets: a template the runtime can boot (a hypervisor needs a
    #: kernel or disk that exists; the others ignore it).
    template: VmTemplate = field(default_factory=VmTemplate)
    #: Makes the hypervisor's VM for a new name (libvirt: define the domain).
    prepare: Callable[[str], None] | None = None
    #: Why this runtime has no VF to attach here (the test then skips).
    no_vfs: str | None = None
    #: Its VMs have a guest OS that powers off when asked (``shut_down_guest``).
    guest_os: bool = False
    #: Waits until a started VM's guest OS listens (libvirt: its init said so).
    guest_up: Callable[[str], None] = lambda vm: None
    #: Makes a VM whose guest ignores a shutdown request; None: no guest OS here.
    deaf: Callable[[str], None] | None = None

    def vm(self, suffix: str, prepared: bool = True) -> str:
        """A VM name for the test; ``prepared``: the hypervisor has it (defined by
        iovctl), else the test makes it itself (``Outside.define``, or never)."""
        name = f"{self.tag}{suffix}"
        self.vms.append(name)
        if prepared and self.prepare is not None:
            self.prepare(name)
        return name

    def vf(self, index: int) -> VirtualFunction:
        if self.no_vfs is not None:
            pytest.skip(self.no_vfs)
        return self.hardware.virtual_function(self.adapter, index)

    def config(self, n: int = 1) -> NicConfig:
        return NicConfig(switch=self.switch, mac=f"52:54:00:c7:{n:02x}:01")


@contextmanager
def sim_runtime() -> Iterator[RuntimeUnderTest]:
    from iovctl.adapters.sim import runtime as sim
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sim.spec import load_spec

    hardware, runtime = simulated_machine(load_spec("igb"))
    adapter = hardware.adapters()[0].name
    hardware.set_num_vfs(adapter, 2)
    machine = hardware.machine
    outside = Outside(
        define=lambda name, q35, slots, failover: sim.define_domain(
            machine,
            name,
            machine="pc-q35-7.2" if q35 else "pc-i440fx-7.2",
            hotplug_slots=slots,
            failover=failover,
        ),
        start=lambda name: sim.start_domain(machine, name),
        stop=lambda name: sim.stop_domain(machine, name),
        undefine=lambda name: sim.undefine_domain(machine, name),
        hold_vf=lambda pci: sim.hold_pool_vf(machine, pci, "network pool hostnet"),
    )

    def deaf(name: str) -> None:
        sim.define_domain(machine, name, acpi=False)
        runtime.adopt_vm(name)

    yield RuntimeUnderTest(
        "sim", runtime, hardware, adapter, "swc", "c", outside=outside, deaf=deaf
    )
    machine.close()


def netns_runtime(make_lab: Callable[..., Any]) -> RuntimeUnderTest:
    """The namespace runtime over a privileged-suite lab (torn down by its fixture)."""
    lab = make_lab(num_vfs=2)
    return RuntimeUnderTest(
        "netns", lab.runtime, lab.hardware, lab.adapter, lab.switch, lab.tag, lab.vms
    )


#: Longest wait for the minimal guest's init to listen (6-9 s here under TCG).
GUEST_UP_S = 120.0


@contextmanager
def libvirt_runtime(host: Any) -> Iterator[RuntimeUnderTest]:
    """The libvirt runtime on the session's libvirtd (``libvirt_host.LibvirtHost``):
    each VM a domain defined from the minimal guest, forgotten (destroyed and
    undefined) after the test."""
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sim.spec import load_spec

    hardware, _ = simulated_machine(load_spec("igb"))
    runtime = host.runtime()
    built = RuntimeUnderTest(
        "libvirt",
        runtime,
        hardware,
        hardware.adapters()[0].name,
        host.switch,
        "iovlvc",
        template=host.template(),
        outside=Outside(
            define=host.define_outside,
            start=lambda vm: host.virsh("start", vm),
            stop=lambda vm: host.virsh("destroy", vm),
            undefine=lambda vm: host.virsh("undefine", vm),
            hold_vf=lambda pci: pytest.skip("no VFs on this host for a libvirt pool to hold"),
        ),
        prepare=lambda vm: runtime.define_vm(vm, host.template()),
        no_vfs=(
            "no SR-IOV VFs on this host: the libvirt runtime's VF half runs in the igb"
            " testbed guest (nested libvirt, tests/testbed)"
        ),
        guest_os=True,
        guest_up=lambda vm: host.wait_console(vm, "iovctl-guest: up", GUEST_UP_S),
        deaf=lambda vm: runtime.define_vm(vm, host.template("iovctl.acpi=ignore")),
    )
    try:
        yield built
    finally:
        for vm in built.vms:
            runtime.forget_vm(vm)
            host.remove_domain(vm)  # those the test defined from outside
        runtime.remove_switch(host.switch)
        runtime.close()
        hardware.machine.close()
