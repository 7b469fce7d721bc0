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
    ("IR unknown: assumed", {"interrupts": "", "iommu_units": {}}, "interrupt_remapping", True),
    ("AMD unit", {"interrupts": "", "iommu_units": {"ivhd0": None}}, "interrupt_remapping", True),
    ("pcie_ports=compat", {"cmdline": "ro pcie_ports=compat"}, "pcie_native_control", False),
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
        (None, None, True),  # unknown
    ],
)
def test_kernel_pci_iov(
    tmp_path: Path, total_vfs: int | None, boot_config: str | None, expected: bool
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
        (port_config(acs=None, size=256), True),  # no extended space: unknown
        (port_config(acs=None)[:64], True),  # not root: 64 bytes
    ],
    ids=["full", "none", "partial", "downstream none", "upstream port", "256 bytes", "64 bytes"],
)
def test_acs_of_the_port_above_the_pf(tmp_path: Path, config: bytes, expected: bool) -> None:
    spec = igb_host()
    spec.bridge_configs["0000:00:02.0"] = config
    assert facts(tmp_path, spec).acs is expected


def test_acs_ignores_ports_above_non_sriov_adapters(tmp_path: Path) -> None:
    spec = igb_host(total_vfs=None)
    spec.bridge_configs["0000:00:02.0"] = port_config(acs=None)
    assert facts(tmp_path, spec).acs is True


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
