"""adapters.sim.host: the simulated PCI bus and VF configuration follow the kernel's rules,
errno for errno (drivers/pci/iov.c for sriov_numvfs, the driver's ndo_set_vf_*)."""

from __future__ import annotations

import copy
import errno
import sqlite3

import pytest

from iovctl.adapters.sim.host import SimulatedHost
from iovctl.adapters.sim.spec import load_spec, parse_spec
from iovctl.domain.model import (
    SCRUBBED,
    LinkState,
    VfSetting,
    VfSettings,
    VlanProtocol,
)
from iovctl.errors import HardwareError, NotFound, UnsupportedVfSetting


def make_host(spec_name_or_doc) -> SimulatedHost:
    spec = (
        load_spec(spec_name_or_doc)
        if isinstance(spec_name_or_doc, str)
        else parse_spec(copy.deepcopy(spec_name_or_doc))
    )
    conn = sqlite3.connect(":memory:", isolation_level=None)
    host = SimulatedHost(conn, spec)
    host.ensure_schema()
    return host


@pytest.fixture
def igb() -> SimulatedHost:
    return make_host("igb")


@pytest.fixture
def demo() -> SimulatedHost:
    return make_host("demo")


def hw_error(call, code: str, err_no: int) -> HardwareError:
    with pytest.raises(HardwareError) as exc_info:
        call()
    err = exc_info.value
    assert (err.code, err.errno, err.exit_code) == (code, err_no, 5)
    assert err.message and err.hint
    return err


# -- the bus -----------------------------------------------------------------------------


def test_adapters_are_sorted_and_boot_with_the_specs_vf_count(demo):
    assert [a.name for a in demo.adapters()] == ["eno1", "enp1s0", "ens2f0", "ens3f0np0"]
    assert all(a.num_vfs == 0 for a in demo.adapters())
    assert demo.backend_name == "simulated:demo"
    assert demo.host_facts() == load_spec("demo").facts


def test_spec_num_vfs_is_the_boot_state():
    doc = {
        "name": "booted",
        "adapters": [
            {
                "name": "enp1s0",
                "pci_address": "0000:01:00.0",
                "driver": "igb",
                "sriov": {"total_vfs": 7},
                "num_vfs": 2,
            }
        ],
    }
    host = make_host(doc)
    assert host.adapter("enp1s0").num_vfs == 2
    assert [vf.index for vf in host.virtual_functions("enp1s0")] == [0, 1]
    host.ensure_schema()  # idempotent: powering on again keeps the state
    host.set_num_vfs("enp1s0", 0)
    host.ensure_schema()
    assert host.adapter("enp1s0").num_vfs == 0


def test_unknown_adapter_is_not_found_listing_the_real_ones(igb):
    for call in (
        lambda: igb.adapter("eth9"),
        lambda: igb.set_num_vfs("eth9", 1),
        lambda: igb.virtual_functions("eth9"),
        lambda: igb.set_vf_settings("eth9", 0, SCRUBBED),
    ):
        with pytest.raises(NotFound) as exc_info:
            call()
        assert exc_info.value.code == "unknown-adapter"
        assert "eth9" in exc_info.value.message and "enp1s0" in exc_info.value.hint


# -- sriov_numvfs: the kernel's rules -------------------------------------------------------


def test_enable_and_disable(igb):
    igb.set_num_vfs("enp1s0", 7)
    assert igb.adapter("enp1s0").num_vfs == 7
    assert igb.adapter("enp1s0").sriov_enabled
    igb.set_num_vfs("enp1s0", 0)
    assert igb.adapter("enp1s0").num_vfs == 0
    assert igb.virtual_functions("enp1s0") == []


def test_nonzero_to_another_nonzero_is_ebusy(igb):
    igb.set_num_vfs("enp1s0", 3)
    err = hw_error(lambda: igb.set_num_vfs("enp1s0", 5), "vf-count-busy", errno.EBUSY)
    assert "igb" in err.message and "3" in err.message
    assert igb.adapter("enp1s0").num_vfs == 3
    igb.set_num_vfs("enp1s0", 0)
    igb.set_num_vfs("enp1s0", 5)
    assert igb.adapter("enp1s0").num_vfs == 5


def test_above_total_vfs_is_erange(igb):
    err = hw_error(lambda: igb.set_num_vfs("enp1s0", 8), "vf-count-out-of-range", errno.ERANGE)
    assert "igb" in err.message and "7" in err.message
    # ERANGE is checked before EBUSY, as in iov.c.
    igb.set_num_vfs("enp1s0", 3)
    hw_error(lambda: igb.set_num_vfs("enp1s0", 8), "vf-count-out-of-range", errno.ERANGE)


def test_same_value_is_a_no_op_that_keeps_vf_settings(igb):
    igb.set_num_vfs("enp1s0", 3)
    tenant = SCRUBBED.with_(mac="52:54:00:00:00:01", vlan=10)
    igb.set_vf_settings("enp1s0", 1, tenant)
    igb.set_num_vfs("enp1s0", 3)  # not EBUSY, and the VFs are not recreated
    assert igb.virtual_function("enp1s0", 1).settings == tenant
    igb.set_num_vfs("enp1s0", 0)
    igb.set_num_vfs("enp1s0", 0)


def test_recreated_vfs_start_scrubbed(igb):
    igb.set_num_vfs("enp1s0", 2)
    igb.set_vf_settings("enp1s0", 0, SCRUBBED.with_(mac="52:54:00:00:00:01", trust=True))
    igb.set_num_vfs("enp1s0", 0)
    igb.set_num_vfs("enp1s0", 2)
    assert all(vf.settings == SCRUBBED for vf in igb.virtual_functions("enp1s0"))


NO_DRIVER = {
    "name": "nodriver",
    "adapters": [
        {
            "name": "enp9s0",
            "pci_address": "0000:09:00.0",
            "driver": None,
            "sriov": {"total_vfs": 4},
        }
    ],
}


def test_no_pf_driver_is_enoent():
    host = make_host(NO_DRIVER)
    err = hw_error(lambda: host.set_num_vfs("enp9s0", 2), "no-pf-driver", errno.ENOENT)
    assert "0000:09:00.0" in err.hint
    host.set_num_vfs("enp9s0", 0)  # same value: a no-op even without a driver
    # ERANGE comes before ENOENT (iov.c checks the total first).
    hw_error(lambda: host.set_num_vfs("enp9s0", 5), "vf-count-out-of-range", errno.ERANGE)


def test_adapter_without_sriov_has_no_numvfs_attribute(demo):
    err = hw_error(lambda: demo.set_num_vfs("eno1", 1), "sriov-not-capable", errno.ENOENT)
    assert "eno1" in err.message
    assert demo.virtual_functions("eno1") == []
    assert demo.unsupported_vf_settings("eno1") == frozenset(VfSetting)


def test_kernel_without_pci_iov_has_no_numvfs_attribute():
    doc = {**copy.deepcopy(NO_DRIVER), "kernel": {"pci_iov": False}}
    doc["adapters"][0]["driver"] = "igb"
    host = make_host(doc)
    hw_error(lambda: host.set_num_vfs("enp9s0", 1), "sriov-not-capable", errno.ENOENT)


def test_firmware_without_sriov_leaves_no_room_for_vfs():
    host = make_host("bios-off")
    err = hw_error(lambda: host.set_num_vfs("enp1s0", 1), "vf-resources-missing", errno.ENOMEM)
    assert "igb" in err.message
    assert host.adapter("enp1s0").num_vfs == 0


@pytest.mark.parametrize("missing", ["bus_resources", "vf_bar_space"])
def test_missing_bus_numbers_or_bar_space_is_enomem(missing):
    doc = copy.deepcopy(NO_DRIVER)
    doc["adapters"][0]["driver"] = "ixgbe"
    doc["adapters"][0]["sriov"][missing] = False
    host = make_host(doc)
    hw_error(lambda: host.set_num_vfs("enp9s0", 1), "vf-resources-missing", errno.ENOMEM)


# -- VF addresses and IOMMU groups -------------------------------------------------------------


def test_igb_vf_pci_addresses_follow_offset_and_stride(igb):
    igb.set_num_vfs("enp1s0", 7)
    vfs = igb.virtual_functions("enp1s0")
    assert [vf.pci_address for vf in vfs] == [
        "0000:01:10.0",
        "0000:01:10.2",
        "0000:01:10.4",
        "0000:01:10.6",
        "0000:01:11.0",
        "0000:01:11.2",
        "0000:01:11.4",
    ]
    assert [vf.index for vf in vfs] == list(range(7))
    assert [vf.netdev for vf in vfs] == [f"enp1s0v{i}" for i in range(7)]
    assert all(vf.adapter == "enp1s0" for vf in vfs)
    assert igb.virtual_function("enp1s0", 4).pci_address == "0000:01:11.0"


def test_each_vf_has_its_own_iommu_group_with_acs(igb):
    igb.set_num_vfs("enp1s0", 3)
    groups = [vf.iommu_group for vf in igb.virtual_functions("enp1s0")]
    assert None not in groups and len(set(groups)) == 3


def test_vfs_share_a_group_without_acs():
    doc = {**copy.deepcopy(NO_DRIVER), "firmware": {"acs": False}}
    doc["adapters"][0]["driver"] = "ixgbe"
    host = make_host(doc)
    host.set_num_vfs("enp9s0", 3)
    groups = {vf.iommu_group for vf in host.virtual_functions("enp9s0")}
    assert len(groups) == 1 and None not in groups


def test_no_iommu_no_groups():
    host = make_host("no-iommu")
    host.set_num_vfs("enp1s0", 2)  # VFs exist without an IOMMU; they just cannot be isolated
    assert [vf.iommu_group for vf in host.virtual_functions("enp1s0")] == [None, None]


def test_groups_differ_between_adapters(demo):
    demo.set_num_vfs("enp1s0", 2)
    demo.set_num_vfs("ens2f0", 2)
    a = {vf.iommu_group for vf in demo.virtual_functions("enp1s0")}
    b = {vf.iommu_group for vf in demo.virtual_functions("ens2f0")}
    assert not a & b


def test_a_vf_out_of_range_is_einval(igb):
    igb.set_num_vfs("enp1s0", 2)
    hw_error(lambda: igb.virtual_function("enp1s0", 2), "vf-not-found", errno.EINVAL)
    hw_error(lambda: igb.set_vf_settings("enp1s0", 2, SCRUBBED), "vf-not-found", errno.EINVAL)


# -- VF settings: what the driver takes and refuses ---------------------------------------------


def test_supported_settings_are_stored_exactly(igb):
    igb.set_num_vfs("enp1s0", 2)
    settings = VfSettings(
        mac="52:54:00:12:34:56",
        vlan=100,
        qos=7,
        spoof_check=False,
        trust=True,
        max_rate=500,
    )
    igb.set_vf_settings("enp1s0", 1, settings)
    assert igb.virtual_function("enp1s0", 1).settings == settings
    assert igb.virtual_functions("enp1s0")[0].settings == SCRUBBED
    igb.set_vf_settings("enp1s0", 1, SCRUBBED)
    assert igb.virtual_function("enp1s0", 1).settings == SCRUBBED


@pytest.mark.parametrize(
    ("change", "label", "err_no"),
    [
        ({"link_state": LinkState.DISABLE}, "link state", errno.EOPNOTSUPP),
        ({"min_rate": 100}, "min rate", errno.EINVAL),
        ({"vlan_protocol": VlanProtocol.DOT1AD}, "802.1ad VLAN protocol", errno.EPROTONOSUPPORT),
    ],
)
def test_igb_refuses_what_it_cannot_do_naming_the_driver(igb, change, label, err_no):
    igb.set_num_vfs("enp1s0", 1)
    with pytest.raises(UnsupportedVfSetting) as exc_info:
        igb.set_vf_settings("enp1s0", 0, SCRUBBED.with_(vlan=5, **change))
    err = exc_info.value
    assert err.code == "vf-setting-unsupported" and err.exit_code == 5
    assert (err.driver, err.setting, err.errno) == ("igb", label, err_no)
    assert err.message == f"the igb driver does not support {label} on VFs"
    assert err.hint
    assert igb.virtual_function("enp1s0", 0).settings == SCRUBBED  # nothing half-applied


def test_unsupported_settings_left_at_default_are_not_refused(igb):
    igb.set_num_vfs("enp1s0", 1)
    igb.set_vf_settings("enp1s0", 0, SCRUBBED.with_(link_state=LinkState.AUTO, min_rate=0))


@pytest.mark.parametrize(
    "settings",
    [SCRUBBED.with_(qos=8), SCRUBBED.with_(vlan=4096), SCRUBBED.with_(vlan=-1)],
    ids=["qos-8", "vlan-4096", "vlan-negative"],
)
def test_out_of_range_vlan_or_qos_is_einval(igb, settings):
    igb.set_num_vfs("enp1s0", 1)
    err = hw_error(
        lambda: igb.set_vf_settings("enp1s0", 0, settings), "vf-setting-invalid", errno.EINVAL
    )
    assert "igb" in err.message


def test_unsupported_settings_come_from_the_spec(igb, demo):
    assert VfSetting.LINK_STATE in igb.unsupported_vf_settings("enp1s0")
    assert VfSetting.PVLAN in demo.unsupported_vf_settings("ens2f0")
    assert VfSetting.MIN_RATE not in demo.unsupported_vf_settings("ens3f0np0")


def test_mlx5_takes_min_rate_and_link_state(demo):
    demo.set_num_vfs("ens3f0np0", 1)
    settings = SCRUBBED.with_(min_rate=100, link_state=LinkState.ENABLE)
    demo.set_vf_settings("ens3f0np0", 0, settings)
    assert demo.virtual_function("ens3f0np0", 0).settings == settings


def test_state_does_not_roll_back_with_a_command(tmp_path):
    """Like a kernel's: a write is done once it returns, whatever the store does."""
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sqlite.store import SqliteStore

    store = SqliteStore.open(tmp_path)
    host, _ = simulated_machine(load_spec("igb"), tmp_path)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction():
        store.set_desired_num_vfs("enp1s0", 3)
        host.set_num_vfs("enp1s0", 3)
        raise Boom
    assert store.desired_num_vfs() == {}
    again, _ = simulated_machine(load_spec("igb"), tmp_path)  # another process's view
    assert again.adapter("enp1s0").num_vfs == 3
    assert len(again.virtual_functions("enp1s0")) == 3


# -- VF drivers ----------------------------------------------------------------------------


def test_vf_drivers_are_bound_like_the_kernel_does(igb):
    from iovctl.domain.drivers import VfDriver

    igb.set_num_vfs("enp1s0", 2)
    address = igb.virtual_function("enp1s0", 1).pci_address
    assert igb.bind_vf_driver("enp1s0", 1, VfDriver.VFIO) == "vfio-pci"
    assert igb.bind_vf_driver("enp1s0", 1, VfDriver.VFIO) == "vfio-pci"  # idempotent
    assert igb.vf_drivers[address] == "vfio-pci"
    assert igb.bind_vf_driver("enp1s0", 1, VfDriver.NET) == "igbvf"
    assert igb.vf_drivers[address] == "igbvf"
    hw_error(lambda: igb.bind_vf_driver("enp1s0", 2, VfDriver.NET), "vf-not-found", errno.EINVAL)


def test_vfio_needs_an_iommu_group():
    from iovctl.domain.drivers import VfDriver

    host = make_host("no-iommu")
    adapter = next(a.name for a in host.adapters() if a.sriov is not None and a.driver)
    host.set_num_vfs(adapter, 1)
    hw_error(lambda: host.bind_vf_driver(adapter, 0, VfDriver.VFIO), "no-iommu", errno.EINVAL)
    assert host.vf_drivers == {}  # a refusal binds nothing
    assert host.bind_vf_driver(adapter, 0, VfDriver.NET)
