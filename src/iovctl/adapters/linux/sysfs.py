"""The PCI side of SR-IOV through sysfs: network PFs, their VFs, the VF count, VF drivers.

Every path derives from the ``root`` given to :class:`SysfsPci` (``/`` on a host, a
fake tree in tests): ``sys/bus/pci/devices``, ``sys/bus/pci/drivers``, ``sys/class/net``,
``sys/kernel/iommu_groups``. Kernel rules are cited from drivers/pci/iov.c and
drivers/pci/pci-sysfs.c. Writes go through :meth:`SysfsPci._write`, the one seam tests
override to inject the kernel's errno. Writing needs root.

Must not import netlink code, services, the CLI or anything beyond the standard
library, the domain model and ``iovctl.errors``.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iovctl.errors import HardwareError, InvalidInput, NotFound

#: A path as the os functions take it.
StrPath = str | os.PathLike[str]

#: PCI class 0x02xxxx: network controller (include/linux/pci_ids.h PCI_BASE_CLASS_NETWORK).
NETWORK_CLASS = 0x02
#: Drivers that take a VF away from the host network stack (no netdev expected).
NON_NET_VF_DRIVERS = frozenset({"vfio-pci", "pci-stub", "uio_pci_generic", "igb_uio"})
#: include/uapi/linux/if.h: the administrative "up" flag of a netdev.
IFF_UP = 0x1
#: resource file flags (include/linux/ioport.h).
IORESOURCE_MEM = 0x00000200
IORESOURCE_UNSET = 0x20000000
#: resource file lines 7-12 are the SR-IOV VF BARs (PCI_IOV_RESOURCES, include/linux/pci.h).
IOV_RESOURCE_LINES = range(7, 13)


@dataclass(frozen=True)
class PciFunction:
    """What sysfs says about one PCI function."""

    address: str
    class_code: int
    vendor_id: str
    device_id: str
    #: Bound driver, None when unbound.
    driver: str | None
    numa_node: int
    netdevs: tuple[str, ...]
    #: ``sriov_totalvfs``; None when the function has no SR-IOV capability (or the
    #: kernel lacks CONFIG_PCI_IOV).
    total_vfs: int | None
    num_vfs: int
    vf_device_id: str
    is_vf: bool

    @property
    def netdev(self) -> str | None:
        return self.netdevs[0] if self.netdevs else None

    @property
    def is_network(self) -> bool:
        return self.class_code >> 16 == NETWORK_CLASS


@dataclass(frozen=True)
class VfFunction:
    """One VF as its PF's ``virtfnN`` link shows it."""

    index: int
    address: str
    netdev: str | None
    iommu_group: int | None
    driver: str | None


class SysfsPci:
    """PCI functions under ``root``/sys; see the module docstring.

    ``vf_create_timeout`` bounds the wait for VFs (and their netdevs) after enabling
    them; ``poll_interval`` is the first delay between checks (it grows to 0.5 s).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        vf_create_timeout: float = 30.0,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root = Path(root)
        self.sys = self.root / "sys"
        self.devices_dir = self.sys / "bus" / "pci" / "devices"
        self.drivers_dir = self.sys / "bus" / "pci" / "drivers"
        self.drivers_probe = self.sys / "bus" / "pci" / "drivers_probe"
        self.class_net_dir = self.sys / "class" / "net"
        self.iommu_groups_dir = self.sys / "kernel" / "iommu_groups"
        self.vf_create_timeout = vf_create_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep

    # ------------------------------------------------------------------ reading

    def device_dir(self, address: str) -> Path:
        return self.devices_dir / address

    def addresses(self) -> list[str]:
        """Every PCI function address, sorted."""
        return sorted(self._list(self.devices_dir))

    def function(self, address: str) -> PciFunction:
        """Read one function; raises NotFound when ``address`` does not exist."""
        path = f"{self.devices_dir}/{address}/"  # strings: this runs per PF per command
        class_code = self._read_int(path + "class")
        if class_code is None and not self._exists(path):
            raise NotFound(
                "unknown-pci-device",
                f"no PCI function {address}",
                "list PCI functions with: lspci -D",
            )
        total = self._read_int(path + "sriov_totalvfs")
        return PciFunction(
            address=address,
            class_code=class_code or 0,
            vendor_id=_hex_id(self._read_text(path + "vendor")),
            device_id=_hex_id(self._read_text(path + "device")),
            driver=self._link_name(path + "driver"),
            # pci-sysfs.c numa_node_show: -1 (NUMA_NO_NODE) on single-node machines.
            numa_node=max(self._read_int(path + "numa_node") or 0, 0),
            netdevs=tuple(self._netdevs(self.device_dir(address))),
            total_vfs=total,
            num_vfs=(self._read_int(path + "sriov_numvfs") or 0) if total is not None else 0,
            vf_device_id=_hex_id(self._read_text(path + "sriov_vf_device"))
            if total is not None
            else "",
            is_vf=self._exists(path + "physfn"),
        )

    def network_pfs(self) -> list[PciFunction]:
        """Network functions (class 0x02xxxx) that are not VFs (no ``physfn`` link)."""
        return [self.function(address) for address in self.network_pf_addresses()]

    def network_pf_addresses(self) -> list[str]:
        """Addresses of the network PFs, sorted, without reading every VF.

        A VF's routing ID is its PF's plus ``sriov_offset`` + ``sriov_stride`` * n
        (iov.c pci_iov_virtfn_bus/devfn; sysfs shows the offset and stride for the
        current ``sriov_numvfs``), and always above the PF's, so the VFs of a PF
        already seen are skipped by address; any other function is checked (class,
        no ``physfn``), so a wrong skip list only costs reads, never a wrong answer.
        """
        skip: set[str] = set()
        out = []
        devices = f"{self.devices_dir}/"
        for address in self.addresses():
            if address in skip:
                continue
            code = self._read_int(devices + address + "/class")
            if (
                code is None
                or code >> 16 != NETWORK_CLASS
                or self._exists(devices + address + "/physfn")
            ):
                continue
            out.append(address)
            skip.update(self._vf_addresses(address))
        return out

    def _vf_addresses(self, address: str) -> list[str]:
        """Where the PF's current VFs sit, by routing ID arithmetic; [] without VFs."""
        path = f"{self.devices_dir}/{address}/"
        count = self._read_int(path + "sriov_numvfs")
        if not count:
            return []
        offset = self._read_int(path + "sriov_offset")
        stride = self._read_int(path + "sriov_stride")
        if offset is None or stride is None:
            return []
        domain = address.split(":", 1)[0]
        bus, devfn = _routing_parts(address)
        first = (bus << 8 | devfn) + offset
        last = first + max(stride, 1) * (count - 1)
        out: list[str] = []
        for vf_bus in range(first >> 8, (last >> 8) + 1):
            # The devfns on this bus, from the first VF's (or 0) in steps of the stride.
            start = first - (vf_bus << 8) if vf_bus == first >> 8 else None
            if start is None:
                # Continue the arithmetic progression across the bus boundary.
                done = len(out)
                start = first + max(stride, 1) * done - (vf_bus << 8)
            end = min(last - (vf_bus << 8), 255) + 1
            prefix = f"{domain}:{vf_bus:02x}:"
            out += [prefix + name for name in _DEVFN_NAMES[start : end : max(stride, 1)]]
        return out

    def pf_address(self, name: str) -> str | None:
        """The PCI address of the function named ``name`` (its address, or one of its
        network interfaces), found without scanning the bus; None when nothing is.

        ``class/net/<if>`` links into the device tree (``../../devices/pci0000:00/
        0000:00:1c.0/0000:01:00.0/net/<if>``): the last PCI address on that path is
        the function (virtio-pci puts ``virtioN`` in between).
        """
        if _is_pci_address(name):
            return name if self._exists(self.device_dir(name)) else None
        if "/" in name or name in ("", ".", ".."):
            return None
        target = self._readlink(self.class_net_dir / name)
        if target is None:
            return None
        found = [part for part in target.split("/") if _is_pci_address(part)]
        return found[-1] if found else None

    def link_speed(self, netdev: str) -> int | None:
        """Mbit/s from ``class/net/<if>/speed``; None when unknown: -1 (SPEED_UNKNOWN,
        ethtool.h), 0, or unreadable (the kernel returns EINVAL while the link is down)."""
        speed = self._read_int(self.class_net_dir / netdev / "speed")
        return speed if speed is not None and speed > 0 else None

    def mac(self, netdev: str) -> str:
        return self._read_text(self.class_net_dir / netdev / "address") or ""

    def ifindex(self, netdev: str) -> int | None:
        return self._read_int(self.class_net_dir / netdev / "ifindex")

    def carrier(self, netdev: str) -> bool | None:
        """``class/net/<if>/carrier``; None while the interface is down (EINVAL)."""
        value = self._read_int(self.class_net_dir / netdev / "carrier")
        return None if value is None else value == 1

    def admin_up(self, netdev: str) -> bool | None:
        """Whether ``netdev`` is administratively up (IFF_UP in ``class/net/<if>/flags``);
        None when unreadable."""
        text = self._read_text(self.class_net_dir / netdev / "flags")
        try:
            return bool(int(text or "", 16) & IFF_UP)
        except ValueError:
            return None

    def drivers_autoprobe(self, address: str) -> bool:
        return self._read_int(self.device_dir(address) / "sriov_drivers_autoprobe") != 0

    def vfs(self, address: str) -> list[VfFunction]:
        """The PF's VFs from its ``virtfnN`` links, in index order."""
        indexes = sorted(
            int(name[6:])
            for name in self._list(self.device_dir(address))
            if name.startswith("virtfn") and name[6:].isdigit()
        )
        out = [self.vf(address, index) for index in indexes]
        return [vf for vf in out if vf is not None]

    def vf(self, address: str, index: int) -> VfFunction | None:
        """VF ``index`` of the PF at ``address`` from its ``virtfnN`` link alone (no
        other VF is read); None when the PF has no such VF."""
        # Plain strings: a PF's 256 VFs take 1,024 of these lookups.
        link = f"{self.devices_dir}/{address}/virtfn{index}"
        target = self._readlink(link)
        if target is None:
            return None
        netdevs = self._list(link + "/net")
        return VfFunction(
            index=index,
            address=os.path.basename(target),
            netdev=min(netdevs) if netdevs else None,
            iommu_group=_int_or_none(self._link_name(link + "/iommu_group")),
            driver=self._link_name(link + "/driver"),
        )

    def iommu_group_devices(self, group: int) -> list[str]:
        return sorted(self._list(self.iommu_groups_dir / str(group) / "devices"))

    def upstream_bridges(self, address: str) -> list[str]:
        """PCI bridges between the function and its host bridge, nearest first.

        The real path of ``bus/pci/devices/<bdf>`` runs through them:
        ``devices/pci0000:00/0000:00:1c.0/0000:01:00.0`` (drivers/pci/probe.c names
        each device after its bus/devfn below its parent bridge's device).
        """
        target = self._readlink(self.device_dir(address)) or ""
        parts = target.split("/")[:-1]
        return [part for part in reversed(parts) if _is_pci_address(part)]

    def config(self, address: str) -> bytes:
        """The function's config space; only root reads past the first 64 bytes
        (pci-sysfs.c pci_read_config). Empty when unreadable."""
        return self._read_bytes(self.device_dir(address) / "config")

    def vf_bar_unassigned(self, address: str) -> bool:
        """True when a VF BAR exists but the firmware left it without memory space.

        ``resource`` lines 7-12 are the VF BARs; an unassigned one keeps its flags with
        IORESOURCE_UNSET or a zero start (setup-res.c pci_assign_resource failure).
        """
        text = self._read_text(self.device_dir(address) / "resource")
        if not text:
            return False
        lines = text.splitlines()
        for number in IOV_RESOURCE_LINES:
            if number >= len(lines):
                break
            try:
                start, end, flags = (int(field, 16) for field in lines[number].split()[:3])
            except ValueError:
                continue
            if flags & IORESOURCE_MEM and (flags & IORESOURCE_UNSET or (start == 0 and end)):
                return True
        return False

    def vf_bus_range_short(self, address: str, total_vfs: int) -> bool:
        """True when the bridge above the PF does not route the bus numbers the last VF
        needs (iov.c sriov_enable: "can't enable %d VFs (bus %02x out of range...)").

        VF routing ID = PF routing ID + ``sriov_offset`` + ``sriov_stride`` * (n - 1)
        (PCIe SR-IOV spec 3.3.10-11, iov.c pci_iov_virtfn_bus); the bridge's subordinate
        bus number is config byte 0x1A. Unknown (no offset, no bridge) counts as enough.
        """
        path = self.device_dir(address)
        offset = self._read_int(path / "sriov_offset")
        stride = self._read_int(path / "sriov_stride")
        if offset is None or stride is None or total_vfs <= 0:
            return False
        bus, devfn = _routing_parts(address)
        last_bus = ((bus << 8 | devfn) + offset + stride * (total_vfs - 1)) >> 8
        bridges = self.upstream_bridges(address)
        if not bridges:
            return False
        config = self.config(bridges[0])
        if len(config) < 0x1B:
            return False
        return last_bus > config[0x1A]

    # ------------------------------------------------------------------ writing

    def _write(self, path: Path, text: str) -> None:
        """Write ``text`` to a sysfs attribute with one write(2), so the kernel's
        errno surfaces as OSError here. The single seam tests override."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def describe(self, address: str) -> str:
        """'adapter enp1s0 (0000:01:00.0, driver igb)' for messages."""
        try:
            function = self.function(address)
        except NotFound:
            return f"PCI function {address}"
        name = function.netdev or address
        return f"adapter {name} ({address}, driver {function.driver or 'none'})"

    def set_num_vfs(self, address: str, count: int) -> None:
        """Write ``sriov_numvfs`` with the kernel's rules, then wait for the VFs.

        iov.c sriov_numvfs_store: the same value is a no-op; above ``sriov_totalvfs``
        ERANGE; no driver or one without ``sriov_configure`` ENOENT; non-zero to another
        non-zero EBUSY (0 first); ENOMEM when bus numbers or VF BAR space run out; EIO
        from the device. Each becomes a HardwareError naming the adapter and its driver.
        Returns when the VFs (and, with autoprobe on, their netdevs) exist and a PF
        that had a link has it again; raises ``vf-create-timeout`` when the VFs do not
        appear within ``vf_create_timeout`` seconds. Needs root.
        """
        if count < 0:
            raise InvalidInput("invalid-vf-count", f"VF count {count} is negative")
        function = self.function(address)
        if function.total_vfs is None:
            raise HardwareError(
                "sriov-not-capable",
                f"{self.describe(address)} has no SR-IOV capability",
                "use an SR-IOV capable adapter (lspci -vvv shows 'Single Root I/O "
                "Virtualization'), and a kernel with CONFIG_PCI_IOV",
                errno=errno.ENOENT,  # there is no sriov_numvfs to open
            )
        if count == function.num_vfs:
            return
        netdev = function.netdev
        had_carrier = netdev is not None and self.carrier(netdev) is True
        try:
            self._write(self.device_dir(address) / "sriov_numvfs", str(count))
        except OSError as exc:
            raise self._numvfs_error(function, count, exc) from exc
        actual = self._read_int(self.device_dir(address) / "sriov_numvfs") or 0
        if actual != count:
            # iov.c: a driver's sriov_configure may enable fewer VFs than asked.
            raise HardwareError(
                "vf-count-short",
                f"{self.describe(address)} enabled {actual} VFs instead of {count}",
                "check dmesg for the driver's reason (queue or MSI-X limits)",
            )
        self.wait_for_vfs(address, count)
        if had_carrier and netdev is not None:
            self._wait_for_carrier(netdev)

    def _wait_for_carrier(self, netdev: str) -> None:
        """Give the PF its link back before returning, within ``vf_create_timeout``.

        Some PF drivers reset the port to change the VF count (igb_main.c
        igb_sriov_reinit closes and reopens the netdev), so the link drops for a few
        seconds, and igb refuses VF rates until it is back (igb_ndo_set_vf_bw).
        Returns without error when the bound passes: the VFs exist either way.
        """
        deadline = self._clock() + self.vf_create_timeout
        delay = self.poll_interval
        while self.carrier(netdev) is not True and self._clock() < deadline:
            self._sleep(delay)
            delay = min(delay * 2, 0.5)

    def _numvfs_error(self, function: PciFunction, count: int, exc: OSError) -> HardwareError:
        who = self.describe(function.address)
        driver = function.driver or "none"
        total = function.total_vfs or 0
        code = exc.errno
        if code == errno.ERANGE:
            return HardwareError(
                "vf-count-out-of-range",
                f"{who} supports at most {total} VFs, {count} asked",
                f"choose 0-{total} (sriov_totalvfs)",
                errno=code,
            )
        if code == errno.EBUSY:
            if count == 0:
                return HardwareError(
                    "vf-count-busy",
                    f"{who} refused to remove its VFs: the {driver} driver reports them in use",
                    "detach the VFs from running VMs first",
                    errno=code,
                )
            return HardwareError(
                "vf-count-busy",
                f"{who} already has {function.num_vfs} VFs; the kernel changes the VF count "
                "only from or to 0",
                f"disable its VFs first (write 0), then enable {count}",
                errno=code,
            )
        if code == errno.ENOENT:
            return HardwareError(
                "no-pf-driver",
                f"{who}: no bound driver can configure SR-IOV (needs sriov_configure)",
                f"bind the adapter's PF driver (modprobe; lspci -k -s {function.address})",
                errno=code,
            )
        if code == errno.ENOMEM:
            if self.vf_bus_range_short(function.address, max(count, 1)):
                return HardwareError(
                    "no-bus-resources",
                    f"{who}: not enough PCI bus numbers for {count} VFs",
                    "enable SR-IOV in the BIOS so it reserves bus numbers, or boot with "
                    "pci=assign-busses",
                    errno=code,
                )
            return HardwareError(
                "no-vf-bar-space",
                f"{who}: no memory space for the BARs of {count} VFs",
                "enable 'Above 4G decoding' and SR-IOV in the BIOS, or boot with pci=realloc",
                errno=code,
            )
        if code in (errno.EACCES, errno.EPERM):
            return HardwareError(
                "permission-denied",
                f"not allowed to set the VF count of {who}",
                "run as root",
                errno=code,
            )
        if code == errno.EINVAL:
            return HardwareError(
                "vf-count-rejected",
                f"{who}: the {driver} driver rejected {count} VFs (EINVAL)",
                "check dmesg for the driver's reason",
                errno=code,
            )
        if code == errno.EIO:
            return HardwareError(
                "vf-enable-failed",
                f"{who}: the device failed to enable {count} VFs (EIO)",
                "check dmesg; reloading the driver or resetting the device may help",
                errno=code,
            )
        return HardwareError(
            "vf-count-failed",
            f"{who}: setting {count} VFs failed ({exc.strerror or exc})",
            "check dmesg for the driver's reason",
            errno=code,
        )

    def wait_for_vfs(self, address: str, count: int, timeout: float | None = None) -> None:
        """Poll until the PF shows exactly ``count`` VFs, each ready, or raise.

        A VF is ready when its ``virtfnN`` link exists and, if a network driver got
        bound to it (autoprobe on), its netdev is registered: VF creation and probing
        run asynchronously on some NICs (i40e, mlx5), and the driver link appears
        before the probe registers the netdev (dd.c really_probe). Raises HardwareError
        ``vf-create-timeout`` after ``timeout`` (default ``vf_create_timeout``) seconds.
        """
        bound = self.vf_create_timeout if timeout is None else timeout
        deadline = self._clock() + bound
        delay = self.poll_interval
        autoprobe = self.drivers_autoprobe(address)
        while True:
            pending = self._pending_vfs(address, count, autoprobe)
            if not pending:
                return
            if self._clock() >= deadline:
                raise HardwareError(
                    "vf-create-timeout",
                    f"{self.describe(address)}: {pending} after {bound:g} s",
                    "some NICs need a minute for many VFs: retry with a longer timeout, "
                    "and check dmesg",
                )
            self._sleep(delay)
            delay = min(delay * 2, 0.5)

    def _pending_vfs(self, address: str, count: int, autoprobe: bool) -> str:
        vfs = self.vfs(address)
        if len(vfs) != count:
            return f"{len(vfs)} of {count} VFs present"
        if autoprobe:
            waiting = [
                vf.address
                for vf in vfs
                if vf.driver is not None
                and vf.driver not in NON_NET_VF_DRIVERS
                and vf.netdev is None
            ]
            if waiting:
                return f"VFs {', '.join(waiting)} have no network interface yet"
        return ""

    def set_drivers_autoprobe(self, address: str, enabled: bool) -> None:
        """Whether new VFs get a driver bound (``sriov_drivers_autoprobe``); set it to
        False before enabling VFs meant for vfio-pci. Needs root."""
        try:
            self._write(self.device_dir(address) / "sriov_drivers_autoprobe", str(int(enabled)))
        except OSError as exc:
            raise HardwareError(
                "autoprobe-failed",
                f"cannot set sriov_drivers_autoprobe of {self.describe(address)}: "
                f"{exc.strerror or exc}",
                "run as root; the file exists only on SR-IOV PFs",
                errno=exc.errno,
            ) from exc

    def bind_vfio(self, vf_address: str) -> None:
        """Give a VF to ``vfio-pci``: ``driver_override``, unbind, ``drivers_probe``.

        Idempotent. Raises HardwareError ``no-iommu`` when the VF has no IOMMU group
        (vfio-pci's probe fails with EINVAL without one), ``vfio-pci-missing`` when the
        driver is not loaded, ``vfio-bind-failed`` when the probe did not take it.
        Needs root.
        """
        vf = self.function(vf_address)
        if vf.driver == "vfio-pci":
            return
        path = self.device_dir(vf_address)
        if not self._exists(path / "iommu_group"):
            raise HardwareError(
                "no-iommu",
                f"VF {vf_address} has no IOMMU group, so vfio-pci cannot take it",
                "enable the IOMMU: intel_iommu=on or amd_iommu=on on the kernel command line",
            )
        if not self._exists(self.drivers_dir / "vfio-pci"):
            raise HardwareError(
                "vfio-pci-missing",
                "the vfio-pci driver is not loaded",
                "modprobe vfio-pci",
            )
        self._rebind(vf_address, "vfio-pci")
        if self._link_name(path / "driver") != "vfio-pci":
            raise HardwareError(
                "vfio-bind-failed",
                f"vfio-pci did not bind VF {vf_address}",
                "check dmesg for 'vfio-pci' errors (IOMMU group, interrupt remapping)",
            )

    def bind_default_driver(self, vf_address: str) -> str | None:
        """Hand a VF back to the driver the kernel picks (its net driver); return it.

        Clears ``driver_override``, unbinds, probes. Returns None when no driver took
        the VF (VF driver module not loaded). Idempotent: a VF on a driver other than
        vfio-pci with no override is left alone (a rebind would renumber its netdev
        and take a second). Needs root.
        """
        current = self._link_name(self.device_dir(vf_address) / "driver")
        override = (self._read_text(f"{self.device_dir(vf_address)}/driver_override") or "").strip()
        if current not in (None, "vfio-pci") and override in ("", "(null)"):
            return current
        self._rebind(vf_address, "")
        return self._link_name(self.device_dir(vf_address) / "driver")

    def _rebind(self, vf_address: str, override: str) -> None:
        path = self.device_dir(vf_address)
        try:
            # pci-sysfs.c driver_override_store: a lone newline clears the override.
            self._write(path / "driver_override", override or "\n")
            current = self._link_name(path / "driver")
            if current is not None:
                self._write(self.drivers_dir / current / "unbind", vf_address)
            self._write(self.drivers_probe, vf_address)
        except OSError as exc:
            raise HardwareError(
                "vf-bind-failed",
                f"cannot rebind VF {vf_address} to {override or 'its default driver'}: "
                f"{exc.strerror or exc}",
                "run as root; check dmesg",
                errno=exc.errno,
            ) from exc

    # ------------------------------------------------------------------ helpers

    def _netdevs(self, device: Path) -> list[str]:
        # Net devices of a PCI function sit in its net/ directory, or one level below
        # for drivers that put a bus device in between (virtio-pci: virtioN/net/ethX).
        names = self._list(device / "net")
        if not names:
            for child in self._list(device):
                if child.startswith("virtio"):
                    names.extend(self._list(device / child / "net"))
        return sorted(names)

    # The reading seams: every read of sysfs goes through one of these five, so a
    # test can count what a call touches (one VF must not read the others).

    def _read_text(self, path: StrPath) -> str | None:
        try:
            with open(path, "rb") as file:
                return file.read().decode().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def _read_bytes(self, path: StrPath) -> bytes:
        """The file's bytes; empty when unreadable."""
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError:
            return b""

    def _readlink(self, path: StrPath) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None

    def _list(self, path: StrPath) -> list[str]:
        try:
            return os.listdir(path)
        except OSError:
            return []

    def _exists(self, path: StrPath) -> bool:
        return os.path.exists(path)

    def _read_int(self, path: StrPath) -> int | None:
        text = self._read_text(path)
        if not text:
            return None
        try:
            return int(text, 0)
        except ValueError:
            return None

    def _link_name(self, path: StrPath) -> str | None:
        target = self._readlink(path)
        return None if target is None else os.path.basename(target)


#: "ss.f" of each devfn (slot 5 bits, function 3 bits), for VF address arithmetic.
_DEVFN_NAMES = tuple(f"{devfn >> 3:02x}.{devfn & 7}" for devfn in range(256))


def _hex_id(text: str | None) -> str:
    """'0x8086' -> '8086'."""
    if not text:
        return ""
    return text.lower().removeprefix("0x")


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _is_pci_address(name: str) -> bool:
    """'0000:00:1c.0' (domain:bus:slot.function)."""
    parts = name.split(":")
    return (
        len(parts) == 3
        and len(parts[0]) == 4
        and len(parts[1]) == 2
        and "." in parts[2]
        and all(_is_hex_digits(p) for p in (parts[0], parts[1], *parts[2].split(".")))
    )


def _is_hex_digits(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def _routing_parts(address: str) -> tuple[int, int]:
    """Bus number and devfn of '0000:01:00.0'."""
    _, bus, slot_fn = address.split(":")
    slot, function = slot_fn.split(".")
    return int(bus, 16), int(slot, 16) << 3 | int(function, 16)
