"""What one LinuxHost call reads: one VF without the others, one adapter without the
bus, one RTM_GETLINK per PF per command. A regression to a full rescan fails here."""

from __future__ import annotations

from pathlib import Path

from pyroute2 import IPRoute

from iovctl.adapters.linux.host import LinuxHost
from iovctl.adapters.linux.netlink import NetlinkVfs
from iovctl.domain.model import SCRUBBED

from .fake_host import fake_linux_host
from .fake_rtnl import FakeRtnl, FakeVf
from .kernel_seams import CountingSysfs
from .sysfs_tree import DeviceSpec, PfSpec, Tree, VfSpec, build, igb_host, vf_address

TENANT = SCRUBBED.with_(mac="52:54:00:aa:00:01", vlan=20, trust=True, max_rate=100)


def two_pf_host(tmp_path: Path) -> tuple[LinuxHost, CountingSysfs, Tree, FakeRtnl]:
    """enp1s0 (igb, 7 VFs) and enp2s0 (igb, 7 VFs) behind their own root ports."""
    spec = igb_host(num_vfs=7)
    other = PfSpec(
        address="0000:03:00.0", netdev="enp2s0", ifindex=4, num_vfs=7, bridge="0000:00:03.0"
    )
    other.vfs = [
        VfSpec(i, vf_address(other, i), netdev=f"enp2s0v{i}", iommu_group=60 + i) for i in range(7)
    ]
    spec.pfs.append(other)
    spec.devices.append(DeviceSpec("0000:00:1f.2", "0x010601", "ahci"))
    tree = build(tmp_path, spec)
    fake = FakeRtnl(7)
    fake.add_pf(4, "enp2s0", 7)
    sysfs = CountingSysfs(tree, vf_create_timeout=2, poll_interval=0.01)
    host = LinuxHost(
        tmp_path,
        sysfs=sysfs,
        netlink=NetlinkVfs(lambda: IPRoute(use_socket=fake)),
        kernel_release=spec.kernel_release,
    )
    return host, sysfs, tree, fake


def vf_paths(touched: list[str], pf: PfSpec, but: int | None = None) -> list[str]:
    """Touched paths that belong to one of ``pf``'s VFs other than VF ``but``."""
    out = []
    for vf in pf.vfs:
        if vf.index == but:
            continue
        link = f"{pf.address}/virtfn{vf.index}"
        out += [p for p in touched if vf.address in p or p.endswith(link) or f"{link}/" in p]
    return out


def test_one_vf_reads_that_vf_only(tmp_path: Path) -> None:
    host, sysfs, tree, fake = two_pf_host(tmp_path)
    fake.vfs[3] = FakeVf(vlan=9)

    vf = host.virtual_function("enp1s0", 3)

    assert (vf.index, vf.settings.vlan, vf.netdev) == (3, 9, "enp1s0v3")
    pf, other = tree.spec.pfs
    assert vf_paths(sysfs.touched, pf, but=3) == []
    assert vf_paths(sysfs.touched, other) == []
    assert not any(p.endswith("bus/pci/devices") for p in sysfs.touched)  # no bus scan
    assert len(sysfs.touched) <= 20, sysfs.touched
    assert fake.recorded.get_indexes == [3]  # one RTM_GETLINK, for this PF


def test_one_adapter_without_scanning_the_bus(tmp_path: Path) -> None:
    host, sysfs, tree, _ = two_pf_host(tmp_path)

    adapter = host.adapter("enp2s0")

    assert (adapter.name, adapter.num_vfs) == ("enp2s0", 7)
    assert not any(p.endswith("bus/pci/devices") for p in sysfs.touched)
    pf, other = tree.spec.pfs
    assert not [p for p in sysfs.touched if pf.address in p or "0000:00:1f.2" in p]
    assert vf_paths(sysfs.touched, other) == []
    assert len(sysfs.touched) <= 25, sysfs.touched


def test_by_pci_address_too(tmp_path: Path) -> None:
    host, sysfs, _, _ = two_pf_host(tmp_path)
    assert host.adapter("0000:03:00.0").name == "enp2s0"
    assert not any(p.endswith("bus/pci/devices") for p in sysfs.touched)


def test_the_bus_scan_reads_no_vf(tmp_path: Path) -> None:
    host, sysfs, tree, _ = two_pf_host(tmp_path)

    assert [a.name for a in host.adapters()] == ["enp1s0", "enp2s0"]

    for pf in tree.spec.pfs:
        assert vf_paths(sysfs.touched, pf) == []


def test_a_command_reads_each_pf_once(tmp_path: Path) -> None:
    """What ``vm start`` does to a PF: grant two VFs, read them back, list the VFs."""
    host, sysfs, _, fake = two_pf_host(tmp_path)

    host.set_vf_settings("enp1s0", 1, TENANT)
    assert host.virtual_function("enp1s0", 1).settings == TENANT
    host.set_vf_settings("enp1s0", 2, TENANT.with_(mac="52:54:00:aa:00:02"))
    listed = host.virtual_functions("enp1s0")
    host.adapter("enp1s0")
    reads = len(sysfs.touched)
    host.adapter("enp1s0")

    assert [vf.settings.mac for vf in listed[:3]] == [
        SCRUBBED.mac,
        "52:54:00:aa:00:01",
        "52:54:00:aa:00:02",
    ]
    assert fake.recorded.get_indexes == [3]  # one dump for the whole command
    assert len(fake.recorded.set_requests) == 2
    assert len(sysfs.touched) - reads <= 2  # the adapter again: its name's link only
    # What the command's cache says is what the kernel says.
    host.refresh()
    assert host.virtual_functions("enp1s0") == listed
    assert fake.recorded.get_indexes == [3, 3]


def test_a_refused_write_drops_the_dump(tmp_path: Path) -> None:
    from iovctl.errors import HardwareError

    host, _, _, fake = two_pf_host(tmp_path)
    fake.rules.link_up = False  # igb refuses rates while the link is down
    try:
        host.set_vf_settings("enp1s0", 1, TENANT)
    except HardwareError:
        pass
    else:
        raise AssertionError("igb took a rate with the link down")
    # MAC and VLAN went in before the rate was refused (do_setvfinfo's order).
    assert host.virtual_function("enp1s0", 1).settings.mac == TENANT.mac
    assert fake.recorded.get_indexes[-1] == 3 and len(fake.recorded.get_indexes) >= 2


def test_set_num_vfs_invalidates(tmp_path: Path) -> None:
    host, _, _ = fake_linux_host(tmp_path, igb_host(), CountingSysfs)
    assert host.adapter("enp1s0").num_vfs == 0
    assert host.virtual_functions("enp1s0") == []

    host.set_num_vfs("enp1s0", 4)

    assert host.adapter("enp1s0").num_vfs == 4
    assert [vf.index for vf in host.virtual_functions("enp1s0")] == [0, 1, 2, 3]
    assert host.virtual_function("enp1s0", 3).settings == SCRUBBED
    host.set_num_vfs("enp1s0", 0)
    assert host.adapter("enp1s0").num_vfs == 0
    assert host.virtual_functions("enp1s0") == []
