"""LinuxHost against the real igb driver (QEMU 82576) inside the testbed guest.

Marked ``testbed``: skipped everywhere except the guest (``bash tests/testbed/run``),
where IOVCTL_TESTBED=1, IOVCTL_TESTBED_IOMMU=0|1, one igb PF with 7 total VFs, and
root. Every test leaves the PF with 0 VFs.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from iovctl.adapters.linux.host import LinuxHost
from iovctl.domain.model import SCRUBBED, LinkState, VlanProtocol
from iovctl.errors import HardwareError, UnsupportedVfSetting

pytestmark = pytest.mark.testbed

#: VF probing under TCG takes seconds; bound generously (tests/testbed/test_igb_guest.py).
VF_TIMEOUT_S = 60.0
TENANT = SCRUBBED.with_(
    mac="52:54:00:ab:cd:01", vlan=100, qos=3, spoof_check=False, trust=True, max_rate=100
)


def iommu_expected() -> bool:
    return os.environ.get("IOVCTL_TESTBED_IOMMU") == "1"


@pytest.fixture(scope="module")
def host() -> LinuxHost:
    return LinuxHost(vf_create_timeout=VF_TIMEOUT_S)


@pytest.fixture(scope="module")
def pf_name(host: LinuxHost) -> Iterator[str]:
    """The igb PF, up with carrier (igb refuses VF rates while the link is down)."""
    names = [a.name for a in host.adapters() if a.driver == "igb"]
    assert len(names) == 1, f"expected one igb PF, found {names}"
    name = names[0]
    with IPRoute() as ipr:
        (index,) = ipr.link_lookup(ifname=name)
        ipr.link("set", index=index, state="up")
    carrier = Path("/sys/class/net") / name / "carrier"
    deadline = time.monotonic() + 30
    while carrier.read_text().strip() != "1" and time.monotonic() < deadline:
        time.sleep(0.1)
    yield name
    host.set_num_vfs(name, 0)


@pytest.fixture
def igb(host: LinuxHost, pf_name: str) -> Iterator[str]:
    """The PF with 0 VFs before and after the test."""
    host.set_vf_drivers_autoprobe(pf_name, True)
    host.set_num_vfs(pf_name, 0)
    yield pf_name
    host.set_vf_drivers_autoprobe(pf_name, True)
    host.set_num_vfs(pf_name, 0)


def test_inventory(host: LinuxHost, igb: str) -> None:
    adapter = host.adapter(igb)
    assert adapter.driver == "igb"
    assert (adapter.vendor_id, adapter.device_id) == ("8086", "10c9")
    assert adapter.sriov is not None
    assert adapter.sriov.total_vfs == 7
    assert adapter.sriov.vf_driver == "igbvf"
    assert adapter.sriov.vf_device_id == "10ca"
    assert adapter.num_vfs == 0


def test_four_vfs_each_in_its_own_iommu_group(host: LinuxHost, igb: str) -> None:
    host.set_num_vfs(igb, 4)

    vfs = host.virtual_functions(igb)
    assert [vf.index for vf in vfs] == [0, 1, 2, 3]
    pf_bus = host.adapter(igb).pci_address.rsplit(":", 1)[0]
    assert [vf.pci_address for vf in vfs] == [f"{pf_bus}:10.{f}" for f in (0, 2, 4, 6)]
    assert all(vf.netdev for vf in vfs), "igbvf should have created VF netdevs"
    groups = [vf.iommu_group for vf in vfs]
    if iommu_expected():
        assert None not in groups
        assert len(set(groups)) == 4
    else:
        assert groups == [None] * 4
    assert host.adapter(igb).num_vfs == 4


def test_changing_a_nonzero_count_is_busy(host: LinuxHost, igb: str) -> None:
    host.set_num_vfs(igb, 4)
    with pytest.raises(HardwareError) as caught:
        host.set_num_vfs(igb, 2)
    assert caught.value.code == "vf-count-busy"
    assert caught.value.errno == errno.EBUSY
    assert "igb" in caught.value.message
    assert host.adapter(igb).num_vfs == 4


def test_above_total_is_out_of_range(host: LinuxHost, igb: str) -> None:
    with pytest.raises(HardwareError) as caught:
        host.set_num_vfs(igb, 99)
    assert caught.value.code == "vf-count-out-of-range"
    assert caught.value.errno == errno.ERANGE


def test_vf_settings_round_trip(host: LinuxHost, igb: str) -> None:
    host.set_num_vfs(igb, 2)

    host.set_vf_settings(igb, 1, TENANT)
    assert host.virtual_functions(igb)[1].settings == TENANT

    host.set_vf_settings(igb, 1, SCRUBBED)  # sends no link state: igb would refuse it
    scrubbed = host.virtual_functions(igb)[1].settings
    # After a zero MAC the VF driver may pick its own; everything else is clean.
    assert scrubbed.with_(mac=SCRUBBED.mac) == SCRUBBED


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"link_state": LinkState.DISABLE}, "link state"),
        ({"link_state": LinkState.ENABLE}, "link state"),
        ({"min_rate": 10}, "min rate"),
        ({"vlan_protocol": VlanProtocol.DOT1AD, "vlan": 5}, "802.1ad VLAN protocol"),
    ],
)
def test_igb_refusals(host: LinuxHost, igb: str, change: dict[str, object], label: str) -> None:
    host.set_num_vfs(igb, 1)
    with pytest.raises(UnsupportedVfSetting) as caught:
        host.set_vf_settings(igb, 0, SCRUBBED.with_(mac="52:54:00:ab:cd:03", **change))
    assert str(caught.value) == (
        f"error[vf-setting-unsupported]: the igb driver does not support {label} on VFs"
    )
    assert host.virtual_function(igb, 0).settings == SCRUBBED  # nothing changed


@pytest.mark.parametrize(
    ("change", "label", "code"),
    [
        ({"link_state": LinkState.DISABLE}, "link state", errno.EOPNOTSUPP),
        ({"min_rate": 10}, "min rate", errno.EINVAL),
        (
            {"vlan_protocol": VlanProtocol.DOT1AD, "vlan": 5},
            "802.1ad VLAN protocol",
            errno.EPROTONOSUPPORT,
        ),
    ],
)
def test_kernel_refusals_without_the_table(
    host: LinuxHost, igb: str, change: dict[str, object], label: str, code: int
) -> None:
    """The driver's own errno, attributed by reading the VF back (no table, no retry)."""
    host.set_num_vfs(igb, 1)
    ifindex = host.sysfs.ifindex(igb)
    assert ifindex is not None
    desired = SCRUBBED.with_(mac="52:54:00:ab:cd:02", trust=True, **change)
    with pytest.raises(UnsupportedVfSetting) as caught:
        host.netlink.write(ifindex, 0, desired, adapter=igb, driver="igb", unsupported=None)
    assert caught.value.setting == label
    assert caught.value.errno == code


def test_qos_above_7_never_reaches_the_driver(host: LinuxHost, igb: str) -> None:
    host.set_num_vfs(igb, 1)
    with pytest.raises(HardwareError) as caught:
        host.set_vf_settings(igb, 0, SCRUBBED.with_(vlan=10, qos=8))
    assert caught.value.code == "vf-setting-invalid"


def test_vf_index_out_of_range(host: LinuxHost, igb: str) -> None:
    host.set_num_vfs(igb, 1)
    with pytest.raises(HardwareError) as caught:
        host.set_vf_settings(igb, 1, SCRUBBED)
    assert caught.value.code == "vf-not-found"


def test_host_facts_iommu(host: LinuxHost) -> None:
    facts = host.host_facts()
    assert facts.iommu_enabled is iommu_expected()
    assert facts.kernel_pci_iov
    assert facts.vfio_pci


def test_vfio_binding(host: LinuxHost, igb: str) -> None:
    host.set_vf_drivers_autoprobe(igb, False)
    host.set_num_vfs(igb, 1)
    assert host.virtual_functions(igb)[0].netdev is None  # unbound: no igbvf netdev
    if not iommu_expected():
        with pytest.raises(HardwareError) as caught:
            host.bind_vf_to_vfio(igb, 0)
        assert caught.value.code == "no-iommu"
        return
    host.bind_vf_to_vfio(igb, 0)
    vf = host.virtual_functions(igb)[0]
    assert host.sysfs.function(vf.pci_address).driver == "vfio-pci"
    # VFs go away while one is bound to vfio-pci (docs/reference/linux-sriov.md).
    host.set_num_vfs(igb, 0)
    assert host.virtual_functions(igb) == []
