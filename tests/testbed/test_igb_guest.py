"""Smoke test of the testbed guest: the real igb/igbvf drivers on QEMU's 82576.

Runs only inside the guest (``bash tests/testbed/run``), through plain sysfs and
one rtnetlink read, so it checks the testbed itself rather than iovctl code.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

pytestmark = pytest.mark.testbed

PCI_DEVICES = Path("/sys/bus/pci/devices")
IOMMU_GROUPS = Path("/sys/kernel/iommu_groups")
IGB_TOTAL_VFS = 7
IGB_VF_DEVICE_ID = "0x10ca"  # 82576 Virtual Function
VF_COUNT = 4
TIMEOUT_S = 60.0  # bound for asynchronous VF probing under TCG (measured: a few s)

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = TIMEOUT_S) -> T:
    """Polls ``probe`` until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def driver_name(dev: Path) -> str | None:
    link = dev / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def read(path: Path) -> str:
    return path.read_text().strip()


def write_numvfs(pf: Path, count: int | str) -> None:
    """Writes ``sriov_numvfs`` with one write(2) so errors surface as OSError(errno)."""
    fd = os.open(pf / "sriov_numvfs", os.O_WRONLY)
    try:
        os.write(fd, f"{count}\n".encode())
    finally:
        os.close(fd)


def virtfns(pf: Path) -> list[Path]:
    links = sorted(pf.glob("virtfn*"), key=lambda p: int(p.name.removeprefix("virtfn")))
    return [link.resolve() for link in links]


def vf_ready(vf: Path) -> bool:
    """A VF is ready when igbvf is bound and its netdev exists."""
    return driver_name(vf) == "igbvf" and any((vf / "net").glob("*"))


def set_numvfs_and_wait(pf: Path, count: int) -> list[Path]:
    write_numvfs(pf, count)
    if count == 0:
        wait_for("the VFs to disappear", lambda: not list(pf.glob("virtfn*")))
        return []
    vfs = wait_for(f"{count} virtfn links", lambda: len(virtfns(pf)) == count and virtfns(pf))
    wait_for(f"{count} VFs bound to igbvf with netdevs", lambda: all(map(vf_ready, vfs)))
    return vfs


def igb_pfs() -> list[Path]:
    return sorted(d for d in PCI_DEVICES.iterdir() if driver_name(d) == "igb")


@pytest.fixture
def pf() -> Iterator[Path]:
    """The first igb PF with no VFs; leaves it with no VFs."""
    pfs = igb_pfs()
    assert pfs, "no PCI device is bound to the igb driver"
    dev = pfs[0]
    if read(dev / "sriov_numvfs") != "0":
        set_numvfs_and_wait(dev, 0)
    yield dev
    set_numvfs_and_wait(dev, 0)


@pytest.fixture
def vfs(pf: Path) -> list[Path]:
    """Four VFs on ``pf``, bound to igbvf, with netdevs."""
    return set_numvfs_and_wait(pf, VF_COUNT)


def test_igb_pf_offers_seven_vfs(pf: Path) -> None:
    assert driver_name(pf) == "igb"
    assert read(pf / "vendor") == "0x8086"
    assert read(pf / "sriov_totalvfs") == str(IGB_TOTAL_VFS)
    assert read(pf / "sriov_numvfs") == "0"
    assert list((pf / "net").iterdir()), "the igb PF has no netdev"


def test_enabling_four_vfs_creates_virtfn_links(pf: Path, vfs: list[Path]) -> None:
    assert read(pf / "sriov_numvfs") == str(VF_COUNT)
    assert sorted(p.name for p in pf.glob("virtfn*")) == [f"virtfn{i}" for i in range(VF_COUNT)]
    for vf in vfs:
        assert read(vf / "device") == IGB_VF_DEVICE_ID
        assert (vf / "physfn").resolve() == pf.resolve()
        assert driver_name(vf) == "igbvf"


def test_changing_count_while_enabled_is_ebusy(pf: Path, vfs: list[Path]) -> None:
    with pytest.raises(OSError) as exc:
        write_numvfs(pf, 2)
    assert exc.value.errno == errno.EBUSY
    assert read(pf / "sriov_numvfs") == str(VF_COUNT)


def test_count_above_total_is_erange(pf: Path) -> None:
    with pytest.raises(OSError) as exc:
        write_numvfs(pf, 99)
    assert exc.value.errno == errno.ERANGE
    assert read(pf / "sriov_numvfs") == "0"


def test_zero_removes_the_vfs(pf: Path, vfs: list[Path]) -> None:
    set_numvfs_and_wait(pf, 0)
    assert read(pf / "sriov_numvfs") == "0"
    assert not any(vf.exists() for vf in vfs)


@pytest.mark.skipif(os.environ.get("IOVCTL_TESTBED_IOMMU") != "1", reason="booted without IOMMU")
def test_each_vf_has_its_own_iommu_group(pf: Path, vfs: list[Path]) -> None:
    groups = [os.readlink(vf / "iommu_group") for vf in vfs]
    assert len(set(groups)) == VF_COUNT, groups
    for vf, group in zip(vfs, groups, strict=True):
        members = list((IOMMU_GROUPS / os.path.basename(group) / "devices").iterdir())
        assert [m.name for m in members] == [vf.name]


@pytest.mark.skipif(os.environ.get("IOVCTL_TESTBED_IOMMU") != "0", reason="booted with IOMMU")
def test_without_iommu_there_are_no_groups(pf: Path, vfs: list[Path]) -> None:
    assert not list(IOMMU_GROUPS.iterdir())
    assert not any((vf / "iommu_group").exists() for vf in vfs)


def test_pyroute2_reports_the_vfs(pf: Path, vfs: list[Path]) -> None:
    from pyroute2 import IPRoute

    (netdev,) = (pf / "net").iterdir()
    index = int(read(netdev / "ifindex"))
    with IPRoute() as ipr:
        (msg,) = ipr.link("get", index=index, ext_mask=1)  # RTEXT_FILTER_VF
    assert msg.get_attr("IFLA_NUM_VF") == VF_COUNT
    vfinfo = msg.get_attr("IFLA_VFINFO_LIST")
    assert vfinfo is not None, "no IFLA_VFINFO_LIST in the reply"
    infos = vfinfo.get_attrs("IFLA_VF_INFO")
    assert len(infos) == VF_COUNT
    assert sorted(info.get_attr("IFLA_VF_MAC")["vf"] for info in infos) == list(range(VF_COUNT))
