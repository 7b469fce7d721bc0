"""Readiness rules: why a host, an adapter or a switch cannot do SR-IOV.

Mirrors Hyper-V's ``IovSupportReasons`` (messages in substance) and adds the Linux
hint an admin needs: which kernel parameter, BIOS switch or module.
"""

from __future__ import annotations

from iovctl.domain.model import Adapter, HostFacts, Reason, SriovSupport, VirtualSwitch

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


def host_reasons(facts: HostFacts) -> list[Reason]:
    """Every unmet host prerequisite; empty means the host supports SR-IOV."""
    unmet = {
        "cpu-virtualization-missing": not facts.cpu_virtualization,
        "slat-missing": not facts.cpu_slat,
        "iommu-missing": not facts.iommu_present,
        "iommu-disabled": facts.iommu_present and not facts.iommu_enabled,
        "dma-remapping-missing": facts.iommu_present
        and facts.iommu_enabled
        and not facts.dma_remapping,
        "interrupt-remapping-missing": facts.iommu_present and not facts.interrupt_remapping,
        "firmware-sriov-disabled": not facts.firmware_sriov_enabled,
        "pcie-native-control-denied": not facts.pcie_native_control,
        "acs-missing": not facts.acs,
        "kernel-no-pci-iov": not facts.kernel_pci_iov,
        "vfio-pci-missing": not facts.vfio_pci,
    }
    return [_HOST_REASONS[code] for code, _, _ in _HOST_RULES if unmet[code]]


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


def adapter_support(adapter: Adapter, facts: HostFacts) -> SriovSupport:
    """``SriovSupport`` of one adapter, first failing check wins."""
    cap = adapter.sriov
    if cap is None or not facts.kernel_pci_iov:
        return SriovSupport.NOT_CAPABLE
    if adapter.driver is None:
        return SriovSupport.MISSING_PF_DRIVER
    if not facts.firmware_sriov_enabled:
        return SriovSupport.FIRMWARE_DISABLED
    if not iommu_usable(facts):
        return SriovSupport.NO_IOMMU_SUPPORT
    if not facts.acs:
        return SriovSupport.MISSING_ACS
    if not cap.bus_resources:
        return SriovSupport.NO_BUS_RESOURCES
    if not cap.vf_bar_space:
        return SriovSupport.NO_VF_BAR_SPACE
    return SriovSupport.SUPPORTED


def adapter_reason(adapter: Adapter, support: SriovSupport) -> Reason | None:
    if support is SriovSupport.SUPPORTED:
        return None
    message, hint = _ADAPTER_TEXT[support]
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
    reason = adapter_reason(uplink, support)
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
