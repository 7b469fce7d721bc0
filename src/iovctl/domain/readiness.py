"""Readiness rules: why a host, an adapter or a switch cannot do SR-IOV.

Mirrors Hyper-V's ``IovSupportReasons`` (messages in substance) and adds the Linux
hint an admin needs: which kernel parameter, BIOS switch or module. On a virtual
machine (``HostFacts.virtual_machine``) a BIOS is not the fix: hints name the
hypervisor's setting instead (QEMU and libvirt spelled out; others have the same
knobs under other names). Facts that could not be checked (None) give no reason but
an "unverified" note saying how to check by hand (:func:`unverified_facts`).
"""

from __future__ import annotations

from iovctl.domain.model import (
    Adapter,
    HostFacts,
    Reason,
    RuntimeFacts,
    SriovSupport,
    VirtualSwitch,
)

# (code, message, hint), in the order an admin should fix them.
_HOST_RULES: tuple[tuple[str, str, str], ...] = (
    (
        "cpu-virtualization-missing",
        "The processor does not support or has disabled hardware virtualization (VT-x/AMD-V).",
        "enable Intel VT-x or AMD SVM in the BIOS/UEFI setup; check: grep -cE 'vmx|svm' /proc/cpuinfo",
    ),
    (
        "slat-missing",
        "The processor does not support second-level address translation (EPT/NPT).",
        "use a CPU with EPT (Intel) or NPT/RVI (AMD); nested guests need ept=1/npt=1 on the host",
    ),
    (
        "iommu-missing",
        "The chipset on the system does not do DMA remapping (no IOMMU described by the firmware).",
        "enable Intel VT-d or AMD-Vi (IOMMU) in the BIOS/UEFI setup; Linux needs an ACPI DMAR or IVRS table",
    ),
    (
        "iommu-disabled",
        "I/O remapping hardware is present but disabled by configuration.",
        "add intel_iommu=on (Intel) or amd_iommu=on (AMD) and iommu=pt to GRUB_CMDLINE_LINUX, "
        "run update-grub and reboot",
    ),
    (
        "dma-remapping-missing",
        "The chipset on the system does not do DMA remapping, which is required for SR-IOV.",
        "check dmesg for DMAR/AMD-Vi errors; a BIOS update often fixes a broken DMAR table",
    ),
    (
        "interrupt-remapping-missing",
        "The chipset on the system does not do interrupt remapping, which is required for SR-IOV.",
        "enable interrupt remapping (x2APIC) in the BIOS and do not boot with intremap=off; "
        "vfio's allow_unsafe_interrupts is not a fix",
    ),
    (
        "firmware-sriov-disabled",
        "The chipset lacks SR-IOV support or I/O virtualization is disabled in the BIOS.",
        "enable 'SR-IOV Global Enable' (and the NIC's own SR-IOV option) in the BIOS/UEFI setup",
    ),
    (
        "pcie-native-control-denied",
        "The BIOS does not hand PCI Express control to the operating system.",
        "update the BIOS (dmesg shows '_OSC: platform does not support ...'); as a last resort "
        "boot with pcie_ports=native, the Linux analogue of Hyper-V's IovEnableOverride",
    ),
    (
        "acs-missing",
        "No root port supports Access Control Services (ACS); VFs cannot be isolated from each other.",
        "use a root port or switch with ACS (check: lspci -vvv | grep -i 'Access Control'); "
        "VFs in a shared IOMMU group cannot be passed to separate VMs",
    ),
    (
        "kernel-no-pci-iov",
        "The running kernel has no SR-IOV support (CONFIG_PCI_IOV).",
        "boot a distribution kernel or rebuild with CONFIG_PCI_IOV=y",
    ),
    (
        "vfio-pci-missing",
        "The vfio-pci driver is not available, so VFs cannot be given to VMs.",
        "modprobe vfio-pci (package linux-modules-extra or the distribution kernel)",
    ),
)

_HOST_REASONS = {code: Reason(code, msg, hint) for code, msg, hint in _HOST_RULES}

_QEMU_IOMMU = (
    "QEMU: -machine q35,kernel-irqchip=split -device intel-iommu,intremap=on "
    "(amd-iommu on AMD); libvirt: <iommu model='intel'><driver intremap='on'/></iommu>"
)

#: On a virtual machine: the hypervisor's setting, where the metal's fix is a BIOS one.
_VM_HINTS: dict[str, str] = {
    "cpu-virtualization-missing": (
        "this host is a VM: expose nested virtualization to it (QEMU: -cpu host with "
        "kvm_intel nested=1 / kvm_amd nested=1 on the hypervisor; libvirt: <cpu "
        "mode='host-passthrough'/>)"
    ),
    "slat-missing": (
        "this host is a VM: pass EPT/NPT through with nested virtualization "
        "(QEMU: -cpu host; libvirt: <cpu mode='host-passthrough'/>)"
    ),
    "iommu-missing": f"this host is a VM: give it a virtual IOMMU ({_QEMU_IOMMU})",
    "dma-remapping-missing": f"this host is a VM: check its virtual IOMMU ({_QEMU_IOMMU})",
    "interrupt-remapping-missing": (
        "this host is a VM: turn on interrupt remapping of its virtual IOMMU "
        "(QEMU: -device intel-iommu,intremap=on with kernel-irqchip=split; libvirt: "
        "<iommu model='intel'><driver intremap='on'/></iommu>)"
    ),
    "firmware-sriov-disabled": (
        "this host is a VM: its firmware has no SR-IOV switch; give it a virtual NIC "
        "that offers SR-IOV (QEMU: -device igb) or pass through a physical PF"
    ),
    "pcie-native-control-denied": (
        "this host is a VM: use a PCIe machine type (QEMU: -machine q35; libvirt: "
        "machine='q35'), whose firmware hands PCIe control to the guest"
    ),
    "acs-missing": (
        "this host is a VM: put each SR-IOV NIC behind its own PCIe root port "
        "(QEMU: -device pcie-root-port; libvirt adds one per device on q35)"
    ),
}

# (code, fact, message, hint): facts that could not be checked, and how to check them.
_UNVERIFIED_RULES: tuple[tuple[str, str, str, str], ...] = (
    (
        "interrupt-remapping-unverified",
        "interrupt_remapping",
        "Interrupt remapping could not be checked: no IOMMU unit reports it.",
        "once the IOMMU is on, check: dmesg | grep -i 'remapping'; "
        "/proc/interrupts lists IR-PCI-MSI when it is in use",
    ),
    (
        "firmware-sriov-unverified",
        "firmware_sriov_enabled",
        "Whether the firmware enables SR-IOV could not be checked: no adapter shows "
        "SR-IOV with its VF resources assigned.",
        "check the BIOS/UEFI setup for 'SR-IOV Global Enable'; with an SR-IOV NIC "
        "installed, iovctl adapter list shows its support",
    ),
    (
        "pcie-native-control-unverified",
        "pcie_native_control",
        "Whether the firmware hands PCIe control to Linux could not be checked.",
        "check: dmesg | grep -i '_OSC' ('OS now controls' means granted)",
    ),
    (
        "acs-unverified",
        "acs",
        "Access Control Services on the ports above SR-IOV adapters could not be "
        "checked: their PCIe extended config space is readable only by root.",
        "run iovctl host as root, or check: sudo lspci -vvv | grep -i 'Access Control'",
    ),
    (
        "kernel-pci-iov-unverified",
        "kernel_pci_iov",
        "Whether the kernel has SR-IOV support (CONFIG_PCI_IOV) could not be checked.",
        "check: grep CONFIG_PCI_IOV /boot/config-$(uname -r)",
    ),
)


def host_reasons(facts: HostFacts) -> list[Reason]:
    """Every host prerequisite known to be unmet; empty means none is known missing
    (see :func:`unverified_facts` for those that could not be checked)."""
    unmet = {
        "cpu-virtualization-missing": not facts.cpu_virtualization,
        "slat-missing": not facts.cpu_slat,
        "iommu-missing": not facts.iommu_present,
        "iommu-disabled": facts.iommu_present and not facts.iommu_enabled,
        "dma-remapping-missing": facts.iommu_present
        and facts.iommu_enabled
        and not facts.dma_remapping,
        "interrupt-remapping-missing": facts.iommu_present and facts.interrupt_remapping is False,
        "firmware-sriov-disabled": facts.firmware_sriov_enabled is False,
        "pcie-native-control-denied": facts.pcie_native_control is False,
        "acs-missing": facts.acs is False,
        "kernel-no-pci-iov": facts.kernel_pci_iov is False,
        "vfio-pci-missing": not facts.vfio_pci,
    }
    return [_for_host(_HOST_REASONS[code], facts) for code, _, _ in _HOST_RULES if unmet[code]]


def unverified_facts(facts: HostFacts) -> list[Reason]:
    """The facts that could not be checked (None), each with how to check by hand.

    Interrupt remapping is not listed when there is no IOMMU in use: the IOMMU's
    own reason comes first, and says more.
    """
    out = []
    for code, fact, message, hint in _UNVERIFIED_RULES:
        if getattr(facts, fact) is not None:
            continue
        if fact == "interrupt_remapping" and not iommu_usable(facts):
            continue
        out.append(Reason(code, message, hint))
    return out


def _for_host(reason: Reason, facts: HostFacts) -> Reason:
    """``reason`` with the hypervisor's hint on a virtual machine."""
    if facts.virtual_machine and reason.code in _VM_HINTS:
        return Reason(reason.code, reason.message, _VM_HINTS[reason.code])
    return reason


def iommu_usable(facts: HostFacts) -> bool:
    return facts.iommu_present and facts.iommu_enabled and facts.dma_remapping


_ADAPTER_TEXT: dict[SriovSupport, tuple[str, str]] = {
    SriovSupport.NOT_CAPABLE: (
        "The network adapter {name} does not support SR-IOV.",
        "use an SR-IOV capable adapter as the uplink of an IOV switch",
    ),
    SriovSupport.MISSING_PF_DRIVER: (
        "No PF driver is bound to adapter {name}.",
        "load its driver (modprobe) and check: lspci -k -s {pci}",
    ),
    SriovSupport.FIRMWARE_DISABLED: (
        "SR-IOV is disabled in the system firmware for adapter {name}.",
        "enable SR-IOV in the BIOS/UEFI setup (globally and in the NIC's option ROM)",
    ),
    SriovSupport.NO_IOMMU_SUPPORT: (
        "The IOMMU is not in use, so VFs of adapter {name} cannot be isolated.",
        "add intel_iommu=on or amd_iommu=on to the kernel command line and reboot",
    ),
    SriovSupport.MISSING_ACS: (
        "The PCIe path to adapter {name} lacks Access Control Services (ACS).",
        "move the NIC to a root port with ACS; without it its VFs share one IOMMU group",
    ),
    SriovSupport.NO_BUS_RESOURCES: (
        "There are not enough PCI bus numbers for the VFs of adapter {name}.",
        "enable SR-IOV in the BIOS so it reserves bus numbers, or boot with pci=assign-busses",
    ),
    SriovSupport.NO_VF_BAR_SPACE: (
        "The BIOS left no memory space for the VF BARs of adapter {name}.",
        "enable 'Above 4G decoding' / SR-IOV in the BIOS, or boot with pci=realloc",
    ),
}


#: On a virtual machine: the hypervisor's setting for the adapter reasons a BIOS fixes.
_ADAPTER_VM_HINTS: dict[SriovSupport, str] = {
    SriovSupport.FIRMWARE_DISABLED: (
        "this host is a VM: give it a virtual NIC that offers SR-IOV (QEMU: -device igb) "
        "or pass through a physical PF whose host firmware enables SR-IOV"
    ),
    SriovSupport.NO_IOMMU_SUPPORT: f"this host is a VM: give it a virtual IOMMU ({_QEMU_IOMMU})",
    SriovSupport.MISSING_ACS: (
        "this host is a VM: put adapter {name} behind its own PCIe root port "
        "(QEMU: -device pcie-root-port; libvirt adds one per device on q35)"
    ),
    SriovSupport.NO_BUS_RESOURCES: (
        "this host is a VM: reserve bus numbers on the root port above {pci} "
        "(QEMU: -device pcie-root-port,bus-reserve=N), or boot it with pci=assign-busses"
    ),
    SriovSupport.NO_VF_BAR_SPACE: (
        "this host is a VM: boot it with pci=realloc, or give its root port more memory "
        "window (QEMU: pcie-root-port mem-reserve=/pref64-reserve=)"
    ),
}


def adapter_support(adapter: Adapter, facts: HostFacts) -> SriovSupport:
    """``SriovSupport`` of one adapter, first failing check wins; an unverified
    fact (None) fails no check."""
    cap = adapter.sriov
    if cap is None or facts.kernel_pci_iov is False:
        return SriovSupport.NOT_CAPABLE
    if adapter.driver is None:
        return SriovSupport.MISSING_PF_DRIVER
    if facts.firmware_sriov_enabled is False:
        return SriovSupport.FIRMWARE_DISABLED
    if not iommu_usable(facts):
        return SriovSupport.NO_IOMMU_SUPPORT
    if facts.acs is False:
        return SriovSupport.MISSING_ACS
    if not cap.bus_resources:
        return SriovSupport.NO_BUS_RESOURCES
    if not cap.vf_bar_space:
        return SriovSupport.NO_VF_BAR_SPACE
    return SriovSupport.SUPPORTED


def adapter_reason(
    adapter: Adapter, support: SriovSupport, facts: HostFacts | None = None
) -> Reason | None:
    """Why ``adapter`` has ``support``; None when supported. With ``facts`` of a
    virtual machine the hint names the hypervisor's setting."""
    if support is SriovSupport.SUPPORTED:
        return None
    message, hint = _ADAPTER_TEXT[support]
    if facts is not None and facts.virtual_machine:
        hint = _ADAPTER_VM_HINTS.get(support, hint)
    fill = {"name": adapter.name, "pci": adapter.pci_address}
    return Reason(f"adapter-{support.value}", message.format(**fill), hint.format(**fill))


def switch_reasons(switch: VirtualSwitch, uplink: Adapter, facts: HostFacts) -> list[Reason]:
    """Why an IOV switch's VF pool cannot work; empty means it works."""
    reasons: list[Reason] = []
    if not switch.iov_enabled:
        reasons.append(
            Reason(
                "switch-iov-off",
                f"Virtual switch {switch.name} was created without SR-IOV.",
                f"IOV is fixed at creation: delete the switch and create it again with "
                f"--iov (iovctl switch create {switch.name} --uplink {uplink.name} --iov)",
            )
        )
        return reasons
    reasons.extend(host_reasons(facts))
    support = adapter_support(uplink, facts)
    reason = adapter_reason(uplink, support, facts)
    if reason is not None:
        reasons.append(reason)
    elif not uplink.sriov_enabled:
        reasons.append(
            Reason(
                "uplink-sriov-disabled",
                f"SR-IOV is disabled on adapter {uplink.name} (0 VFs).",
                f"iovctl adapter enable {uplink.name}",
            )
        )
    return reasons


# -- the VM runtime ------------------------------------------------------------------

#: libvirt learnt ``<teaming>`` (the virtio-net failover pair) in 6.1, QEMU its
#: ``failover=on`` / ``failover_pair_id`` in 4.2.
TEAMING_MANAGER_VERSION = (6, 1, 0)
TEAMING_HYPERVISOR_VERSION = (4, 2, 0)


def _version(v: tuple[int, int, int]) -> str:
    return ".".join(str(n) for n in v)


def runtime_reasons(facts: RuntimeFacts, follows_hypervisor: bool) -> list[Reason]:
    """Why the VM runtime cannot team a VF with a virtio NIC; empty means nothing is
    known missing. Versions and q35 are a hypervisor's (``follows_hypervisor``):
    runtimes whose VMs are iovctl's own have none to judge."""
    where = f" at {facts.location}" if facts.location else ""
    if not facts.reachable:
        return [
            Reason(
                "vm-runtime-unreachable",
                f"The VM runtime ({facts.kind}{where}) cannot be reached"
                + (f": {facts.error}" if facts.error else "."),
                "start it (systemctl start libvirtd) and check: virsh"
                + (f" -c {facts.location}" if facts.location else "")
                + " version",
            )
        ]
    if not follows_hypervisor:
        return []
    out = []
    if facts.manager_version is not None and facts.manager_version < TEAMING_MANAGER_VERSION:
        out.append(
            Reason(
                "libvirt-too-old",
                f"libvirt {_version(facts.manager_version)} cannot team a VF with a virtio NIC "
                f"(<teaming> needs libvirt >= {_version(TEAMING_MANAGER_VERSION)}).",
                "upgrade libvirt (Debian 12 ships 9.0: apt install libvirt-daemon-system)",
            )
        )
    if (
        facts.hypervisor_version is not None
        and facts.hypervisor_version < TEAMING_HYPERVISOR_VERSION
    ):
        out.append(
            Reason(
                "qemu-too-old",
                f"QEMU {_version(facts.hypervisor_version)} has no virtio-net failover "
                f"(needs QEMU >= {_version(TEAMING_HYPERVISOR_VERSION)}).",
                "upgrade QEMU (Debian 12 ships 7.2: apt install qemu-system-x86)",
            )
        )
    if facts.q35_machine is False:
        out.append(
            Reason(
                "q35-missing",
                "The hypervisor offers no q35 machine type: a VF cannot be hot-plugged "
                "beside a virtio NIC on a PCI (i440fx) machine.",
                "install a QEMU with q35 (qemu-system-x86); check: virsh capabilities | grep q35",
            )
        )
    return out


def unverified_runtime_facts(facts: RuntimeFacts, follows_hypervisor: bool) -> list[Reason]:
    """The VM runtime's facts that could not be checked (None), with how to check."""
    if not follows_hypervisor or not facts.reachable:
        return []
    uri = f" -c {facts.location}" if facts.location else ""
    checks = (
        (
            facts.manager_version,
            "libvirt-version-unverified",
            "The libvirt version could not be checked.",
            f"check: virsh{uri} version (teaming needs >= 6.1)",
        ),
        (
            facts.hypervisor_version,
            "qemu-version-unverified",
            "The QEMU version could not be checked.",
            f"check: virsh{uri} version, or qemu-system-x86_64 --version (needs >= 4.2)",
        ),
        (
            facts.q35_machine,
            "q35-unverified",
            "Whether the hypervisor offers a q35 machine type could not be checked.",
            f"check: virsh{uri} capabilities | grep q35",
        ),
    )
    return [Reason(code, message, hint) for value, code, message, hint in checks if value is None]
