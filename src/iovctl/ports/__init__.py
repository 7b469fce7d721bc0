"""Ports: the capabilities services need, as typing Protocols.

Adapters implement them per technology (``adapters/sim`` in memory + SQLite,
``adapters/linux`` sysfs + netlink, ``adapters/netns`` network namespaces). Each
method's docstring is its contract; the contract test suite (tests/contract) holds
every implementation to it. Must not import any adapter.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import (
    Adapter,
    HostFacts,
    NicConfig,
    NicTxBytes,
    RuntimeFacts,
    VfSetting,
    VfSettings,
    VfStats,
    VirtualFunction,
    VmPowerChange,
    VmTemplate,
)
from iovctl.domain.pvlan import UplinkTagging


class PciBus(Protocol):
    """The host's PCI view: readiness facts, network PFs, VF count (``sriov_numvfs``)."""

    #: Short name shown to users ("simulated:demo", "linux").
    backend_name: str

    def host_facts(self) -> HostFacts:
        """Facts readiness is judged on."""
        ...

    def adapters(self) -> list[Adapter]:
        """Every physical network adapter (PFs, not VFs), sorted by name."""
        ...

    def adapter(self, name: str) -> Adapter:
        """One adapter by name; raises NotFound (``unknown-adapter``) naming it."""
        ...

    def set_num_vfs(self, adapter: str, count: int) -> None:
        """Write the VF count with the kernel's rules (drivers/pci/iov.c), no help.

        Raises NotFound for an unknown adapter; HardwareError with code
        ``vf-count-out-of-range`` (ERANGE) above total VFs, ``vf-count-busy`` (EBUSY)
        for non-zero to a different non-zero, ``no-pf-driver`` (ENOENT) without a
        driver able to configure SR-IOV. Writing the current value is a no-op.
        Returns when the VFs exist (bounded wait), or raises ``vf-create-timeout``.
        """
        ...

    def virtual_functions(self, adapter: str) -> list[VirtualFunction]:
        """The adapter's VFs in index order, each with its current settings."""
        ...

    def virtual_function(self, adapter: str, index: int) -> VirtualFunction:
        """One VF with its settings; HardwareError ``vf-not-found`` if out of range."""
        ...


class VfConfigurator(Protocol):
    """Per-VF settings held by the PF driver (netlink ``IFLA_VF_*``)."""

    def unsupported_vf_settings(self, adapter: str) -> frozenset[VfSetting]:
        """Settings this adapter's driver refuses on its VFs."""
        ...

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        """Make VF ``index`` carry exactly ``settings``, in one request.

        Raises UnsupportedVfSetting naming the driver and the setting when the driver
        refuses a non-default value; HardwareError ``vf-not-found`` for an index out
        of range. Unsupported settings left at their default are not sent.
        """
        ...


class VfDrivers(Protocol):
    """Which driver owns each VF (sysfs ``driver_override``, ``unbind``, ``drivers_probe``)."""

    def bind_vf_driver(self, adapter: str, index: int, driver: VfDriver) -> str | None:
        """Bind VF ``index`` to a driver of kind ``driver``; returns the driver bound
        (None when no net driver took it). Idempotent.

        Raises HardwareError ``vf-not-found`` for an index out of range, ``no-iommu``
        when vfio-pci is asked for a VF without an IOMMU group, ``vfio-pci-missing``
        when vfio-pci is not loaded, ``vf-bind-failed`` when the kernel refuses.
        """
        ...


class VfCounters(Protocol):
    """Per-VF traffic counters the PF keeps (netlink ``IFLA_VF_STATS``), read on the PF
    in the host: they count wherever the VF's netdev is (a VM, a namespace)."""

    def vf_stats(self, adapter: str) -> dict[int, VfStats]:
        """Every VF's counters by index (0 .. num_vfs - 1); {} without VFs.

        Raises NotFound for an unknown adapter. Between two reads no counter goes
        down unless the VF count changed in between (new VFs start from zero).
        """
        ...


class HostHardware(PciBus, VfConfigurator, VfDrivers, VfCounters, Protocol):
    """A whole hardware backend: PCI bus, VF configuration, VF drivers and VF counters."""

    def power_cycle(self) -> None:
        """Reboot the hardware: VF counts and VF settings back to power-on defaults.

        Only a simulated host can; the others raise Conflict ``not-simulated``.
        """
        ...

    def refresh(self) -> None:
        """Forget what was read so far: the next call reads the hardware again.

        A backend may keep what it read for the rest of a command (the Linux one
        does: the PCI scan, each PF, one VF-settings dump per PF, kept current by its
        own writes). Call this where a command may have been overtaken: after waiting
        without the store's lock, before planning again.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds open (sockets). Idempotent."""
        ...


class VmRuntime(Protocol):
    """The hypervisor side: runs VMs and plugs NICs (failover pairs) into them.

    The simulated runtime records; the network-namespace and libvirt runtimes make
    real devices. Every method is idempotent (``ensure`` semantics).
    """

    #: The driver its VFs must be bound to (vfio-pci for VMs, the net driver for
    #: namespaces); services bind it through ``VfDrivers`` before ``attach_vf``.
    vf_driver: VfDriver

    def start_vm(self, vm: str) -> None: ...

    def stop_vm(self, vm: str) -> None:
        """Power the VM off at once (``virsh destroy``); nothing when it does not run."""
        ...

    def shut_down_guest(self, vm: str, timeout: float) -> bool:
        """Ask the VM's guest OS to power off (the ACPI power button, ``virsh
        shutdown``) and wait up to ``timeout`` seconds for it. True when it is off, or
        when there is no guest OS to ask (namespaces, simulated VMs: ``stop_vm`` ends
        them); False when it still runs (the guest ignored the request or is slow;
        it may still power off later, as a stop outside iovctl). Not journaled: the
        guest powering itself off is what a hypervisor reports like any stop."""
        ...

    def is_running(self, vm: str) -> bool:
        """The hypervisor has the VM (what the store's VM state is checked against)."""
        ...

    def plug_software_nic(self, vm: str, nic: str, config: NicConfig) -> None:
        """The synthetic half of the pair, on the switch's software path."""
        ...

    def unplug_nic(self, vm: str, nic: str) -> None: ...

    def remove_switch(self, switch: str) -> None:
        """Delete the switch's software path (its bridge). Idempotent."""
        ...

    def attach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        """Give the VF to the VM as the fast half of the NIC's failover pair."""
        ...

    def detach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        """Take the VF back; traffic continues on the software half."""
        ...

    def vf_data_path_active(self, vm: str, nic: str) -> bool:
        """Traffic really flows on the VF (guest has the VF driver and uses it)."""
        ...

    def uplink_tagging(self, vm: str, nic: str) -> UplinkTagging:
        """What the frames of the NIC's software path carry out of its switch's uplink
        (asked for a running NIC in a private VLAN): tagged with its private VLAN, or
        untagged and why (``domain.pvlan.UplinkTagging``)."""
        ...

    def guest_address(self, vm: str, nic: str, config: NicConfig) -> ipaddress.IPv4Interface | None:
        """The IPv4 address the NIC has inside the guest when the runtime assigns one
        (namespaces do); None when it does not (the guest's own business)."""
        ...

    def nic_tx_bytes(self, vm: str, nic: str) -> NicTxBytes:
        """Bytes the NIC has sent on each half of its failover pair (interface counters:
        the path that carried traffic, whatever the allocator believes). Zeros for a
        NIC that is not plugged or a VM that does not run."""
        ...

    def guest_command(self, vm: str) -> list[str] | None:
        """The argv prefix that runs a program inside the running VM (its network
        view, its addresses); None when the VM does not run, or the runtime cannot
        run programs in its guests."""
        ...

    def wait_released(self, vm: str, nics: Iterable[str], timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the host holds nothing more of the
        VM's ``nics`` (their host-side devices); True when released. A hypervisor
        may finish a stop after ``stop_vm`` returned. False while the VM runs."""
        ...

    # -- VMs the hypervisor owns (libvirt domains); trivial for sim and netns ------

    #: The VMs' power state belongs to the hypervisor: they start and stop outside
    #: iovctl too (``virsh start``, autostart, crashes), and the store follows what
    #: ``power_states``/``watch`` report. False: a VM runs only by iovctl's commands.
    follows_hypervisor: bool

    def define_vm(self, vm: str, template: VmTemplate) -> None:
        """Create the hypervisor's VM for a new iovctl VM (``vm create``); idempotent
        for a VM this runtime defined. Runtimes whose VMs are iovctl's own records do
        nothing. Raises Conflict ``domain-exists`` when the hypervisor already has a
        VM of that name iovctl did not define (hint: ``vm import``), InvalidInput for
        a template it cannot boot."""
        ...

    def adopt_vm(self, vm: str) -> None:
        """Take over the hypervisor's existing VM named ``vm`` (``vm import``): check
        that it can carry failover pairs and reserve what they need (hot-plug slots).
        Idempotent. Raises NotFound ``unknown-domain``; Conflict with a reason and
        hint for what cannot work (``not-q35``, ``no-hotplug-slot``); Conflict
        ``cannot-import`` on runtimes without VMs of their own (sim, netns)."""
        ...

    def forget_vm(self, vm: str) -> None:
        """iovctl lets go of the VM (``vm delete``): a VM it defined is removed from
        the hypervisor, an adopted one keeps its own definition and loses only what
        iovctl added (its NICs' pairs, reserved slots). Idempotent."""
        ...

    def power_states(self) -> dict[str, bool]:
        """Running or not, for every VM the hypervisor has that iovctl defined or
        adopted ({} for runtimes whose VMs only iovctl starts)."""
        ...

    def lost_vms(self, vms: Iterable[str]) -> frozenset[str]:
        """Of ``vms`` (VMs the store has), those the hypervisor had for iovctl and has
        no more: undefined behind iovctl's back (``virsh undefine``, virt-manager's
        Delete) or defined again without iovctl's record. A running domain that is
        undefined is not lost until it stops (libvirt keeps it, transient, until
        then). frozenset() for runtimes whose VMs are iovctl's own records."""
        ...

    def watch(self, on_change: Callable[[VmPowerChange], None], stop: threading.Event) -> None:
        """Report VM starts and stops as they happen, until ``stop`` is set (then
        return within a second). Blocks; runs in the daemon's own thread. A runtime
        without outside changes just waits for ``stop``. ``on_change`` may be called
        for a change iovctl itself made: callers compare with the store. The stop of
        a domain that is gone with it (a transient one) is reported too."""
        ...

    def vfs_held_elsewhere(self) -> frozenset[str]:
        """PCI addresses of VFs the hypervisor has given out by its own means
        (libvirt's hostdev network pools, hostdevs of domains iovctl does not
        manage): never to be handed out by iovctl too."""
        ...

    def facts(self) -> RuntimeFacts:
        """What readiness judges about this runtime (versions, q35, reachable)."""
        ...

    def close(self) -> None:
        """Release what the runtime holds open (sockets). Idempotent."""
        ...
