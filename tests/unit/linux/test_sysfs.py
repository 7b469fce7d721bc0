"""SysfsPci on fake sysfs trees: inventory, the VF count and its errno, waiting, VF drivers."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from iovctl.adapters.linux.sysfs import StrPath, SysfsPci
from iovctl.errors import HardwareError, InvalidInput, NotFound

from .kernel_seams import ErrnoSysfs, KernelSysfs
from .sysfs_tree import DeviceSpec, HostSpec, PfSpec, VfSpec, build, igb_host, port_config

# ---------------------------------------------------------------------------- inventory


def test_network_pfs_exclude_vfs_and_other_classes(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=2)
    spec.devices.append(DeviceSpec("0000:00:1f.2", "0x010601", driver="ahci"))
    build(tmp_path, spec)
    sysfs = SysfsPci(tmp_path)

    pfs = sysfs.network_pfs()

    assert [pf.address for pf in pfs] == ["0000:01:00.0"]
    # The VFs are network functions too, but carry a physfn link.
    vf = sysfs.function("0000:01:10.0")
    assert vf.is_network and vf.is_vf


def test_pf_fields(tmp_path: Path) -> None:
    build(tmp_path, igb_host(num_vfs=2))
    pf = SysfsPci(tmp_path).function("0000:01:00.0")

    assert (pf.vendor_id, pf.device_id, pf.vf_device_id) == ("8086", "10c9", "10ca")
    assert pf.driver == "igb"
    assert pf.netdev == "enp1s0"
    assert (pf.total_vfs, pf.num_vfs) == (7, 2)
    assert not pf.is_vf


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"driver": None, "netdev": None}, "driver", None),
        ({"numa_node": "-1"}, "numa_node", 0),
        ({"numa_node": "1"}, "numa_node", 1),
        ({"total_vfs": None}, "total_vfs", None),
        ({"total_vfs": None}, "num_vfs", 0),
    ],
)
def test_pf_field_edge_cases(
    tmp_path: Path, changes: dict[str, Any], field: str, expected: object
) -> None:
    build(tmp_path, igb_host(**changes))
    pf = SysfsPci(tmp_path).function("0000:01:00.0")
    assert getattr(pf, field) == expected


@pytest.mark.parametrize(
    ("speed", "expected"), [("1000", 1000), ("-1", None), ("0", None), (None, None)]
)
def test_link_speed_unknown_is_none_not_zero(
    tmp_path: Path, speed: str | None, expected: int | None
) -> None:
    build(tmp_path, igb_host(speed=speed))
    assert SysfsPci(tmp_path).link_speed("enp1s0") == expected


def test_mac_and_ifindex(tmp_path: Path) -> None:
    build(tmp_path, igb_host(ifindex=7))
    sysfs = SysfsPci(tmp_path)
    assert sysfs.mac("enp1s0") == "52:54:00:12:34:56"
    assert sysfs.ifindex("enp1s0") == 7


def test_netdev_below_a_bus_device(tmp_path: Path) -> None:
    """virtio-pci puts the net device at <pci>/virtio2/net/eth0."""
    spec = HostSpec(
        pfs=[
            PfSpec(
                address="0000:00:03.0",
                netdev="eth0",
                driver="virtio-pci",
                total_vfs=None,
                bridge=None,
                nested_netdev_parent="virtio2",
            )
        ]
    )
    build(tmp_path, spec)
    assert SysfsPci(tmp_path).function("0000:00:03.0").netdev == "eth0"


def test_vfs_in_index_order_with_netdev_and_group(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=3)
    spec.pfs[0].vfs[1] = VfSpec(1, "0000:01:10.2", netdev=None, iommu_group=None, driver=None)
    build(tmp_path, spec)

    vfs = SysfsPci(tmp_path).vfs("0000:01:00.0")

    assert [(vf.index, vf.address) for vf in vfs] == [
        (0, "0000:01:10.0"),
        (1, "0000:01:10.2"),
        (2, "0000:01:10.4"),
    ]
    assert (vfs[0].netdev, vfs[0].iommu_group, vfs[0].driver) == ("enp1s0v0", 20, "igbvf")
    assert (vfs[1].netdev, vfs[1].iommu_group, vfs[1].driver) == (None, None, None)


def test_more_than_ten_vfs_sort_numerically(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=0, total_vfs=12)
    pf = spec.pfs[0]
    pf.num_vfs = 12
    pf.vfs = [VfSpec(i, f"0000:01:{0x10 + i // 4:02x}.{(i % 4) * 2}") for i in range(12)]
    build(tmp_path, spec)
    assert [vf.index for vf in SysfsPci(tmp_path).vfs(pf.address)] == list(range(12))


def test_unknown_function_is_not_found(tmp_path: Path) -> None:
    build(tmp_path, igb_host())
    with pytest.raises(NotFound):
        SysfsPci(tmp_path).function("0000:09:00.0")


def test_upstream_bridges_follow_the_device_path(tmp_path: Path) -> None:
    build(tmp_path, igb_host(num_vfs=1))
    sysfs = SysfsPci(tmp_path)
    assert sysfs.upstream_bridges("0000:01:00.0") == ["0000:00:02.0"]
    assert sysfs.upstream_bridges("0000:01:10.0") == ["0000:00:02.0"]
    assert sysfs.upstream_bridges("0000:00:00.0") == []


@pytest.mark.parametrize(("unassigned", "expected"), [(False, False), (True, True)])
def test_vf_bar_unassigned(tmp_path: Path, unassigned: bool, expected: bool) -> None:
    build(tmp_path, igb_host(vf_bar_unassigned=unassigned))
    assert SysfsPci(tmp_path).vf_bar_unassigned("0000:01:00.0") is expected


@pytest.mark.parametrize(
    ("subordinate", "total", "short"),
    [
        (1, 7, False),  # 01:10.0 .. 01:11.4 fit on bus 1
        (1, 64, False),  # RID 0x100 + 128 + 2*63 = 0x1fe: still bus 1
        (1, 128, True),  # 0x100 + 128 + 2*127 = 0x27e: bus 2 is needed
        (2, 128, False),
    ],
)
def test_vf_bus_range(tmp_path: Path, subordinate: int, total: int, short: bool) -> None:
    spec = igb_host(total_vfs=total)
    spec.bridge_configs["0000:00:02.0"] = port_config(subordinate_bus=subordinate)
    build(tmp_path, spec)
    assert SysfsPci(tmp_path).vf_bus_range_short("0000:01:00.0", total) is short


# ---------------------------------------------------------------------------- VF count


@pytest.mark.parametrize(
    ("code", "count", "current", "expected"),
    [
        (errno.ERANGE, 99, 0, "vf-count-out-of-range"),
        (errno.EBUSY, 2, 4, "vf-count-busy"),
        (errno.EBUSY, 0, 4, "vf-count-busy"),
        (errno.ENOENT, 4, 0, "no-pf-driver"),
        (errno.EINVAL, 4, 0, "vf-count-rejected"),
        (errno.ENOMEM, 4, 0, "no-vf-bar-space"),
        (errno.EIO, 4, 0, "vf-enable-failed"),
        (errno.EACCES, 4, 0, "permission-denied"),
        (errno.ETIMEDOUT, 4, 0, "vf-count-failed"),
    ],
)
def test_numvfs_errno_translation(
    tmp_path: Path, code: int, count: int, current: int, expected: str
) -> None:
    build(tmp_path, igb_host(num_vfs=current))
    sysfs = ErrnoSysfs(tmp_path, {"sriov_numvfs": code})

    with pytest.raises(HardwareError) as caught:
        sysfs.set_num_vfs("0000:01:00.0", count)

    error = caught.value
    assert error.code == expected
    assert error.errno == code
    assert "enp1s0" in error.message and "igb" in error.message
    assert error.hint
    assert isinstance(error.__cause__, OSError)


def test_enomem_with_a_short_bus_range_is_no_bus_resources(tmp_path: Path) -> None:
    spec = igb_host(total_vfs=128)
    spec.bridge_configs["0000:00:02.0"] = port_config(subordinate_bus=1)
    build(tmp_path, spec)
    sysfs = ErrnoSysfs(tmp_path, {"sriov_numvfs": errno.ENOMEM})
    with pytest.raises(HardwareError, match="bus numbers") as caught:
        sysfs.set_num_vfs("0000:01:00.0", 128)
    assert caught.value.code == "no-bus-resources"


def test_messages_state_the_limit(tmp_path: Path) -> None:
    build(tmp_path, igb_host())
    with pytest.raises(HardwareError, match="at most 7 VFs, 99 asked") as caught:
        ErrnoSysfs(tmp_path, {"sriov_numvfs": errno.ERANGE}).set_num_vfs("0000:01:00.0", 99)
    assert "0-7" in caught.value.hint


def test_writing_the_current_count_writes_nothing(tmp_path: Path) -> None:
    build(tmp_path, igb_host(num_vfs=2))
    sysfs = ErrnoSysfs(tmp_path, {"sriov_numvfs": errno.EBUSY})
    sysfs.set_num_vfs("0000:01:00.0", 2)
    assert sysfs.writes == []


def test_negative_count_is_invalid_input(tmp_path: Path) -> None:
    build(tmp_path, igb_host())
    with pytest.raises(InvalidInput):
        SysfsPci(tmp_path).set_num_vfs("0000:01:00.0", -1)


def test_no_sriov_capability(tmp_path: Path) -> None:
    build(tmp_path, igb_host(total_vfs=None))
    with pytest.raises(HardwareError) as caught:
        SysfsPci(tmp_path).set_num_vfs("0000:01:00.0", 1)
    assert caught.value.code == "sriov-not-capable"


def test_enable_then_disable_with_kernel_rules(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    sysfs = KernelSysfs(tree, vf_create_timeout=2)

    sysfs.set_num_vfs("0000:01:00.0", 4)
    vfs = sysfs.vfs("0000:01:00.0")
    assert [vf.address for vf in vfs] == [
        "0000:01:10.0",
        "0000:01:10.2",
        "0000:01:10.4",
        "0000:01:10.6",
    ]
    assert all(vf.netdev for vf in vfs)

    with pytest.raises(HardwareError) as caught:
        sysfs.set_num_vfs("0000:01:00.0", 2)
    assert caught.value.code == "vf-count-busy"

    sysfs.set_num_vfs("0000:01:00.0", 0)
    assert sysfs.vfs("0000:01:00.0") == []


def test_driver_enabling_fewer_vfs_is_reported(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())

    class Stingy(KernelSysfs):
        def _write(self, path: Path, text: str) -> None:
            super()._write(path, "2" if path.name == "sriov_numvfs" else text)

    with pytest.raises(HardwareError) as caught:
        Stingy(tree, vf_create_timeout=1).set_num_vfs("0000:01:00.0", 4)
    assert caught.value.code == "vf-count-short"


# ---------------------------------------------------------------------------- waiting


def test_vfs_that_never_appear_time_out_within_the_bound(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    sysfs = KernelSysfs(tree, vfs_appear=False, vf_create_timeout=0.2, poll_interval=0.01)

    started = time.monotonic()
    with pytest.raises(HardwareError) as caught:
        sysfs.set_num_vfs("0000:01:00.0", 4)

    assert caught.value.code == "vf-create-timeout"
    assert "0 of 4 VFs" in caught.value.message
    assert time.monotonic() - started < 2


def test_waits_for_netdevs_of_vfs_a_net_driver_took(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    sysfs = KernelSysfs(tree, vf_netdevs=False, vf_create_timeout=0.1, poll_interval=0.01)
    with pytest.raises(HardwareError, match="no network interface yet") as caught:
        sysfs.set_num_vfs("0000:01:00.0", 2)
    assert caught.value.code == "vf-create-timeout"


def test_no_netdev_wait_with_autoprobe_off(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host(autoprobe=0))
    sysfs = KernelSysfs(tree, vf_create_timeout=0.1, poll_interval=0.01)
    sysfs.set_num_vfs("0000:01:00.0", 2)
    assert [vf.driver for vf in sysfs.vfs("0000:01:00.0")] == [None, None]


def test_wait_polls_until_vfs_appear(tmp_path: Path) -> None:
    """VFs created asynchronously (after the write returned) are waited for."""
    tree = build(tmp_path, igb_host())
    pf = tree.spec.pfs[0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:  # the "NIC" finishes while we poll
            tree.add_vf(pf, VfSpec(0, "0000:01:10.0", netdev="enp1s0v0"))

    sysfs = SysfsPci(tmp_path, vf_create_timeout=5, poll_interval=0.01, sleep=sleep)
    sysfs.wait_for_vfs("0000:01:00.0", 1)
    assert naps == [0.01, 0.02, 0.04]


def test_waits_for_the_pf_link_the_driver_bounced(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 4:
            tree.set_carrier("enp1s0", "1")  # igb's watchdog sees the link again

    sysfs = KernelSysfs(tree, link_bounce=True, poll_interval=0.01, sleep=sleep)
    sysfs.set_num_vfs("0000:01:00.0", 2)
    assert sysfs.carrier("enp1s0") is True
    assert len(naps) == 4


def test_a_link_that_stays_down_does_not_fail_the_vf_change(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    sysfs = KernelSysfs(tree, link_bounce=True, vf_create_timeout=0.1, poll_interval=0.01)
    sysfs.set_num_vfs("0000:01:00.0", 2)
    assert len(sysfs.vfs("0000:01:00.0")) == 2
    assert sysfs.carrier("enp1s0") is False


def test_no_link_wait_when_the_pf_had_no_link(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host(carrier=None))
    naps: list[float] = []
    sysfs = KernelSysfs(tree, link_bounce=True, poll_interval=0.01, sleep=naps.append)
    sysfs.set_num_vfs("0000:01:00.0", 2)
    assert naps == []


# ---------------------------------------------------------------------------- VF drivers


def test_set_drivers_autoprobe(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host())
    sysfs = KernelSysfs(tree)
    sysfs.set_drivers_autoprobe("0000:01:00.0", False)
    assert not sysfs.drivers_autoprobe("0000:01:00.0")
    assert sysfs.writes == [("sriov_drivers_autoprobe", "0")]


def test_set_drivers_autoprobe_error(tmp_path: Path) -> None:
    build(tmp_path, igb_host())
    sysfs = ErrnoSysfs(tmp_path, {"sriov_drivers_autoprobe": errno.EACCES})
    with pytest.raises(HardwareError) as caught:
        sysfs.set_drivers_autoprobe("0000:01:00.0", False)
    assert caught.value.code == "autoprobe-failed"


def test_bind_vfio_and_back(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host(num_vfs=1))
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)
    sysfs = KernelSysfs(tree)

    sysfs.bind_vfio("0000:01:10.0")
    assert sysfs.function("0000:01:10.0").driver == "vfio-pci"
    assert [name for name, _ in sysfs.writes] == ["driver_override", "unbind", "drivers_probe"]

    sysfs.bind_vfio("0000:01:10.0")  # idempotent
    assert len(sysfs.writes) == 3

    assert sysfs.bind_default_driver("0000:01:10.0") == "igbvf"
    assert sysfs.writes[3] == ("driver_override", "\n")
    writes = len(sysfs.writes)
    assert sysfs.bind_default_driver("0000:01:10.0") == "igbvf"  # idempotent
    assert len(sysfs.writes) == writes


def test_bind_vfio_without_iommu_group(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=1)
    spec.iommu_groups = False
    tree = build(tmp_path, spec)
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)
    with pytest.raises(HardwareError, match="no IOMMU group") as caught:
        KernelSysfs(tree).bind_vfio("0000:01:10.0")
    assert caught.value.code == "no-iommu"
    assert "intel_iommu=on" in caught.value.hint


def test_bind_vfio_without_the_driver(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=1)
    spec.loaded_modules = ("igb",)  # vfio_pci not loaded: no drivers/vfio-pci
    tree = build(tmp_path, spec)
    with pytest.raises(HardwareError) as caught:
        KernelSysfs(tree).bind_vfio("0000:01:10.0")
    assert caught.value.code == "vfio-pci-missing"


def test_bind_vfio_probe_refused(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host(num_vfs=1))
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)

    class Refusing(KernelSysfs):
        def _probe(self, address: str) -> None:
            pass  # probe failed (-22): no driver bound, drivers_probe still returns ok

    with pytest.raises(HardwareError) as caught:
        Refusing(tree).bind_vfio("0000:01:10.0")
    assert caught.value.code == "vfio-bind-failed"


def test_rebind_write_error(tmp_path: Path) -> None:
    tree = build(tmp_path, igb_host(num_vfs=1))
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)
    sysfs = ErrnoSysfs(tmp_path, {"driver_override": errno.EACCES})
    with pytest.raises(HardwareError) as caught:
        sysfs.bind_vfio("0000:01:10.0")
    assert caught.value.code == "vf-bind-failed"


class _Numbers(SysfsPci):
    """sriov_numvfs/offset/stride from a dict (no tree needed)."""

    def __init__(self, numbers: dict[str, int]) -> None:
        super().__init__("/nonexistent")
        self.numbers = numbers

    def _read_int(self, path: StrPath) -> int | None:
        return self.numbers.get(os.path.basename(path))


@settings(max_examples=200, deadline=None)
@given(
    bus=st.integers(0, 0xF0),
    devfn=st.integers(0, 255),
    count=st.integers(0, 256),
    offset=st.integers(1, 512),
    stride=st.integers(1, 4),
)
def test_vf_addresses_follow_the_routing_id_arithmetic(
    bus: int, devfn: int, count: int, offset: int, stride: int
) -> None:
    """iov.c pci_iov_virtfn_bus/devfn: VF n at PF RID + offset + stride * n."""
    first = (bus << 8 | devfn) + offset
    assume(first + stride * count <= 0xFFFF)
    address = f"0000:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"
    sysfs = _Numbers({"sriov_numvfs": count, "sriov_offset": offset, "sriov_stride": stride})
    expected = [
        f"0000:{rid >> 8:02x}:{rid >> 3 & 0x1F:02x}.{rid & 7}"
        for rid in range(first, first + stride * count, stride)
    ]
    assert sysfs._vf_addresses(address) == expected
