"""The real Linux hardware backend: ``HostHardware`` over sysfs, rtnetlink and pci.ids.

:class:`LinuxHost` composes :class:`~iovctl.adapters.linux.sysfs.SysfsPci` (PFs, VF
count, VF drivers), :class:`~iovctl.adapters.linux.readiness.HostProbe` (host facts),
:class:`~iovctl.adapters.linux.netlink.NetlinkVfs` (VF settings) and
:class:`~iovctl.adapters.linux.pciids.PciIds` (model names), and names adapters the way
admins do: by their PF's network interface (the PCI address when no driver is bound).
NetlinkVfs, and pyroute2 with it, is imported on first use: commands that never
read or write VF settings skip pyroute2's import (tens of milliseconds).

A LinuxHost serves one command: it reads only what a call needs (one adapter by its
name's sysfs link, one VF by its ``virtfnN`` link) and keeps what it read for the
rest of the command: the bus scan for network PFs, each PF and adapter read, and one
VF-settings dump per PF, which its own writes keep current. Its own VF count changes
drop what they invalidate. :meth:`LinuxHost.refresh` (the journal calls it before it
plans, as other commands may have changed the machine meanwhile) drops VF counts,
settings, drivers and names, but keeps for up to ``STABLE_FOR_S`` what only a reboot,
a hot-plug or a module load changes: which functions are network PFs (VF count
changes do not change it) and the host facts (CPU, IOMMU, ACS, firmware). A VM stop
that hands its VFs on thus scans the PCI bus once, not once per pool.

Must not import services, the CLI or other adapters.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING

from iovctl.adapters.linux.pciids import PciIds
from iovctl.adapters.linux.readiness import HostProbe
from iovctl.adapters.linux.sysfs import PciFunction, SysfsPci, VfFunction
from iovctl.domain.drivers import (
    UNSUPPORTED_BY_DRIVER,
    VF_DRIVER,
    VF_RESET_NEEDS_PF_UP,
    VfDriver,
)
from iovctl.domain.model import (
    Adapter,
    HostFacts,
    SriovCapability,
    VfSetting,
    VfSettings,
    VfStats,
    VirtualFunction,
)
from iovctl.errors import (
    HardwareError,
    NotFound,
    UnsupportedVfSetting,
    not_simulated,
    pf_down,
)

if TYPE_CHECKING:
    from iovctl.adapters.linux.netlink import NetlinkVfs, VfInfoList, VfReport

#: 82576 device ids (e1000_hw.h E1000_DEV_ID_82576*): the only igb MAC whose VFs can be
#: rate limited; igb_ndo_set_vf_bw answers EOPNOTSUPP on i350 and the others.
IGB_82576_DEVICES = frozenset({"10c9", "10e6", "10e7", "10e8", "150a", "150d", "1518", "1526"})

#: Queue pairs one VF gets, per PF driver; 1 when unknown (every VF has at least one).
#: igbvf uses 1; ixgbevf 2 with <= 32 VFs (ixgbe_sriov.c), iavf up to 16 (i40e, ice).
#: Settings no IFLA_VF_* attribute carries: no Linux driver can be asked for them.
WITHOUT_NETLINK = frozenset({VfSetting.PVLAN})
VF_QUEUE_PAIRS = {"igb": 1, "ixgbe": 2, "i40e": 4, "ice": 4, "mlx5_core": 8}
#: Seconds :meth:`LinuxHost.refresh` keeps the PF list and the host facts.
STABLE_FOR_S = 10.0


class LinuxHost:
    """SR-IOV hardware of this Linux host (or of a fake tree under ``root``).

    ``vf_create_timeout`` bounds the wait for new VFs. ``sysfs``, ``netlink``,
    ``pci_ids`` and ``probe`` replace the parts built from ``root`` (tests).
    Reading needs no privileges (ACS needs root, see HostProbe.acs); changing the VF
    count, VF settings or VF drivers needs root.
    """

    backend_name = "linux"

    def __init__(
        self,
        root: str | os.PathLike[str] = "/",
        *,
        vf_create_timeout: float = 30.0,
        sysfs: SysfsPci | None = None,
        netlink: NetlinkVfs | None = None,
        pci_ids: PciIds | None = None,
        probe: HostProbe | None = None,
        kernel_release: str | None = None,
    ) -> None:
        self.sysfs = sysfs or SysfsPci(root, vf_create_timeout=vf_create_timeout)
        self._netlink = netlink
        self.pci_ids = pci_ids or PciIds(root)
        self.probe = probe or HostProbe(root, sysfs=self.sysfs, kernel_release=kernel_release)
        # Per-command caches (see the module docstring).
        self._pf_addresses: list[str] | None = None
        self._functions: dict[str, PciFunction] = {}
        self._adapters: dict[str, Adapter] = {}
        self._dumps: dict[str, VfInfoList] = {}
        self._facts: HostFacts | None = None
        #: When the PF list was scanned (time.monotonic), for refresh().
        self._scanned_at = 0.0

    def refresh(self) -> None:
        """Forget what other commands may have changed: the next call reads it again.
        The PF list and host facts stay for up to STABLE_FOR_S (module docstring)."""
        if time.monotonic() - self._scanned_at > STABLE_FOR_S:
            self._pf_addresses = None
            self._facts = None
        self._functions.clear()
        self._adapters.clear()
        self._dumps.clear()

    def _forget_pf(self, address: str) -> None:
        """After a VF count change: the PF, its adapter, its VF settings and (its VFs
        having moved) the bus scan are read again."""
        self._pf_addresses = None
        self._functions.pop(address, None)
        self._adapters.pop(address, None)
        self._dumps.pop(address, None)

    @property
    def netlink(self) -> NetlinkVfs:
        """VF settings over rtnetlink; the default one is built (and pyroute2 imported)
        on first use."""
        if self._netlink is None:
            from iovctl.adapters.linux.netlink import NetlinkVfs

            self._netlink = NetlinkVfs()
        return self._netlink

    # ------------------------------------------------------------------ PciBus

    def host_facts(self) -> HostFacts:
        if self._facts is None:
            self._facts = self.probe.facts(self._network_pfs())
        return self._facts

    def adapters(self) -> list[Adapter]:
        """Every network PF, named by its interface (PCI address when it has none)."""
        return sorted((self._adapter(pf) for pf in self._network_pfs()), key=lambda a: a.name)

    def adapter(self, name: str) -> Adapter:
        """One adapter; raises NotFound ``unknown-adapter``."""
        return self._adapter(self._pf(name))

    def set_num_vfs(self, adapter: str, count: int) -> None:
        """See PciBus.set_num_vfs; errors come from SysfsPci.set_num_vfs. Needs root.

        VFs are enabled on a PF that is administratively up: an Intel VF driver
        (igbvf, ixgbevf) completes its reset only through the PF's mailbox, which the
        PF driver serves only while its netdev is open (igb sets CTRL_EXT.PFRSTD in
        igb_open; until then the VF's mailbox shows RSTI). A VF that resets while its
        PF is down, at probe here or in a VM, says "PF still in reset state" and takes
        a random MAC as its permanent address, so a VM's net_failover never teams it
        with the NIC's virtio half. So a PF that is down is brought up first.
        """
        pf = self._pf(adapter)
        address = pf.address
        if count > 0 and pf.netdev and self.sysfs.admin_up(pf.netdev) is False:
            self.netlink.set_up(self._ifindex(pf), pf.netdev)
        try:
            self.sysfs.set_num_vfs(address, count)
        finally:
            self._forget_pf(address)

    def virtual_functions(self, adapter: str) -> list[VirtualFunction]:
        """The adapter's VFs in index order, with the settings the PF driver reports."""
        pf = self._pf(adapter)
        vfs = self.sysfs.vfs(pf.address)
        if not vfs:
            return []
        listing = self._dump(pf)
        reports = {report.index: report for report in listing.reports()} if listing else {}
        return [self._virtual_function(pf, vf, reports.get(vf.index)) for vf in vfs]

    def virtual_function(self, adapter: str, index: int) -> VirtualFunction:
        """One VF with its settings; HardwareError ``vf-not-found`` if out of range.

        Reads that VF's ``virtfnN`` link only; its settings come from the PF's one
        RTM_GETLINK of this command (rtnetlink has no per-VF read), parsed for it alone.
        """
        pf = self._pf(adapter)
        vf = self.sysfs.vf(pf.address, index) if index >= 0 else None
        if vf is None:
            raise self._no_vf(pf, index)
        listing = self._dump(pf)
        return self._virtual_function(pf, vf, listing.report(index) if listing else None)

    @staticmethod
    def _virtual_function(
        pf: PciFunction, vf: VfFunction, report: VfReport | None
    ) -> VirtualFunction:
        return VirtualFunction(
            adapter=_name(pf),
            index=vf.index,
            pci_address=vf.address,
            netdev=vf.netdev,
            iommu_group=vf.iommu_group,
            settings=report.settings if report is not None else VfSettings(),
        )

    # ------------------------------------------------------------------ VfConfigurator

    def unsupported_vf_settings(self, adapter: str) -> frozenset[VfSetting]:
        return (self._unsupported(self._pf(adapter)) or frozenset()) | WITHOUT_NETLINK

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        """See VfConfigurator.set_vf_settings; one RTM_NEWLINK (NetlinkVfs.write).
        Needs root."""
        pf = self._pf(adapter)
        name = _name(pf)
        if not 0 <= index < pf.num_vfs:
            raise self._no_vf(pf, index)
        if settings.pvlan is not None:  # nothing to send it with: refused before sending
            raise UnsupportedVfSetting(
                pf.driver or "unknown", VfSetting.PVLAN.label, errno=errno.EOPNOTSUPP
            )
        ifindex = self._ifindex(pf)
        try:
            self.netlink.write(
                ifindex,
                index,
                settings,
                adapter=name,
                driver=pf.driver or "unknown",
                unsupported=self._unsupported(pf),
                current=self._dump(pf),
            )
        except BaseException:
            # A refusal may have applied part of the request (do_setvfinfo): read again.
            self._dumps.pop(pf.address, None)
            raise

    # ------------------------------------------------------------------ VfCounters

    def vf_stats(self, adapter: str) -> dict[int, VfStats]:
        """Every VF's counters from the PF (NetlinkVfs.stats), read anew each call
        (they move: not kept for the command). {} without VFs or without a PF netdev.
        Drivers without ndo_get_vf_stats (igb, ixgbe) report zeros."""
        pf = self._pf(adapter)
        if pf.netdev is None or not pf.num_vfs:
            return {}
        return self.netlink.stats(self._ifindex(pf), _name(pf))

    # ------------------------------------------------------------------ VF drivers

    def set_vf_drivers_autoprobe(self, adapter: str, enabled: bool) -> None:
        """Whether VFs created from now on get their driver bound. Needs root."""
        self.sysfs.set_drivers_autoprobe(self._pf(adapter).address, enabled)

    def bind_vf_to_vfio(self, adapter: str, index: int) -> None:
        """Hand VF ``index`` to vfio-pci (see SysfsPci.bind_vfio). Needs root."""
        self.sysfs.bind_vfio(self._vf_address(adapter, index))

    def bind_vf_to_default_driver(self, adapter: str, index: int) -> str | None:
        """Give VF ``index`` back to its net driver; returns the driver bound or None."""
        return self.sysfs.bind_default_driver(self._vf_address(adapter, index))

    def bind_vf_driver(self, adapter: str, index: int, driver: VfDriver) -> str | None:
        """See VfDrivers.bind_vf_driver: ``driver_override`` + ``unbind`` +
        ``drivers_probe`` (SysfsPci.bind_vfio / bind_default_driver). Needs root.

        Refused (``pf-down``) while a PF whose driver answers VF resets only when up
        (``VF_RESET_NEEDS_PF_UP``) is administratively down: the VF resets on its way
        to its user (its driver's probe here, the guest's behind vfio-pci)."""
        pf = self._pf(adapter)
        if (
            pf.driver in VF_RESET_NEEDS_PF_UP
            and pf.netdev
            and self.sysfs.admin_up(pf.netdev) is False
        ):
            raise pf_down(pf.netdev, pf.driver, self.virtual_function(adapter, index).pci_address)
        if driver is VfDriver.VFIO:
            self.bind_vf_to_vfio(adapter, index)
            return "vfio-pci"
        return self.bind_vf_to_default_driver(adapter, index)

    def power_cycle(self) -> None:
        """A real host is not power-cycled by iovctl: Conflict ``not-simulated``."""
        raise not_simulated(self.backend_name)

    def close(self) -> None:
        """Close the command's netlink socket, if one was opened."""
        if self._netlink is not None:
            self._netlink.close()

    # ------------------------------------------------------------------ helpers

    def _network_pfs(self) -> list[PciFunction]:
        if self._pf_addresses is None:
            self._pf_addresses = self.sysfs.network_pf_addresses()
            self._scanned_at = time.monotonic()
        return [self._function(address) for address in self._pf_addresses]

    def _function(self, address: str) -> PciFunction:
        function = self._functions.get(address)
        if function is None:
            function = self._functions[address] = self.sysfs.function(address)
        return function

    def _pf(self, name: str) -> PciFunction:
        """The network PF named ``name`` (interface or PCI address), looked up by its
        sysfs link, not by scanning the bus; NotFound ``unknown-adapter``."""
        address = self.sysfs.pf_address(name)
        if address is not None:
            try:
                pf = self._function(address)
            except NotFound:
                pf = None
            if pf is not None and pf.is_network and not pf.is_vf and name in (_name(pf), address):
                return pf
        pfs = self._network_pfs()
        known = ", ".join(sorted(_name(pf) for pf in pfs)) or "none"
        raise NotFound(
            "unknown-adapter",
            f"no physical network adapter named {name!r} on this host",
            f"known adapters: {known} (iovctl adapter list)",
        )

    def _adapter(self, pf: PciFunction) -> Adapter:
        adapter = self._adapters.get(pf.address)
        if adapter is None:
            adapter = self._adapters[pf.address] = self._read_adapter(pf)
        return adapter

    def _read_adapter(self, pf: PciFunction) -> Adapter:
        netdev = pf.netdev
        return Adapter(
            name=_name(pf),
            pci_address=pf.address,
            vendor_id=pf.vendor_id,
            device_id=pf.device_id,
            driver=pf.driver,
            model=self.pci_ids.model(pf.vendor_id, pf.device_id),
            link_speed_mbps=self.sysfs.link_speed(netdev) if netdev else None,
            numa_node=pf.numa_node,
            mac=self.sysfs.mac(netdev) if netdev else "",
            sriov=self._capability(pf),
            num_vfs=pf.num_vfs,
        )

    def _capability(self, pf: PciFunction) -> SriovCapability | None:
        if pf.total_vfs is None:
            return None
        per_vf = VF_QUEUE_PAIRS.get(pf.driver or "", 1)
        vf_driver = VF_DRIVER.get(pf.driver or "", "")
        if not vf_driver:  # a PF driver the table does not know: ask its first bound VF
            found = (self.sysfs.vf(pf.address, i) for i in range(pf.num_vfs))
            vf_driver = next((vf.driver for vf in found if vf is not None and vf.driver), "")
        return SriovCapability(
            total_vfs=pf.total_vfs,
            queue_pairs=pf.total_vfs * per_vf,
            max_queue_pairs_per_vf=per_vf,
            vf_driver=vf_driver,
            vf_device_id=pf.vf_device_id,
            unsupported=(self._unsupported(pf) or frozenset()) | WITHOUT_NETLINK,
            bus_resources=not self.sysfs.vf_bus_range_short(pf.address, pf.total_vfs),
            vf_bar_space=not self.sysfs.vf_bar_unassigned(pf.address),
        )

    @staticmethod
    def _unsupported(pf: PciFunction) -> frozenset[VfSetting] | None:
        """The driver table's refusals for this PF, refined by device; None when the
        table does not know the driver (then the kernel's errno decides)."""
        table = UNSUPPORTED_BY_DRIVER.get(pf.driver or "")
        if table is None:
            return None
        if pf.driver == "igb" and pf.device_id not in IGB_82576_DEVICES:
            return table | {VfSetting.MAX_RATE}
        return table

    def _dump(self, pf: PciFunction) -> VfInfoList | None:
        """The PF's VF settings, one RTM_GETLINK per command; None without a netdev."""
        if pf.netdev is None:
            return None
        listing = self._dumps.get(pf.address)
        if listing is None:
            listing = self._dumps[pf.address] = self.netlink.dump(self._ifindex(pf), _name(pf))
        return listing

    def _ifindex(self, pf: PciFunction) -> int:
        ifindex = self.sysfs.ifindex(pf.netdev) if pf.netdev else None
        if ifindex is None:
            raise HardwareError(
                "no-pf-netdev",
                f"adapter {_name(pf)} has no network interface, so its VFs cannot be configured",
                f"bind its PF driver ({pf.driver or 'none bound'}); check: lspci -k -s {pf.address}",
            )
        return ifindex

    def _vf_address(self, adapter: str, index: int) -> str:
        pf = self._pf(adapter)
        vf = self.sysfs.vf(pf.address, index) if index >= 0 else None
        if vf is None:
            raise self._no_vf(pf, index)
        return vf.address

    @staticmethod
    def _no_vf(pf: PciFunction, index: int) -> HardwareError:
        name = _name(pf)
        return HardwareError(
            "vf-not-found",
            f"adapter {name} has no VF {index} ({pf.num_vfs} VFs enabled)",
            f"VF indexes run from 0 to {pf.num_vfs - 1}"
            if pf.num_vfs
            else f"enable VFs first: iovctl adapter enable {name}",
            errno=errno.EINVAL,  # what rtnetlink answers for vf >= num_vfs
        )


def _name(pf: PciFunction) -> str:
    return pf.netdev or pf.address
