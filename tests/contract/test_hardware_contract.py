"""The hardware-side contract (ports.PciBus + ports.VfConfigurator).

One suite for every backend: the simulated host here, the real igb driver in the
QEMU testbed. A difference is a simulator bug: fix the simulator, never the test.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from iovctl.domain.drivers import VF_RESET_NEEDS_PF_UP, VfDriver
from iovctl.domain.model import SCRUBBED, HostFacts, VfSetting, VfSettings
from iovctl.errors import HardwareError, NotFound, UnsupportedVfSetting
from iovctl.ports import HostHardware

pytestmark = pytest.mark.contract


def test_inventory_describes_the_pf(hardware: HostHardware, pf: str) -> None:
    adapter = hardware.adapter(pf)
    assert adapter.sriov is not None and adapter.sriov.total_vfs >= 2
    assert adapter.driver
    assert adapter.num_vfs == 0
    assert adapter.name in [a.name for a in hardware.adapters()]
    assert len(adapter.pci_address.split(":")) == 3
    assert isinstance(hardware.host_facts(), HostFacts)
    assert hardware.virtual_functions(pf) == []


def test_unknown_adapter_is_not_found(hardware: HostHardware) -> None:
    with pytest.raises(NotFound) as info:
        hardware.adapter("nosuchnic0")
    assert info.value.code == "unknown-adapter"
    assert "nosuchnic0" in info.value.message


def test_enabling_vfs_creates_them_in_order(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 2)
    vfs = hardware.virtual_functions(pf)
    assert [vf.index for vf in vfs] == [0, 1]
    assert len({vf.pci_address for vf in vfs}) == 2
    assert hardware.adapter(pf).num_vfs == 2
    assert hardware.virtual_function(pf, 1).pci_address == vfs[1].pci_address
    facts = hardware.host_facts()
    if facts.iommu_enabled and facts.acs:
        groups = [vf.iommu_group for vf in vfs]
        assert None not in groups and len(set(groups)) == len(groups)


def test_same_count_is_a_no_op(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 2)
    before = hardware.virtual_functions(pf)
    hardware.set_num_vfs(pf, 2)
    assert hardware.virtual_functions(pf) == before


def test_nonzero_to_other_nonzero_is_busy(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 4)
    with pytest.raises(HardwareError) as info:
        hardware.set_num_vfs(pf, 2)
    assert info.value.code == "vf-count-busy"
    assert info.value.errno == errno.EBUSY
    assert pf in info.value.message and info.value.hint
    assert hardware.adapter(pf).num_vfs == 4


def test_above_total_is_out_of_range(hardware: HostHardware, pf: str) -> None:
    total = hardware.adapter(pf).sriov.total_vfs  # type: ignore[union-attr]
    with pytest.raises(HardwareError) as info:
        hardware.set_num_vfs(pf, total + 92)
    assert info.value.code == "vf-count-out-of-range"
    assert info.value.errno == errno.ERANGE
    assert str(total) in info.value.message
    assert hardware.adapter(pf).num_vfs == 0


def test_zero_removes_all_vfs(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 3)
    hardware.set_num_vfs(pf, 0)
    assert hardware.adapter(pf).num_vfs == 0
    assert hardware.virtual_functions(pf) == []


def test_new_vfs_are_clean(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 2)
    for vf in hardware.virtual_functions(pf):
        assert vf.settings.mac == SCRUBBED.mac
        assert vf.settings.vlan == 0 and not vf.settings.trust and vf.settings.max_rate == 0


TENANT = VfSettings(
    mac="52:54:00:ab:cd:01", vlan=42, qos=3, spoof_check=False, trust=True, max_rate=100
)


def test_settings_round_trip_and_scrub(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 2)
    hardware.set_vf_settings(pf, 1, TENANT)
    assert hardware.virtual_function(pf, 1).settings == TENANT
    assert hardware.virtual_functions(pf)[1].settings == TENANT
    assert (
        hardware.virtual_function(pf, 0).settings.mac == SCRUBBED.mac
    )  # the neighbour is untouched
    hardware.set_vf_settings(pf, 1, SCRUBBED)
    assert hardware.virtual_function(pf, 1).settings == SCRUBBED


_NON_DEFAULT = {
    VfSetting.LINK_STATE: {"link_state": "disable"},
    VfSetting.MIN_RATE: {"min_rate": 10, "max_rate": 100},
    VfSetting.VLAN_PROTOCOL: {"vlan": 5, "vlan_protocol": "802.1ad"},
    VfSetting.TRUST: {"trust": True},
    VfSetting.SPOOF_CHECK: {"spoof_check": False},
    VfSetting.MAX_RATE: {"max_rate": 100},
}


def test_refused_settings_name_the_driver_and_change_nothing(
    hardware: HostHardware, pf: str
) -> None:
    from iovctl.domain.model import LinkState, VlanProtocol

    hardware.set_num_vfs(pf, 1)
    driver = hardware.adapter(pf).driver
    refused = [s for s in hardware.unsupported_vf_settings(pf) if s in _NON_DEFAULT]
    for setting in refused:
        fields = dict(_NON_DEFAULT[setting])
        if "link_state" in fields:
            fields["link_state"] = LinkState(fields["link_state"])
        if "vlan_protocol" in fields:
            fields["vlan_protocol"] = VlanProtocol(fields["vlan_protocol"])
        with pytest.raises(UnsupportedVfSetting) as info:
            hardware.set_vf_settings(pf, 0, SCRUBBED.with_(mac="52:54:00:ab:cd:02", **fields))
        assert info.value.code == "vf-setting-unsupported"
        assert f"the {driver} driver does not support {setting.label}" in info.value.message
        assert hardware.virtual_function(pf, 0).settings == SCRUBBED


def test_qos_above_seven_is_invalid(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 1)
    with pytest.raises(HardwareError) as info:
        hardware.set_vf_settings(pf, 0, SCRUBBED.with_(vlan=5, qos=8))
    assert info.value.errno == errno.EINVAL
    assert hardware.virtual_function(pf, 0).settings == SCRUBBED


def test_vf_index_out_of_range(hardware: HostHardware, pf: str) -> None:
    hardware.set_num_vfs(pf, 1)
    with pytest.raises(HardwareError) as info:
        hardware.set_vf_settings(pf, 5, TENANT)
    assert info.value.code == "vf-not-found"
    with pytest.raises(HardwareError):
        hardware.virtual_function(pf, 5)


def test_a_vf_of_a_pf_that_is_down_is_not_bound(
    hardware: HostHardware, pf: str, set_pf_up: Callable[[bool], None]
) -> None:
    """igb answers a VF's reset only while its PF is up: a VF bound to its driver (or
    to vfio-pci for a guest) with the PF down would take a random MAC. Refused with
    the reason, and bound once the PF is up."""
    hardware.set_num_vfs(pf, 1)
    driver = hardware.adapter(pf).driver
    assert driver in VF_RESET_NEEDS_PF_UP  # igb on both backends
    set_pf_up(False)
    with pytest.raises(HardwareError) as info:
        hardware.bind_vf_driver(pf, 0, VfDriver.NET)
    assert info.value.code == "pf-down" and info.value.errno == errno.ENETDOWN
    assert pf in info.value.message and driver in info.value.message
    assert f"ip link set {pf} up" in info.value.hint
    set_pf_up(True)
    assert hardware.bind_vf_driver(pf, 0, VfDriver.NET) is not None


def test_enabling_vfs_brings_a_pf_that_is_down_up(
    hardware: HostHardware, pf: str, set_pf_up: Callable[[bool], None]
) -> None:
    set_pf_up(False)
    hardware.set_num_vfs(pf, 1)
    assert hardware.bind_vf_driver(pf, 0, VfDriver.NET) is not None
