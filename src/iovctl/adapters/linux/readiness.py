"""Host facts for SR-IOV readiness, read from /proc, /sys and the PCI config space.

:class:`HostProbe` fills :class:`~iovctl.domain.model.HostFacts`; the domain's rules
(domain/readiness.py) turn them into reasons. Every path derives from ``root``. Where
Linux exposes no reliable signal (or only root may read it) the fact is None,
unverified, and the method docstring says what was tried: never a default shown as
a fact. The rules turn None into an "unverified" note, not a reason, since a false
"not ready" blocks an admin and the kernel's own refusal catches a real gap later.

The PCIe capability parsing (:func:`acs_capability` and friends) is pure and works on
config-space bytes. Must not import netlink code, services or the CLI.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from iovctl.adapters.linux.sysfs import PciFunction, SysfsPci
from iovctl.domain.model import HostFacts

# ------------------------------------------------------------------ PCIe config space

#: include/uapi/linux/pci_regs.h
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_CAPABILITY_LIST = 0x34
PCI_CAP_ID_EXP = 0x10
PCI_EXP_FLAGS = 0x02
PCI_EXP_TYPE_ROOT_PORT = 0x4
PCI_EXP_TYPE_DOWNSTREAM = 0x6
PCI_CFG_SPACE_SIZE = 256
PCI_EXT_CAP_ID_ACS = 0x000D
PCI_ACS_CAP = 0x04
PCI_ACS_CTRL = 0x06
PCI_ACS_SV = 0x0001
PCI_ACS_RR = 0x0004
PCI_ACS_CR = 0x0008
PCI_ACS_UF = 0x0010
#: What the kernel requires of every port on the path to isolate a device
#: (drivers/pci/pci.c REQ_ACS_FLAGS for pci_acs_path_enabled / iommu groups).
REQUIRED_ACS = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF


@dataclass(frozen=True)
class AcsCapability:
    """The ACS extended capability of a PCIe port."""

    capabilities: int
    control: int

    @property
    def isolates(self) -> bool:
        """The port can do everything the kernel needs for separate IOMMU groups."""
        return self.capabilities & REQUIRED_ACS == REQUIRED_ACS


def _u16(config: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", config, offset)[0])


def _u32(config: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", config, offset)[0])


def pcie_port_type(config: bytes) -> int | None:
    """Device/port type from the PCI Express capability; None if not PCIe or unreadable.

    Walks the standard capability list from 0x34 (pci_regs.h), bounded against loops.
    """
    if len(config) < 0x40 or not _u16(config, PCI_STATUS) & PCI_STATUS_CAP_LIST:
        return None
    position = config[PCI_CAPABILITY_LIST] & 0xFC
    for _ in range(48):  # pci.c PCI_FIND_CAP_TTL
        if position < 0x40 or position + 4 > len(config):
            return None
        cap_id, next_position = config[position], config[position + 1] & 0xFC
        if cap_id == PCI_CAP_ID_EXP:
            return (_u16(config, position + PCI_EXP_FLAGS) >> 4) & 0xF
        position = next_position
    return None


def find_ext_capability(config: bytes, cap_id: int) -> int | None:
    """Offset of a PCIe extended capability (list from 0x100), None if absent/unreadable."""
    position = PCI_CFG_SPACE_SIZE
    for _ in range((4096 - PCI_CFG_SPACE_SIZE) // 8):  # pci.c pci_find_next_ext_capability
        if position + 4 > len(config):
            return None
        header = _u32(config, position)
        if header == 0 or header == 0xFFFFFFFF:
            return None
        if header & 0xFFFF == cap_id:
            return position
        position = (header >> 20) & 0xFFC
        if position < PCI_CFG_SPACE_SIZE:
            return None
    return None


def acs_capability(config: bytes) -> AcsCapability | None:
    """The ACS capability in ``config``, None when the port has none."""
    position = find_ext_capability(config, PCI_EXT_CAP_ID_ACS)
    if position is None or position + 8 > len(config):
        return None
    return AcsCapability(
        _u16(config, position + PCI_ACS_CAP), _u16(config, position + PCI_ACS_CTRL)
    )


def extended_config_readable(config: bytes) -> bool:
    """Past the 256-byte conventional space: only root gets it (pci-sysfs.c)."""
    return len(config) > PCI_CFG_SPACE_SIZE


# ------------------------------------------------------------------ the probe

_IOMMU_TABLES = ("DMAR", "IVRS", "IORT", "VIOT")
#: Intel VT-d extended capability register, bit 3: Interrupt Remapping support
#: (include/linux/intel-iommu.h ecap_ir_support).
_ECAP_IR = 1 << 3


class HostProbe:
    """Reads :class:`HostFacts` from the machine under ``root``.

    ``kernel_release`` picks ``lib/modules/<release>`` and ``boot/config-<release>``
    (default: the running kernel's, ``os.uname().release``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        sysfs: SysfsPci | None = None,
        kernel_release: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.sysfs = sysfs or SysfsPci(root)
        self.kernel_release = kernel_release or os.uname().release
        self.proc = self.root / "proc"
        self.acpi_tables = self.root / "sys" / "firmware" / "acpi" / "tables"
        self.class_iommu = self.root / "sys" / "class" / "iommu"
        self.modules = self.root / "sys" / "module"
        self.port_services = self.root / "sys" / "bus" / "pci_express" / "devices"

    def facts(self, pfs: list[PciFunction] | None = None) -> HostFacts:
        """The host's facts; ``pfs``: the network PFs when the caller has read them."""
        if pfs is None:
            pfs = self.sysfs.network_pfs()
        cpuinfo = self._cpuinfo()
        cmdline = self._read(self.proc / "cmdline").strip()
        flags = cpuinfo.get("flags", set()) | cpuinfo.get("vmx flags", set())
        iommu_enabled = self.iommu_enabled()
        return HostFacts(
            cpu_vendor=self.cpu_vendor(cpuinfo),
            cpu_virtualization=bool(flags & {"vmx", "svm"}),
            cpu_slat=bool(flags & {"ept", "npt"}),
            iommu_present=self.iommu_present(),
            iommu_enabled=iommu_enabled,
            dma_remapping=iommu_enabled,
            interrupt_remapping=self.interrupt_remapping(cmdline),
            firmware_sriov_enabled=self.firmware_sriov_enabled(pfs),
            pcie_native_control=self.pcie_native_control(cmdline),
            acs=self.acs(pfs),
            kernel_pci_iov=self.kernel_pci_iov(pfs),
            vfio_pci=self.vfio_pci(),
            kernel_cmdline=cmdline,
            # arch/x86/kernel/cpu: X86_FEATURE_HYPERVISOR, CPUID.1:ECX bit 31.
            virtual_machine="hypervisor" in cpuinfo.get("flags", set()),
        )

    # -- CPU

    def _cpuinfo(self) -> dict[str, set[str]]:
        """First processor's fields; flag lines ("flags", "vmx flags") as word sets.

        Since Linux 5.8 VT-x features (ept, ...) are listed on a separate "vmx flags"
        line (arch/x86/kernel/cpu/proc.c); before that they were in "flags".
        """
        out: dict[str, set[str]] = {}
        for line in self._read(self.proc / "cpuinfo").splitlines():
            if not line.strip():
                if out:
                    break
                continue
            key, _, value = line.partition(":")
            out[key.strip()] = set(value.split())
        return out

    @staticmethod
    def cpu_vendor(cpuinfo: dict[str, set[str]]) -> str:
        vendor = " ".join(cpuinfo.get("vendor_id", set()))
        return {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}.get(
            vendor, vendor.lower() or "unknown"
        )

    # -- IOMMU

    def iommu_present(self) -> bool:
        """The firmware describes an IOMMU: ACPI DMAR (Intel), IVRS (AMD), IORT (Arm)
        or VIOT (virtio-iommu), or the kernel registered IOMMU units."""
        if any((self.acpi_tables / name).exists() for name in _IOMMU_TABLES):
            return True
        return _has_entries(self.class_iommu)

    def iommu_enabled(self) -> bool:
        """The kernel uses the IOMMU: ``/sys/kernel/iommu_groups`` is not empty."""
        return _has_entries(self.sysfs.iommu_groups_dir)

    def interrupt_remapping(self, cmdline: str) -> bool | None:
        """Interrupt remapping, from the strongest signal available.

        1. ``/proc/interrupts`` chips named ``IR-...`` (IR-PCI-MSI, IR-IO-APIC): in use.
        2. ``intremap=off`` on the command line: disabled (drivers/iommu/irq_remapping.c).
        3. Intel: bit 3 of any ``/sys/class/iommu/dmar*/intel-iommu/ecap``.
        4. AMD: every IVHD unit remaps interrupts (AMD-Vi spec); an ``ivhd*`` unit is True.
        5. Otherwise None: no IOMMU unit registered (no IOMMU, or it is off) to ask.
        """
        if "IR-" in self._read(self.proc / "interrupts"):
            return True
        if "intremap=off" in cmdline.split():
            return False
        units = _list(self.class_iommu)
        ecaps = [
            self._read(self.class_iommu / unit / "intel-iommu" / "ecap").strip()
            for unit in units
            if unit.startswith("dmar")
        ]
        ecaps = [value for value in ecaps if _is_hex(value)]
        if ecaps:
            return any(int(value, 16) & _ECAP_IR for value in ecaps)
        if any(unit.startswith("ivhd") for unit in units):
            return True
        return None

    # -- firmware / platform

    def firmware_sriov_enabled(self, pfs: list[PciFunction] | None = None) -> bool | None:
        """True when some SR-IOV PF got its VF resources from the firmware (VF BARs
        assigned, bus numbers routed): the firmware evidently enables SR-IOV. Otherwise
        None: a BIOS with SR-IOV disabled hides the capability or leaves VF resources
        unassigned, which Linux cannot tell apart from a NIC without SR-IOV; per
        adapter the unassigned VF BARs and short bus ranges are reported instead
        (SriovCapability.vf_bar_space / bus_resources)."""
        for pf in self.sysfs.network_pfs() if pfs is None else pfs:
            if pf.total_vfs is None or not pf.total_vfs:
                continue
            if not self.sysfs.vf_bar_unassigned(pf.address) and not self.sysfs.vf_bus_range_short(
                pf.address, pf.total_vfs
            ):
                return True
        return None

    def pcie_native_control(self, cmdline: str) -> bool | None:
        """False with ``pcie_ports=compat`` (the OS leaves PCIe services to the
        firmware), True with ``pcie_ports=native`` or when a port service that needs
        control granted by ACPI _OSC is registered: PME, AER or hotplug, named
        ``<port>:pcie001``/``002``/``004`` (drivers/pci/pcie/portdrv.c
        get_port_device_capability checks host->native_pme/_aer/_pcie_hotplug).
        Otherwise None: the _OSC outcome is only in dmesg, which iovctl does not parse."""
        words = cmdline.split()
        if "pcie_ports=compat" in words:
            return False
        if "pcie_ports=native" in words:
            return True
        services = _list(self.port_services)
        if any(name.rsplit(":", 1)[-1] in _OSC_SERVICES for name in services):
            return True
        return None

    def acs(self, pfs: list[PciFunction] | None = None) -> bool | None:
        """Every root or downstream port above an SR-IOV PF can do ACS (SV, RR, CR, UF).

        Read from each port's ``config`` (ACS extended capability 0x000D). False when a
        readable port lacks it; None when some port's extended config space is
        unreadable (not root: only 64 bytes) or there is no SR-IOV PF to check. The
        kernel may also treat a port without the capability as isolating through
        quirks (drivers/pci/quirks.c pci_dev_acs_enabled), so a VF's IOMMU group
        remains the final word.
        """
        checked = unreadable = False
        for pf in self.sysfs.network_pfs() if pfs is None else pfs:
            if pf.total_vfs is None:
                continue
            checked = True
            for bridge in self.sysfs.upstream_bridges(pf.address):
                config = self.sysfs.config(bridge)
                if not extended_config_readable(config):
                    unreadable = True
                    continue
                if pcie_port_type(config) not in (PCI_EXP_TYPE_ROOT_PORT, PCI_EXP_TYPE_DOWNSTREAM):
                    continue
                cap = acs_capability(config)
                if cap is None or not cap.isolates:
                    return False
        if unreadable or not checked:
            return None
        return True

    # -- kernel

    def kernel_pci_iov(self, pfs: list[PciFunction] | None = None) -> bool | None:
        """CONFIG_PCI_IOV: proven by any ``sriov_totalvfs`` file; else read from the
        kernel config (``boot/config-<release>`` or ``/proc/config.gz``); None when
        neither is there. ``pfs``: the network PFs already read (one with SR-IOV
        settles it)."""
        if any(pf.total_vfs is not None for pf in pfs or ()) or any(
            (self.sysfs.device_dir(address) / "sriov_totalvfs").exists()
            for address in self.sysfs.addresses()
        ):
            return True
        config = self._kernel_config()
        if config is None:
            return None
        return "CONFIG_PCI_IOV=y" in config.splitlines()

    def _kernel_config(self) -> str | None:
        boot = self.root / "boot" / f"config-{self.kernel_release}"
        if boot.exists():
            return self._read(boot)
        try:
            return gzip.decompress((self.proc / "config.gz").read_bytes()).decode()
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
            return None

    def vfio_pci(self) -> bool:
        """vfio-pci is loaded or built in (``/sys/module/vfio_pci``) or installed
        (``lib/modules/<release>/modules.dep`` or ``modules.builtin``)."""
        if (self.modules / "vfio_pci").exists():
            return True
        modules = self.root / "lib" / "modules" / self.kernel_release
        for name in ("modules.dep", "modules.builtin"):
            text = self._read(modules / name)
            if "/vfio-pci.ko" in text or "/vfio_pci.ko" in text:
                return True
        return False

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""


#: Port services portdrv registers only with PCIe control granted (pcie/portdrv.h:
#: PCIE_PORT_SERVICE_PME 1, _AER 2, _HP 4).
_OSC_SERVICES = frozenset({"pcie001", "pcie002", "pcie004"})


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def _list(path: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in path.iterdir())
    except OSError:
        return []


def _has_entries(path: Path) -> bool:
    """Whether the directory has any entry, without listing it (thousands of IOMMU
    groups on a host with thousands of VFs)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except OSError:
        return False
