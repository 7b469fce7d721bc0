"""HostProbe on fake trees (each fact on and off) and the PCIe capability parsers."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.linux.readiness import (
    PCI_EXP_TYPE_DOWNSTREAM,
    PCI_EXP_TYPE_ROOT_PORT,
    PCI_EXT_CAP_ID_ACS,
    AcsCapability,
    HostProbe,
    acs_capability,
    find_ext_capability,
    pcie_port_type,
)
from iovctl.domain.model import HostFacts

from .sysfs_tree import (
    AMD_CPUINFO,
    ECAP_WITHOUT_IR,
    HostSpec,
    PfSpec,
    build,
    igb_host,
    port_config,
)

NO_VMX_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2\n"
VM_CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    "flags\t\t: fpu vmx sse hypervisor\nvmx flags\t: ept\n"
)
OLD_KERNEL_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vmx ept sse\n"


def facts(tmp_path: Path, spec: HostSpec) -> HostFacts:
    build(tmp_path, spec)
    return HostProbe(tmp_path, kernel_release=spec.kernel_release).facts()


def test_a_ready_intel_host(tmp_path: Path) -> None:
    spec = igb_host()
    assert facts(tmp_path, spec) == HostFacts(
        cpu_vendor="intel",
        kernel_cmdline=spec.cmdline,
    )


# (HostSpec changes, the fact, its value)
CASES: list[tuple[str, dict[str, Any], str, object]] = [
    ("amd cpu", {"cpuinfo": AMD_CPUINFO}, "cpu_vendor", "amd"),
    ("svm", {"cpuinfo": AMD_CPUINFO}, "cpu_virtualization", True),
    ("npt", {"cpuinfo": AMD_CPUINFO}, "cpu_slat", True),
    ("no vmx", {"cpuinfo": NO_VMX_CPUINFO}, "cpu_virtualization", False),
    ("no ept", {"cpuinfo": NO_VMX_CPUINFO}, "cpu_slat", False),
    ("ept in flags (< 5.8)", {"cpuinfo": OLD_KERNEL_CPUINFO}, "cpu_slat", True),
    ("no DMAR, no unit", {"acpi_tables": ("APIC",), "iommu_units": {}}, "iommu_present", False),
    ("IVRS", {"acpi_tables": ("IVRS",), "iommu_units": {}}, "iommu_present", True),
    (
        "unit without table",
        {"acpi_tables": (), "iommu_units": {"ivhd0": None}},
        "iommu_present",
        True,
    ),
    ("no groups", {"iommu_groups": False}, "iommu_enabled", False),
    ("no groups, no DMA remap", {"iommu_groups": False}, "dma_remapping", False),
    ("IR chip in use", {"iommu_units": {"dmar0": ECAP_WITHOUT_IR}}, "interrupt_remapping", True),
    (
        "ecap without IR",
        {"interrupts": "", "iommu_units": {"dmar0": ECAP_WITHOUT_IR}},
        "interrupt_remapping",
        False,
    ),
    ("ecap with IR", {"interrupts": ""}, "interrupt_remapping", True),
    (
        "intremap=off",
        {"interrupts": "", "cmdline": "ro intel_iommu=on intremap=off"},
        "interrupt_remapping",
        False,
    ),
    # No unit to ask: unverified, not a default shown as a fact (issue 9, item 5).
    ("IR unknown: unverified", {"interrupts": "", "iommu_units": {}}, "interrupt_remapping", None),
    (
        "IR unreadable ecap: unverified",
        {"interrupts": "", "iommu_units": {"dmar0": "garbage"}},
        "interrupt_remapping",
        None,
    ),
    ("AMD unit", {"interrupts": "", "iommu_units": {"ivhd0": None}}, "interrupt_remapping", True),
    ("pcie_ports=compat", {"cmdline": "ro pcie_ports=compat"}, "pcie_native_control", False),
    (
        "pcie_ports=native",
        {"cmdline": "ro pcie_ports=native", "port_services": ()},
        "pcie_native_control",
        True,
    ),
    ("AER service: _OSC granted", {}, "pcie_native_control", True),
    ("hotplug service", {"port_services": ("0000:00:02.0:pcie004",)}, "pcie_native_control", True),
    # Bandwidth notification (pcie010) needs no _OSC grant: proves nothing.
    ("no _OSC service", {"port_services": ("0000:00:02.0:pcie010",)}, "pcie_native_control", None),
    ("no port services", {"port_services": ()}, "pcie_native_control", None),
    ("cpu flag hypervisor", {"cpuinfo": VM_CPUINFO}, "virtual_machine", True),
    ("metal", {}, "virtual_machine", False),
    ("VF BARs assigned: firmware enables SR-IOV", {}, "firmware_sriov_enabled", True),
    ("no vfio-pci", {"loaded_modules": ()}, "vfio_pci", False),
    (
        "vfio-pci installed, not loaded",
        {
            "loaded_modules": (),
            "modules_dep": "kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio.ko\n",
        },
        "vfio_pci",
        True,
    ),
    ("cmdline", {"cmdline": "ro quiet"}, "kernel_cmdline", "ro quiet"),
]


@pytest.mark.parametrize(
    ("changes", "fact", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_fact(tmp_path: Path, changes: dict[str, Any], fact: str, expected: object) -> None:
    spec = replace(igb_host(), **changes)
    assert getattr(facts(tmp_path, spec), fact) == expected


# ---------------------------------------------------------------------------- kernel_pci_iov


@pytest.mark.parametrize(
    ("total_vfs", "boot_config", "expected"),
    [
        (7, None, True),  # a sriov_totalvfs file proves CONFIG_PCI_IOV
        (None, "CONFIG_PCI=y\nCONFIG_PCI_IOV=y\n", True),
        (None, "CONFIG_PCI=y\n# CONFIG_PCI_IOV is not set\n", False),
        (None, None, None),  # no SR-IOV device, no kernel config: unverified
    ],
)
def test_kernel_pci_iov(
    tmp_path: Path, total_vfs: int | None, boot_config: str | None, expected: bool | None
) -> None:
    spec = igb_host(total_vfs=total_vfs)
    spec.boot_config = boot_config
    assert facts(tmp_path, spec).kernel_pci_iov is expected


# ---------------------------------------------------------------------------- ACS


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (port_config(), True),
        (port_config(acs=None), False),
        (port_config(acs=0x001B), False),  # no Request Redirect
        (port_config(port_type=PCI_EXP_TYPE_DOWNSTREAM, acs=None), False),
        (port_config(port_type=5, acs=None), True),  # upstream switch port: not required
        (port_config(acs=None, size=256), None),  # no extended space: unverified
        (port_config(acs=None)[:64], None),  # not root: 64 bytes, unverified
    ],
    ids=["full", "none", "partial", "downstream none", "upstream port", "256 bytes", "64 bytes"],
)
def test_acs_of_the_port_above_the_pf(tmp_path: Path, config: bytes, expected: bool | None) -> None:
    spec = igb_host()
    spec.bridge_configs["0000:00:02.0"] = config
    assert facts(tmp_path, spec).acs is expected


def test_acs_ignores_ports_above_non_sriov_adapters(tmp_path: Path) -> None:
    """No SR-IOV PF: no path was checked, so ACS is unverified, not "present"."""
    spec = igb_host(total_vfs=None)
    spec.bridge_configs["0000:00:02.0"] = port_config(acs=None)
    assert facts(tmp_path, spec).acs is None


def test_a_port_known_to_lack_acs_wins_over_an_unreadable_one(tmp_path: Path) -> None:
    spec = HostSpec(
        pfs=[
            PfSpec(),
            PfSpec(address="0000:02:00.0", netdev="enp2s0", bridge="0000:00:03.0", iommu_group=11),
        ]
    )
    spec.bridge_configs["0000:00:02.0"] = port_config(acs=None)[:64]
    spec.bridge_configs["0000:00:03.0"] = port_config(acs=None)
    assert facts(tmp_path, spec).acs is False


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"vf_bar_unassigned": True}, None),
        ({"total_vfs": None}, None),
    ],
    ids=["VF BARs unassigned", "no SR-IOV PF"],
)
def test_firmware_sriov_is_unverified_without_evidence(
    tmp_path: Path, changes: dict[str, Any], expected: None
) -> None:
    """A BIOS with SR-IOV off looks like a NIC without it: never reported as off,
    never as on without a PF that got its VF resources."""
    assert facts(tmp_path, igb_host(**changes)).firmware_sriov_enabled is expected


def test_acs_of_a_pf_on_the_root_bus(tmp_path: Path) -> None:
    spec = HostSpec(pfs=[PfSpec(address="0000:00:05.0", bridge=None)])
    assert facts(tmp_path, spec).acs is True


def test_acs_capability_fields() -> None:
    cap = acs_capability(port_config(acs=0x005F))
    assert cap == AcsCapability(capabilities=0x005F, control=0)
    assert cap.isolates


def test_ext_capability_walk() -> None:
    config = port_config()
    assert find_ext_capability(config, 0x0001) == 0x100
    assert find_ext_capability(config, PCI_EXT_CAP_ID_ACS) == 0x148
    assert find_ext_capability(config, 0x0010) is None  # no SR-IOV capability here


def test_ext_capability_loop_is_bounded() -> None:
    config = bytearray(port_config(acs=None))
    struct.pack_into("<I", config, 0x100, 0x0001 | 1 << 16 | 0x100 << 20)  # points to itself
    assert find_ext_capability(bytes(config), PCI_EXT_CAP_ID_ACS) is None


def test_pcie_port_type() -> None:
    assert pcie_port_type(port_config()) == PCI_EXP_TYPE_ROOT_PORT
    assert pcie_port_type(port_config(port_type=PCI_EXP_TYPE_DOWNSTREAM)) == 6
    assert pcie_port_type(b"") is None
    no_caps = bytearray(port_config())
    no_caps[0x06] = 0
    assert pcie_port_type(bytes(no_caps)) is None


# ------------------------------------------------- the whole report on a guest (item 5)


def test_a_guest_without_iommu_read_as_non_root_tells_the_truth(tmp_path: Path) -> None:
    """A QEMU guest (cpu flag hypervisor) with no virtual IOMMU, probed without root:
    no interrupt remapping to ask, ACS unreadable, and hints that name QEMU/libvirt
    settings rather than a BIOS the guest does not have."""
    from iovctl.domain.readiness import host_reasons, unverified_facts

    spec = replace(
        igb_host(),
        cpuinfo=VM_CPUINFO,
        acpi_tables=("APIC", "FACP"),
        iommu_units={},
        iommu_groups=False,
        interrupts="  24:  0  0  PCI-MSIX-0000:01:00.0  0-edge  enp1s0-TxRx-0\n",
        port_services=(),
    )
    spec.bridge_configs["0000:00:02.0"] = port_config()[:64]  # what non-root reads
    probed = facts(tmp_path, spec)
    assert probed.virtual_machine is True
    assert (probed.interrupt_remapping, probed.acs, probed.pcie_native_control) == (
        None,
        None,
        None,
    )
    (reason,) = host_reasons(probed)
    assert reason.code == "iommu-missing"
    assert "intel-iommu" in reason.hint and "BIOS" not in reason.hint
    assert [n.code for n in unverified_facts(probed)] == [
        "pcie-native-control-unverified",
        "acs-unverified",
    ]
