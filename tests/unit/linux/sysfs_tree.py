"""Builds a realistic fake /sys + /proc tree from data, for the Linux adapter tests.

The layout follows the kernel's: real directories under
``sys/devices/pci0000:00/<root port>/<function>``, relative symlinks from
``sys/bus/pci/devices/<bdf>``, ``driver`` -> ``sys/bus/pci/drivers/<name>``,
``virtfnN`` / ``physfn`` between PF and VFs, ``iommu_group`` ->
``sys/kernel/iommu_groups/<n>``, ``sys/class/net/<if>`` -> the device's ``net/<if>``.
A test describes a host with :class:`HostSpec` and calls :func:`build`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTEL_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx sse sse2 x2apic
vmx flags\t: vnmi preemption_timer invvpid ept_x_only ept flexpriority tsc_offset
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx sse sse2 x2apic
"""

AMD_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic svm npt sse sse2
"""

#: VT-d ecap with Interrupt Remapping (bit 3) set, as a Xeon reports it.
ECAP_WITH_IR = "f0205ef"
ECAP_WITHOUT_IR = "f0205e7"


def port_config(
    *,
    port_type: int = 4,
    acs: int | None = 0x001F,
    subordinate_bus: int = 1,
    size: int = 4096,
) -> bytes:
    """Config space of a PCIe port (type 4 root port, 6 downstream port).

    Standard capability list: 0x40 PCI Express; extended list: 0x100 AER (id 1) ->
    0x148 ACS (id 0x0D, capability register ``acs``) when ``acs`` is not None.
    """
    config = bytearray(size)
    struct.pack_into("<HH", config, 0, 0x8086, 0x7C00)  # vendor, device
    struct.pack_into("<H", config, 0x06, 0x0010)  # status: capability list
    config[0x0E] = 0x01  # header type 1 (bridge)
    config[0x19], config[0x1A] = 1, subordinate_bus  # secondary, subordinate bus
    config[0x34] = 0x40
    config[0x40], config[0x41] = 0x10, 0x00  # PCIe capability, last
    struct.pack_into("<H", config, 0x42, 0x0002 | port_type << 4)
    if size > 0x100:
        next_cap = 0x148 if acs is not None else 0
        struct.pack_into("<I", config, 0x100, 0x0001 | 1 << 16 | next_cap << 20)
        if acs is not None:
            struct.pack_into("<IHH", config, 0x148, 0x000D | 1 << 16, acs, 0)
    return bytes(config)


@dataclass
class VfSpec:
    index: int
    address: str
    netdev: str | None = None
    iommu_group: int | None = None
    driver: str | None = "igbvf"


@dataclass
class PfSpec:
    address: str = "0000:01:00.0"
    netdev: str | None = "enp1s0"
    ifindex: int = 3
    driver: str | None = "igb"
    vendor: str = "0x8086"
    device: str = "0x10c9"
    class_code: str = "0x020000"
    numa_node: str = "-1"
    #: None: the file is unreadable (the kernel gives EINVAL while the link is down).
    speed: str | None = "1000"
    #: None: unreadable (interface down).
    carrier: str | None = "1"
    #: ``flags`` of the netdev: IFF_UP set or not; None: no flags file.
    admin_up: bool | None = None
    mac: str = "52:54:00:12:34:56"
    #: None: no SR-IOV capability (no sriov_* files).
    total_vfs: int | None = 7
    num_vfs: int = 0
    vf_device: str = "0x10ca"
    offset: int = 128
    stride: int = 2
    autoprobe: int = 1
    vfs: list[VfSpec] = field(default_factory=list)
    #: Root port the PF sits behind; None: directly on the root bus.
    bridge: str | None = "0000:00:02.0"
    iommu_group: int | None = 10
    vf_bar_unassigned: bool = False
    #: Net devices one level down, like virtio-pci's virtioN/net/ethX.
    nested_netdev_parent: str | None = None


@dataclass
class DeviceSpec:
    """Any other PCI function (host bridge, storage...)."""

    address: str
    class_code: str
    driver: str | None = None


@dataclass
class HostSpec:
    pfs: list[PfSpec] = field(default_factory=lambda: [PfSpec()])
    devices: list[DeviceSpec] = field(
        default_factory=lambda: [DeviceSpec("0000:00:00.0", "0x060000")]
    )
    #: Config space of each bridge (default: a root port with full ACS).
    bridge_configs: dict[str, bytes] = field(default_factory=dict)
    cpuinfo: str = INTEL_CPUINFO
    cmdline: str = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on iommu=pt"
    acpi_tables: tuple[str, ...] = ("APIC", "DMAR", "FACP")
    #: IOMMU groups get created for every function that names one.
    iommu_groups: bool = True
    #: sys/class/iommu units -> Intel ecap (None: an AMD ivhd unit without ecap).
    iommu_units: dict[str, str | None] = field(default_factory=lambda: {"dmar0": ECAP_WITH_IR})
    interrupts: str = "  24:  0  0  IR-PCI-MSIX-0000:01:00.0  0-edge  enp1s0-TxRx-0\n"
    #: PCIe port services (bus/pci_express/devices): AER on the root port, which
    #: portdrv registers only when ACPI _OSC granted the OS control.
    port_services: tuple[str, ...] = ("0000:00:02.0:pcie002",)
    loaded_modules: tuple[str, ...] = ("vfio_pci", "igb")
    kernel_release: str = "6.1.0-test-amd64"
    modules_dep: str | None = None
    boot_config: str | None = None
    pci_ids: str | None = None


def _symlink(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs has them."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


class Tree:
    """A built fake host: ``root`` plus helpers tests use to mimic the kernel."""

    def __init__(self, root: Path, spec: HostSpec) -> None:
        self.root = root
        self.spec = spec
        self.sys = root / "sys"
        self.bus = self.sys / "bus" / "pci"

    def device_path(self, address: str) -> Path:
        return (self.bus / "devices" / address).resolve()

    def add_function(
        self,
        address: str,
        parent: Path,
        class_code: str,
        driver: str | None,
        vendor: str = "0x8086",
        device: str = "0x10ca",
        numa_node: str = "-1",
    ) -> Path:
        path = parent / address
        path.mkdir(parents=True)
        for name, value in (
            ("class", class_code),
            ("vendor", vendor),
            ("device", device),
            ("numa_node", numa_node),
        ):
            _write(path / name, value + "\n")
        _symlink(self.bus / "devices" / address, path)
        if driver is not None:
            self.bind(address, driver)
        return path

    def bind(self, address: str, driver: str) -> None:
        path = self.device_path(address)
        drv = self.bus / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        if (path / "driver").is_symlink():
            (path / "driver").unlink()
        _symlink(path / "driver", drv)

    def unbind(self, address: str) -> None:
        link = self.device_path(address) / "driver"
        if link.is_symlink():
            link.unlink()

    def add_netdev(
        self,
        device: Path,
        name: str,
        mac: str,
        speed: str | None,
        ifindex: int,
        carrier: str | None = None,
    ) -> None:
        net = device / "net" / name
        _write(net / "address", mac + "\n")
        _write(net / "ifindex", f"{ifindex}\n")
        if speed is not None:
            _write(net / "speed", speed + "\n")
        if carrier is not None:
            _write(net / "carrier", carrier + "\n")
        _symlink(self.sys / "class" / "net" / name, net)

    def set_admin_up(self, name: str, up: bool) -> None:
        """``flags`` as the kernel shows them: IFF_BROADCAST|IFF_MULTICAST, IFF_UP."""
        _write(self.sys / "class" / "net" / name / "flags", f"{0x1002 | int(up):#x}\n")

    def set_carrier(self, name: str, carrier: str) -> None:
        _write(self.sys / "class" / "net" / name / "carrier", carrier + "\n")

    def set_iommu_group(self, address: str, group: int) -> None:
        path = self.device_path(address)
        group_dir = self.sys / "kernel" / "iommu_groups" / str(group)
        (group_dir / "devices").mkdir(parents=True, exist_ok=True)
        _symlink(path / "iommu_group", group_dir)
        _symlink(group_dir / "devices" / address, path)

    def add_vf(self, pf: PfSpec, vf: VfSpec) -> None:
        """What iov.c pci_iov_add_virtfn does: the VF device, physfn, virtfnN."""
        pf_path = self.device_path(pf.address)
        path = self.add_function(
            vf.address, pf_path.parent, pf.class_code, None, device=pf.vf_device
        )
        _symlink(path / "physfn", pf_path)
        _symlink(pf_path / f"virtfn{vf.index}", path)
        if vf.iommu_group is not None and self.spec.iommu_groups:
            self.set_iommu_group(vf.address, vf.iommu_group)
        if vf.driver is not None:
            self.bind(vf.address, vf.driver)
        if vf.netdev is not None:
            self.add_netdev(path, vf.netdev, "00:00:00:00:00:00", None, 100 + vf.index)
        _write(path / "driver_override", "(null)\n")

    def remove_vfs(self, pf: PfSpec) -> None:
        pf_path = self.device_path(pf.address)
        for link in pf_path.glob("virtfn*"):
            vf_path = link.resolve()
            link.unlink()
            for net in (vf_path / "net").glob("*") if (vf_path / "net").exists() else []:
                (self.sys / "class" / "net" / net.name).unlink(missing_ok=True)
            group = vf_path / "iommu_group"
            if group.is_symlink():  # iommu.c: the device leaves its group
                (group.resolve() / "devices" / vf_path.name).unlink(missing_ok=True)
            (self.bus / "devices" / vf_path.name).unlink()
            _rmtree(vf_path)

    def set_numvfs_file(self, pf: PfSpec, count: int) -> None:
        _write(self.device_path(pf.address) / "sriov_numvfs", f"{count}\n")


def _rmtree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            _rmtree(child)
    path.rmdir()


def vf_address(pf: PfSpec, index: int) -> str:
    """Routing ID arithmetic of iov.c: PF RID + offset + stride * index."""
    domain, bus, slot_fn = pf.address.split(":")
    slot, fn = slot_fn.split(".")
    rid = (int(bus, 16) << 8 | int(slot, 16) << 3 | int(fn, 16)) + pf.offset + pf.stride * index
    return f"{domain}:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}"


def build(root: Path, spec: HostSpec) -> Tree:
    """Create the tree for ``spec`` under ``root``; returns it for kernel-like edits."""
    tree = Tree(root, spec)
    host_bridge = tree.sys / "devices" / "pci0000:00"
    host_bridge.mkdir(parents=True)
    (tree.bus / "drivers").mkdir(parents=True)
    (tree.bus / "devices").mkdir(parents=True)
    (tree.sys / "class" / "net").mkdir(parents=True)
    _write(tree.bus / "drivers_probe", "")
    (tree.sys / "kernel" / "iommu_groups").mkdir(parents=True)

    for device in spec.devices:
        tree.add_function(device.address, host_bridge, device.class_code, device.driver)

    bridges: dict[str, Path] = {}
    for pf in spec.pfs:
        parent = host_bridge
        if pf.bridge is not None:
            if pf.bridge not in bridges:
                bridges[pf.bridge] = tree.add_function(
                    pf.bridge, host_bridge, "0x060400", "pcieport", device="0x7c00"
                )
                config = spec.bridge_configs.get(pf.bridge, port_config())
                _write(bridges[pf.bridge] / "config", config)
            parent = bridges[pf.bridge]
        path = tree.add_function(
            pf.address, parent, pf.class_code, pf.driver, pf.vendor, pf.device, pf.numa_node
        )
        if pf.netdev is not None:
            holder = path / pf.nested_netdev_parent if pf.nested_netdev_parent else path
            tree.add_netdev(holder, pf.netdev, pf.mac, pf.speed, pf.ifindex, pf.carrier)
            if pf.admin_up is not None:
                tree.set_admin_up(pf.netdev, pf.admin_up)
        if pf.total_vfs is not None:
            for name, value in (
                ("sriov_totalvfs", pf.total_vfs),
                ("sriov_numvfs", pf.num_vfs),
                ("sriov_offset", pf.offset),
                ("sriov_stride", pf.stride),
                ("sriov_vf_device", pf.vf_device.removeprefix("0x")),
                ("sriov_drivers_autoprobe", pf.autoprobe),
            ):
                _write(path / name, f"{value}\n")
        resource = ["0x0000000000000000 0x0000000000000000 0x0000000000000000"] * 13
        resource[0] = "0x00000000fe800000 0x00000000fe81ffff 0x0000000000040200"
        if pf.total_vfs is not None:
            resource[7] = (
                "0x0000000000000000 0x0000000000003fff 0x0000000020040200"
                if pf.vf_bar_unassigned
                else "0x00000000fe840000 0x00000000fe843fff 0x0000000000040200"
            )
        _write(path / "resource", "\n".join(resource) + "\n")
        if pf.iommu_group is not None and spec.iommu_groups:
            tree.set_iommu_group(pf.address, pf.iommu_group)
        for vf in pf.vfs:
            tree.add_vf(pf, vf)

    services = tree.sys / "bus" / "pci_express" / "devices"
    services.mkdir(parents=True)
    for service in spec.port_services:
        port = service.rsplit(":", 1)[0]
        target = bridges.get(port, host_bridge) / service
        target.mkdir(parents=True)
        _symlink(services / service, target)

    procdir = root / "proc"
    _write(procdir / "cpuinfo", spec.cpuinfo)
    _write(procdir / "cmdline", spec.cmdline + "\n")
    _write(procdir / "interrupts", "           CPU0       CPU1\n" + spec.interrupts)
    for table in spec.acpi_tables:
        _write(tree.sys / "firmware" / "acpi" / "tables" / table, b"\x00" * 36)
    for unit, ecap in spec.iommu_units.items():
        unit_dir = tree.sys / "class" / "iommu" / unit
        unit_dir.mkdir(parents=True)
        if ecap is not None:
            _write(unit_dir / "intel-iommu" / "ecap", ecap + "\n")
    for module in spec.loaded_modules:
        (tree.sys / "module" / module).mkdir(parents=True)
    if "vfio_pci" in spec.loaded_modules:  # a loaded PCI driver has its drivers/ entry
        (tree.bus / "drivers" / "vfio-pci").mkdir(parents=True, exist_ok=True)
    modules_dir = root / "lib" / "modules" / spec.kernel_release
    modules_dir.mkdir(parents=True)
    if spec.modules_dep is not None:
        _write(modules_dir / "modules.dep", spec.modules_dep)
    if spec.boot_config is not None:
        _write(root / "boot" / f"config-{spec.kernel_release}", spec.boot_config)
    if spec.pci_ids is not None:
        _write(root / "usr" / "share" / "misc" / "pci.ids", spec.pci_ids)
    return tree


def igb_host(num_vfs: int = 0, **pf_changes: Any) -> HostSpec:
    """One 82576 PF (igb) behind a root port with ``num_vfs`` VFs bound to igbvf."""
    pf = PfSpec(num_vfs=num_vfs)
    for key, value in pf_changes.items():
        setattr(pf, key, value)
    pf.vfs = [
        VfSpec(i, vf_address(pf, i), netdev=f"enp1s0v{i}", iommu_group=20 + i)
        for i in range(num_vfs)
    ]
    return HostSpec(pfs=[pf])
