"""LinuxHost over a fake sysfs tree and an in-memory rtnetlink: the HostHardware port."""

from __future__ import annotations

import errno
import textwrap
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTM_NEWLINK

from helpers import fresh_python
from iovctl.adapters.linux.host import LinuxHost
from iovctl.adapters.linux.netlink import NetlinkVfs
from iovctl.domain.drivers import unsupported_settings
from iovctl.domain.model import (
    SCRUBBED,
    LinkState,
    PrivateVlan,
    PvlanMode,
    SriovCapability,
    VfSetting,
    VirtualFunction,
)
from iovctl.errors import HardwareError, NotFound, UnsupportedVfSetting
from iovctl.ports import HostHardware

from .fake_rtnl import FakeRtnl, FakeVf
from .kernel_seams import KernelSysfs
from .sysfs_tree import DeviceSpec, HostSpec, PfSpec, Tree, build, igb_host

PCI_IDS = "8086  Intel Corporation\n\t10c9  82576 Gigabit Network Connection\n"


def make_host(
    tmp_path: Path, spec: HostSpec, fake: FakeRtnl | None = None
) -> tuple[LinuxHost, Tree, FakeRtnl]:
    spec.pci_ids = PCI_IDS
    tree = build(tmp_path, spec)
    fake = fake or FakeRtnl(spec.pfs[0].num_vfs)
    host = LinuxHost(
        tmp_path,
        sysfs=KernelSysfs(tree, vf_create_timeout=2, poll_interval=0.01),
        netlink=NetlinkVfs(lambda: IPRoute(use_socket=fake)),
        kernel_release=spec.kernel_release,
    )
    return host, tree, fake


def test_is_a_host_hardware(tmp_path: Path) -> None:
    host: HostHardware = make_host(tmp_path, igb_host())[0]
    assert host.backend_name == "linux"


def test_adapters(tmp_path: Path) -> None:
    spec = igb_host(num_vfs=2)
    spec.pfs.append(
        PfSpec(
            address="0000:02:00.0",
            netdev="eno1",
            ifindex=2,
            driver="e1000e",
            device="0x10d3",
            total_vfs=None,
            bridge="0000:00:03.0",
            numa_node="1",
            speed="-1",
        )
    )
    host = make_host(tmp_path, spec)[0]

    eno1, enp1s0 = host.adapters()

    assert enp1s0.name == "enp1s0"
    assert enp1s0.pci_address == "0000:01:00.0"
    assert (enp1s0.vendor_id, enp1s0.device_id, enp1s0.driver) == ("8086", "10c9", "igb")
    assert enp1s0.model == "Intel Corporation 82576 Gigabit Network Connection"
    assert (enp1s0.link_speed_mbps, enp1s0.numa_node) == (1000, 0)
    assert enp1s0.mac == "52:54:00:12:34:56"
    assert enp1s0.num_vfs == 2
    assert enp1s0.sriov == SriovCapability(
        total_vfs=7,
        queue_pairs=7,
        max_queue_pairs_per_vf=1,
        vf_driver="igbvf",
        vf_device_id="10ca",
        unsupported=unsupported_settings("igb"),
    )
    assert eno1.sriov is None
    assert (eno1.numa_node, eno1.link_speed_mbps) == (1, None)  # no link: unknown, not 0
    assert eno1.model == "Intel Corporation 8086:10d3"


def test_pf_without_driver_is_named_by_address(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host(driver=None, netdev=None))[0]
    (adapter,) = host.adapters()
    assert adapter.name == "0000:01:00.0"
    assert adapter.driver is None
    assert adapter.mac == ""
    assert adapter.sriov is not None


def test_firmware_resource_problems_show_in_the_capability(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host(vf_bar_unassigned=True))[0]
    capability = host.adapter("enp1s0").sriov
    assert capability is not None
    assert not capability.vf_bar_space
    assert capability.bus_resources


def test_unknown_adapter(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host())[0]
    with pytest.raises(NotFound) as caught:
        host.set_num_vfs("eth9", 2)
    assert caught.value.code == "unknown-adapter"
    assert "eth9" in caught.value.message
    assert "enp1s0" in caught.value.hint


def test_other_pci_functions_are_not_adapters(tmp_path: Path) -> None:
    spec = igb_host()
    spec.devices.append(DeviceSpec("0000:00:1f.2", "0x010601", "ahci"))
    host = make_host(tmp_path, spec)[0]
    with pytest.raises(NotFound):
        host.virtual_functions("0000:00:1f.2")


def test_set_num_vfs_then_virtual_functions(tmp_path: Path) -> None:
    host, _, fake = make_host(tmp_path, igb_host(), FakeRtnl(4))
    fake.vfs[1] = FakeVf(mac="52:54:00:00:00:01", vlan=10, link_state=2)

    host.set_num_vfs("enp1s0", 4)
    vfs = host.virtual_functions("enp1s0")

    assert [vf.pci_address for vf in vfs] == [
        "0000:01:10.0",
        "0000:01:10.2",
        "0000:01:10.4",
        "0000:01:10.6",
    ]
    assert vfs[1] == VirtualFunction(
        adapter="enp1s0",
        index=1,
        pci_address="0000:01:10.2",
        netdev="enp1s0v1",
        iommu_group=31,
        settings=SCRUBBED.with_(mac="52:54:00:00:00:01", vlan=10, link_state=LinkState.DISABLE),
    )
    assert host.adapter("0000:01:00.0").num_vfs == 4  # by PCI address too


def test_vfs_are_enabled_on_a_pf_that_is_up(tmp_path: Path) -> None:
    """An igbvf that resets while its PF is down says "PF still in reset state" and
    takes a random permanent MAC (measured on the testbed's igb): the PF comes up
    first, and is up when the VFs appear."""
    spec = igb_host()
    spec.pfs[0].admin_up = False
    fake = FakeRtnl(0)
    fake.links[3].up = False
    host, _, _ = make_host(tmp_path, spec, fake)
    up_when_enabled: list[bool] = []
    assert isinstance(host.sysfs, KernelSysfs)
    host.sysfs.on_num_vfs = lambda pf, count: up_when_enabled.append(fake.links[pf.ifindex].up)

    host.set_num_vfs("enp1s0", 2)

    assert fake.recorded.admin_changes == [(3, True)]
    assert up_when_enabled == [True]


@pytest.mark.parametrize(("admin_up", "count"), [(True, 2), (None, 2), (False, 0)])
def test_the_pf_link_is_left_alone_otherwise(
    tmp_path: Path, admin_up: bool | None, count: int
) -> None:
    """Up already, flags unreadable, or VFs going away: no link change."""
    before = 0 if count else 1
    spec = igb_host(num_vfs=before)
    spec.pfs[0].admin_up = admin_up
    fake = FakeRtnl(before)
    host, _, _ = make_host(tmp_path, spec, fake)

    host.set_num_vfs("enp1s0", count)

    assert fake.recorded.admin_changes == []
    assert host.adapter("enp1s0").num_vfs == count


def test_a_pf_that_cannot_come_up_is_an_error_and_no_vfs(tmp_path: Path) -> None:
    spec = igb_host()
    spec.pfs[0].admin_up = False
    fake = FakeRtnl(0)
    host, _, _ = make_host(tmp_path, spec, fake)

    def refuse(request: object) -> None:
        fake._ack(request, errno.EPERM)

    fake.processors[RTM_NEWLINK] = refuse

    with pytest.raises(HardwareError) as caught:
        host.set_num_vfs("enp1s0", 2)

    assert caught.value.code == "pf-up-failed"
    assert "enp1s0" in str(caught.value) and "ip link set enp1s0 up" in (caught.value.hint or "")
    assert host.adapter("enp1s0").num_vfs == 0


def test_virtual_function(tmp_path: Path) -> None:
    host, _, fake = make_host(tmp_path, igb_host(num_vfs=3))
    fake.vfs[2] = FakeVf(vlan=7)
    vf = host.virtual_function("enp1s0", 2)
    assert (vf.index, vf.pci_address, vf.settings.vlan) == (2, "0000:01:10.4", 7)
    with pytest.raises(HardwareError) as caught:
        host.virtual_function("enp1s0", 3)
    assert caught.value.code == "vf-not-found"


def test_no_vfs_no_netlink(tmp_path: Path) -> None:
    host, _, fake = make_host(tmp_path, igb_host())
    assert host.virtual_functions("enp1s0") == []
    assert fake.recorded.get_ext_masks == []


def test_set_vf_settings(tmp_path: Path) -> None:
    host, _, fake = make_host(tmp_path, igb_host(num_vfs=2))
    wanted = SCRUBBED.with_(mac="52:54:00:aa:00:01", vlan=20, trust=True, max_rate=100)

    host.set_vf_settings("enp1s0", 1, wanted)

    assert host.virtual_functions("enp1s0")[1].settings == wanted
    assert len(fake.recorded.set_requests) == 1


def test_set_vf_settings_refusal_names_igb(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host(num_vfs=2))[0]
    with pytest.raises(UnsupportedVfSetting, match="the igb driver does not support link state"):
        host.set_vf_settings("enp1s0", 0, SCRUBBED.with_(link_state=LinkState.ENABLE))


@pytest.mark.parametrize("driver", ["igb", "newdrv"])
def test_no_linux_driver_takes_a_private_vlan(tmp_path: Path, driver: str) -> None:
    """No IFLA_VF_* carries one: refused before anything is sent, whatever the driver
    (one the table does not know included), so such a NIC stays on the software path."""
    host, _, fake = make_host(tmp_path, igb_host(num_vfs=1, driver=driver))
    assert VfSetting.PVLAN in host.unsupported_vf_settings("enp1s0")
    pvlan = PrivateVlan(PvlanMode.ISOLATED, 100, 101)
    with pytest.raises(UnsupportedVfSetting, match="private VLAN"):
        host.set_vf_settings("enp1s0", 0, SCRUBBED.with_(pvlan=pvlan))
    assert fake.recorded.set_requests == []


@pytest.mark.parametrize("index", [-1, 2, 7])
def test_set_vf_settings_index_out_of_range(tmp_path: Path, index: int) -> None:
    host, _, fake = make_host(tmp_path, igb_host(num_vfs=2))
    with pytest.raises(HardwareError) as caught:
        host.set_vf_settings("enp1s0", index, SCRUBBED)
    assert caught.value.code == "vf-not-found"
    assert fake.recorded.set_requests == []


def test_unsupported_vf_settings_come_from_the_driver_table(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host())[0]
    assert host.unsupported_vf_settings("enp1s0") == unsupported_settings("igb")


def test_igb_without_82576_has_no_vf_rate_limit(tmp_path: Path) -> None:
    """igb_ndo_set_vf_bw: EOPNOTSUPP unless the MAC is an 82576 (i350 here)."""
    host = make_host(tmp_path, igb_host(device="0x1521"))[0]
    assert host.unsupported_vf_settings("enp1s0") == unsupported_settings("igb") | {
        VfSetting.MAX_RATE
    }


def test_vf_drivers(tmp_path: Path) -> None:
    host, tree, _ = make_host(tmp_path, igb_host(num_vfs=1))
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)
    host.bind_vf_to_vfio("enp1s0", 0)
    assert host.sysfs.function("0000:01:10.0").driver == "vfio-pci"
    assert host.bind_vf_to_default_driver("enp1s0", 0) == "igbvf"
    with pytest.raises(HardwareError) as caught:
        host.bind_vf_to_vfio("enp1s0", 3)
    assert caught.value.code == "vf-not-found"


def test_bind_vf_driver_is_the_port_operation(tmp_path: Path) -> None:
    from iovctl.domain.drivers import VfDriver

    host, tree, _ = make_host(tmp_path, igb_host(num_vfs=2))
    (tree.bus / "drivers" / "vfio-pci").mkdir(exist_ok=True)
    assert host.bind_vf_driver("enp1s0", 1, VfDriver.VFIO) == "vfio-pci"
    assert host.sysfs.function("0000:01:10.2").driver == "vfio-pci"
    assert host.sysfs.function("0000:01:10.0").driver == "igbvf"  # the neighbour stays
    assert host.bind_vf_driver("enp1s0", 1, VfDriver.NET) == "igbvf"
    with pytest.raises(HardwareError) as caught:
        host.bind_vf_driver("enp1s0", 2, VfDriver.NET)
    assert caught.value.code == "vf-not-found"


def test_autoprobe(tmp_path: Path) -> None:
    host = make_host(tmp_path, igb_host())[0]
    host.set_vf_drivers_autoprobe("enp1s0", False)
    host.set_num_vfs("enp1s0", 2)
    assert [vf.netdev for vf in host.virtual_functions("enp1s0")] == [None, None]


def test_host_facts(tmp_path: Path) -> None:
    facts = make_host(tmp_path, igb_host())[0].host_facts()
    assert facts.iommu_enabled and facts.acs and facts.vfio_pci


#: Imports the host adapter, builds a LinuxHost over the fake tree at argv[1] and reads
#: what needs no VF settings; reports whether pyroute2 was imported before and after
#: the first use of ``host.netlink``.
_READ_WITHOUT_NETLINK = textwrap.dedent(
    """
    import json, sys
    from iovctl.adapters.linux.host import LinuxHost

    host = LinuxHost(sys.argv[1], kernel_release="6.1.0")
    names = [adapter.name for adapter in host.adapters()]
    host.host_facts()
    host.virtual_functions("enp1s0")  # no VFs enabled: no RTM_GETLINK
    before = "pyroute2" in sys.modules
    host.netlink  # builds NetlinkVfs; opens no socket
    print(json.dumps({"names": names, "before": before, "after": "pyroute2" in sys.modules}))
    """
)


def test_pyroute2_is_imported_only_when_netlink_is_used(tmp_path: Path) -> None:
    """pyroute2's import is about half a read command's start-up: commands that
    never touch VF settings must not pay it. A fresh interpreter, since this one
    has imported pyroute2 already."""
    spec = igb_host()
    spec.pci_ids = PCI_IDS
    build(tmp_path, spec)
    report = fresh_python(_READ_WITHOUT_NETLINK, str(tmp_path))
    assert report == {"names": ["enp1s0"], "before": False, "after": True}


def test_a_metrics_sample_leaves_out_a_pf_it_cannot_read(tmp_path: Path) -> None:
    """A driver still listing its VFs (a short IFLA_VFINFO_LIST): the sample names
    the PF and its error instead of failing whole."""
    from iovctl.adapters.sim.machine import open_machine
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime
    from iovctl.adapters.sqlite.store import SqliteStore
    from iovctl.services.context import Context
    from iovctl.services.metrics import metrics_view, sample_hardware

    host, _, _ = make_host(tmp_path, igb_host(num_vfs=2), FakeRtnl(2, reported_vfs=1))
    store = SqliteStore.open(tmp_path / "state")
    ctx = Context(store, host, SimulatedVmRuntime(open_machine(None)))
    try:
        with store.snapshot():
            sample = sample_hardware(ctx)
            view = metrics_view(ctx, sample)
    finally:
        store.close()
    assert sample.unread == {"enp1s0": "vf-info-incomplete"}
    assert [a.name for a in sample.adapters] == ["enp1s0"]
    assert view.vf_traffic == [] and view.unread == {"enp1s0": "vf-info-incomplete"}
    assert view.adapters[0].num_vfs == 2
