"""SysfsPci subclasses that stand in for the kernel at the one write seam (``_write``).

A plain file cannot refuse a write with ERANGE or create VF devices, so these override
:meth:`SysfsPci._write`: :class:`ErrnoSysfs` raises the errno a test injects,
:class:`KernelSysfs` applies the write to the fake tree the way drivers/pci/iov.c and
pci-sysfs.c would (creating VFs, binding drivers).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iovctl.adapters.linux.sysfs import StrPath, SysfsPci

from .sysfs_tree import PfSpec, Tree, VfSpec, vf_address


class ErrnoSysfs(SysfsPci):
    """Every write to a file named in ``errors`` fails with that errno."""

    def __init__(self, root: Path, errors: dict[str, int], **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.errors = errors
        self.writes: list[tuple[str, str]] = []

    def _write(self, path: Path, text: str) -> None:
        self.writes.append((path.name, text))
        if path.name in self.errors:
            code = self.errors[path.name]
            raise OSError(code, errno.errorcode[code], str(path))
        path.write_text(text)


class KernelSysfs(SysfsPci):
    """Writes behave like the kernel's on the fake tree.

    ``sriov_numvfs``: the iov.c rules, then VFs appear (``vf_netdevs``: with their
    netdevs; ``vfs_appear=False``: never, as a NIC that hangs), bound to ``vf_driver``;
    ``on_num_vfs(pf, count)`` tells the PF driver's other face (a fake rtnetlink) that
    the count changed. ``driver_override`` / ``unbind`` / ``drivers_probe``: rebinding,
    vfio-pci failing without an IOMMU group.
    """

    def __init__(
        self,
        tree: Tree,
        *,
        vfs_appear: bool = True,
        vf_netdevs: bool = True,
        link_bounce: bool = False,
        vf_driver: str = "igbvf",
        on_num_vfs: Callable[[PfSpec, int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tree.root, **kwargs)
        self.tree = tree
        self.vfs_appear = vfs_appear
        self.vf_netdevs = vf_netdevs
        #: Drop the PF's carrier on a VF count change, like igb_sriov_reinit.
        self.link_bounce = link_bounce
        self.vf_driver = vf_driver
        self.on_num_vfs = on_num_vfs
        self.writes: list[tuple[str, str]] = []

    def _pf(self, path: Path) -> PfSpec:
        address = path.parent.name
        return next(pf for pf in self.tree.spec.pfs if pf.address == address)

    def _write(self, path: Path, text: str) -> None:
        self.writes.append((path.name, text))
        if path.name == "sriov_numvfs":
            self._numvfs(path, int(text))
        elif path.name == "sriov_drivers_autoprobe":
            path.write_text(text + "\n")
        elif path.name == "driver_override":
            path.write_text((text.strip() or "(null)") + "\n")
        elif path.name == "unbind":
            self.tree.unbind(text)
        elif path.name == "drivers_probe":
            self._probe(text)
        else:
            raise OSError(errno.EACCES, "not emulated", str(path))

    def _numvfs(self, path: Path, count: int) -> None:
        pf = self._pf(path)
        current = int(path.read_text())
        total = pf.total_vfs or 0
        if count == current:  # iov.c: same value, nothing to do
            return
        if count > total:
            raise OSError(errno.ERANGE, "Numerical result out of range")
        if pf.driver is None:
            raise OSError(errno.ENOENT, "No such file or directory")
        if count and current:
            raise OSError(errno.EBUSY, "Device or resource busy")
        if self.link_bounce and pf.netdev is not None:
            self.tree.set_carrier(pf.netdev, "0")
        if self.on_num_vfs is not None:
            self.on_num_vfs(pf, count)
        if count == 0:
            self.tree.remove_vfs(pf)
            self.tree.set_numvfs_file(pf, 0)
            return
        self.tree.set_numvfs_file(pf, count)
        if not self.vfs_appear:
            return
        autoprobe = (path.parent / "sriov_drivers_autoprobe").read_text().strip() == "1"
        # One IOMMU group per VF (ACS below the root port); the first PF's from 30.
        groups = 30 + 4096 * self.tree.spec.pfs.index(pf)
        for index in range(count):
            self.tree.add_vf(
                pf,
                VfSpec(
                    index,
                    vf_address(pf, index),
                    netdev=f"{pf.netdev}v{index}" if autoprobe and self.vf_netdevs else None,
                    iommu_group=groups + index,
                    driver=self.vf_driver if autoprobe else None,
                ),
            )

    def _probe(self, address: str) -> None:
        path = self.tree.device_path(address)
        override = (path / "driver_override").read_text().strip()
        if override == "vfio-pci":
            # vfio_pci_probe -> vfio_iommu_group_get fails (-EINVAL) without a group.
            if (path / "iommu_group").exists():
                self.tree.bind(address, "vfio-pci")
            return
        self.tree.bind(address, self.vf_driver)


class CountingSysfs(KernelSysfs):
    """KernelSysfs that records every path it reads (file, link, directory, stat)."""

    def __init__(self, tree: Tree, **kwargs: Any) -> None:
        super().__init__(tree, **kwargs)
        self.touched: list[str] = []

    def _read_text(self, path: StrPath) -> str | None:
        self.touched.append(str(path))
        return super()._read_text(path)

    def _read_bytes(self, path: StrPath) -> bytes:
        self.touched.append(str(path))
        return super()._read_bytes(path)

    def _readlink(self, path: StrPath) -> str | None:
        self.touched.append(str(path))
        return super()._readlink(path)

    def _list(self, path: StrPath) -> list[str]:
        self.touched.append(str(path))
        return super()._list(path)

    def _exists(self, path: StrPath) -> bool:
        self.touched.append(str(path))
        return super()._exists(path)
