"""adapters.sim.spec: host specs load, validate every field, and name what is wrong."""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pytest
import yaml

from iovctl.adapters.sim.spec import (
    BUILTIN_SPECS,
    load_spec,
    parse_spec,
    spec_from_json,
    spec_to_json,
)
from iovctl.domain.model import HostFacts, VfSetting
from iovctl.errors import InvalidInput, NotFound

MINIMAL: dict[str, Any] = {
    "name": "mini",
    "adapters": [{"name": "eth0", "pci_address": "0000:01:00.0"}],
}

FULL: dict[str, Any] = {
    "name": "full",
    "description": "every key",
    "cpu": {"vendor": "amd", "virtualization": True, "slat": True},
    "iommu": {"present": True, "enabled": True, "dma_remapping": True, "interrupt_remapping": True},
    "firmware": {"sriov_enabled": True, "pcie_native_control": True, "acs": True},
    "kernel": {"pci_iov": True, "vfio_pci": True, "cmdline": "amd_iommu=on"},
    "adapters": [
        {
            "name": "enp1s0",
            "pci_address": "0000:01:00.0",
            "vendor_id": "8086",
            "device_id": "10c9",
            "driver": "igb",
            "model": "82576",
            "link_speed_mbps": 1000,
            "numa_node": 0,
            "mac": "52:54:00:aa:00:01",
            "sriov": {
                "total_vfs": 7,
                "queue_pairs": 8,
                "max_queue_pairs_per_vf": 1,
                "vf_driver": "igbvf",
                "vf_device_id": "10ca",
                "vf_offset": 128,
                "vf_stride": 2,
                "unsupported": ["link-state", "min-rate"],
                "bus_resources": True,
                "vf_bar_space": True,
            },
            "num_vfs": 2,
        },
        {"name": "eno1", "pci_address": "0000:00:1f.6", "mac": "52:54:00:aa:00:02"},
    ],
}


def full() -> dict[str, Any]:
    return copy.deepcopy(FULL)


def invalid(doc: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as exc_info:
        parse_spec(doc)
    err = exc_info.value
    assert err.code == "invalid-host-spec"
    assert err.exit_code == 2
    assert err.hint
    return err


# -- what loads ---------------------------------------------------------------------


def test_every_builtin_spec_loads_and_ships_as_a_file():
    shipped = {
        p.name.removesuffix(".yaml")
        for p in resources.files("iovctl.adapters.sim").joinpath("specs").iterdir()
        if p.name.endswith(".yaml")
    }
    assert shipped == set(BUILTIN_SPECS) == {"demo", "igb", "no-iommu", "bios-off"}
    for name in BUILTIN_SPECS:
        spec = load_spec(name)
        assert spec.name == name
        assert spec.adapters


def test_demo_spec_has_several_vendors_and_one_nic_without_sriov():
    spec = load_spec("demo")
    vendors = {a.adapter.vendor_id for a in spec.adapters}
    assert {"8086", "15b3", "10ec"} <= vendors
    without = [a.adapter.name for a in spec.adapters if a.adapter.sriov is None]
    assert without == ["eno1"]
    assert spec.facts == HostFacts(
        cpu_vendor="intel", kernel_cmdline=spec.facts.kernel_cmdline
    )  # every readiness fact true
    caps = {a.adapter.name: a.adapter.sriov for a in spec.adapters if a.adapter.sriov}
    assert (caps["ens2f0"].total_vfs, caps["ens2f0"].max_queue_pairs_per_vf) == (256, 16)
    assert (caps["ens3f0np0"].total_vfs, caps["ens3f0np0"].max_queue_pairs_per_vf) == (127, 4)


def test_igb_spec_is_the_measured_82576():
    (a,) = load_spec("igb").adapters
    cap = a.adapter.sriov
    assert cap is not None
    assert (a.adapter.driver, cap.total_vfs, cap.vf_driver) == ("igb", 7, "igbvf")
    assert (a.vf_offset, a.vf_stride) == (128, 2)
    assert {VfSetting.LINK_STATE, VfSetting.MIN_RATE, VfSetting.VLAN_PROTOCOL} <= cap.unsupported


def test_not_ready_specs_turn_off_the_right_facts():
    no_iommu = load_spec("no-iommu").facts
    assert (no_iommu.iommu_present, no_iommu.iommu_enabled) == (False, False)
    bios_off = load_spec("bios-off").facts
    assert (bios_off.firmware_sriov_enabled, bios_off.pcie_native_control) == (False, False)
    assert bios_off.iommu_present


def test_minimal_spec_gets_documented_defaults():
    spec = parse_spec(copy.deepcopy(MINIMAL))
    assert spec.facts == HostFacts()
    (a,) = spec.adapters
    assert a.adapter.sriov is None and a.adapter.driver is None
    assert (a.adapter.vendor_id, a.adapter.link_speed_mbps, a.adapter.num_vfs) == ("8086", 1000, 0)
    assert a.adapter.mac == "52:54:00:00:00:00"


def test_sriov_defaults_come_from_the_driver_table():
    doc = copy.deepcopy(MINIMAL)
    doc["adapters"][0].update(driver="ixgbe", sriov={"total_vfs": 63, "max_queue_pairs_per_vf": 2})
    cap = parse_spec(doc).adapters[0].adapter.sriov
    assert cap is not None
    assert cap.queue_pairs == 126  # total_vfs * per-VF limit
    assert cap.vf_driver == "ixgbevf"
    assert VfSetting.MIN_RATE in cap.unsupported
    assert (cap.bus_resources, cap.vf_bar_space) == (True, True)


def test_full_spec_values_are_kept():
    spec = parse_spec(full())
    assert spec.description == "every key"
    assert spec.facts.cpu_vendor == "amd" and spec.facts.kernel_cmdline == "amd_iommu=on"
    igb = spec.adapter_spec("enp1s0")
    assert igb is not None and igb.adapter.num_vfs == 2
    assert igb.adapter.sriov.unsupported == frozenset({VfSetting.LINK_STATE, VfSetting.MIN_RATE})
    assert spec.adapter_spec("nope") is None


def test_hex_ids_and_pci_addresses_are_normalised():
    doc = copy.deepcopy(MINIMAL)
    doc["adapters"][0].update(pci_address="0000:3B:00.0", vendor_id="0x15B3", device_id="1017")
    a = parse_spec(doc).adapters[0].adapter
    assert (a.pci_address, a.vendor_id, a.device_id) == ("0000:3b:00.0", "15b3", "1017")


def test_json_round_trip_keeps_the_host():
    spec = load_spec("demo")
    again = spec_from_json(spec_to_json(spec))
    assert again.adapters == spec.adapters and again.facts == spec.facts


# -- files and names ------------------------------------------------------------------


def test_a_yaml_file_path_works(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_text(yaml.safe_dump(full()))
    spec = load_spec(str(path))
    assert spec.name == "full"
    assert [a.adapter.name for a in spec.adapters] == ["enp1s0", "eno1"]


def test_unknown_name_is_not_found():
    with pytest.raises(NotFound) as exc_info:
        load_spec("no-such-host")
    err = exc_info.value
    assert err.code == "unknown-host-spec" and err.exit_code == 3
    assert "no-such-host" in err.message
    assert all(name in err.hint for name in BUILTIN_SPECS)


def test_a_directory_is_not_a_spec(tmp_path):
    with pytest.raises(NotFound):
        load_spec(str(tmp_path))


def test_a_file_that_is_not_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput) as exc_info:
        load_spec(str(path))
    assert exc_info.value.code == "invalid-host-spec"
    assert str(path) in exc_info.value.message


def test_an_empty_file_is_invalid(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(InvalidInput) as exc_info:
        load_spec(str(path))
    assert "document" in exc_info.value.message


# -- every malformed field names itself --------------------------------------------------


def _set(path: str, value: Any):
    """A mutation of FULL: set the dotted ``path`` (adapters.0.sriov.total_vfs) to value."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str):
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


A0 = "adapters.0"
S0 = "adapters.0.sriov"

MALFORMED = [
    # (mutation, text the message must contain)
    (_drop("name"), "name: is required"),
    (_set("name", ""), "name: is required"),
    (_set("name", 42), "name: must be 1-64 letters"),
    (_set("name", "a b"), "name: must be 1-64 letters"),
    (_set("name", "x" * 65), "name: must be 1-64 letters"),
    (_drop("adapters"), "adapters: must be a non-empty list"),
    (_set("adapters", []), "adapters: must be a non-empty list"),
    (_set("adapters", {"name": "eth0"}), "adapters: must be a non-empty list"),
    (_set(A0, "eth0"), "adapters[0]: must be a mapping"),
    (_drop(f"{A0}.name"), "adapters[0].name"),
    (_set(f"{A0}.name", "a/b"), "adapters[0].name"),
    (_set(f"{A0}.name", "x" * 16), "adapters[0].name"),
    (_set(f"{A0}.name", ""), "adapters[0].name"),
    (_drop(f"{A0}.pci_address"), "adapter enp1s0.pci_address"),
    (_set(f"{A0}.pci_address", "01:00.0"), "adapter enp1s0.pci_address"),
    (_set(f"{A0}.pci_address", "0000:01:00.8"), "adapter enp1s0.pci_address"),
    (_set(f"{A0}.pci_address", "0000:01:20.0"), "adapter enp1s0.pci_address"),
    (_set(f"{A0}.pci_address", "0000:01:00.0\n"), "adapter enp1s0.pci_address"),
    (_set(f"{A0}.vendor_id", "intel"), "adapter enp1s0.vendor_id"),
    (_set(f"{A0}.device_id", "10c"), "adapter enp1s0.device_id"),
    (_set(f"{A0}.driver", 5), "adapter enp1s0.driver"),
    (_set(f"{A0}.link_speed_mbps", -1), "adapter enp1s0.link_speed_mbps"),
    (_set(f"{A0}.link_speed_mbps", "fast"), "adapter enp1s0.link_speed_mbps"),
    (_set(f"{A0}.numa_node", True), "adapter enp1s0.numa_node"),
    (_set(f"{A0}.mac", "not-a-mac"), "adapter enp1s0.mac"),
    (_set(f"{A0}.mac", "01:00:5e:00:00:01"), "adapter enp1s0.mac"),
    (_set(f"{A0}.num_vfs", 8), "adapter enp1s0.num_vfs"),
    (_set(f"{A0}.num_vfs", -1), "adapter enp1s0.num_vfs"),
    (_set(S0, "yes"), "adapter enp1s0.sriov: must be a mapping"),
    (_set(S0, [7]), "adapter enp1s0.sriov: must be a mapping"),
    (_drop(f"{S0}.total_vfs"), "adapter enp1s0.sriov.total_vfs: is required"),
    (_set(f"{S0}.total_vfs", 0), "adapter enp1s0.sriov.total_vfs"),
    (_set(f"{S0}.total_vfs", 2049), "adapter enp1s0.sriov.total_vfs"),
    (_set(f"{S0}.total_vfs", "7"), "adapter enp1s0.sriov.total_vfs"),
    (_set(f"{S0}.total_vfs", 7.0), "adapter enp1s0.sriov.total_vfs"),
    (_set(f"{S0}.queue_pairs", -8), "adapter enp1s0.sriov.queue_pairs"),
    (_set(f"{S0}.max_queue_pairs_per_vf", False), "adapter enp1s0.sriov.max_queue_pairs_per_vf"),
    (_set(f"{S0}.vf_device_id", "xyz"), "adapter enp1s0.sriov.vf_device_id"),
    (_set(f"{S0}.unsupported", ["link-state", "teleport"]), "adapter enp1s0.sriov.unsupported"),
    (_set(f"{S0}.unsupported", 5), "adapter enp1s0.sriov.unsupported"),
    (_set(f"{S0}.bus_resources", "no"), "adapter enp1s0.sriov.bus_resources"),
    (_set(f"{S0}.vf_bar_space", 0), "adapter enp1s0.sriov.vf_bar_space"),
    (_set(f"{S0}.vf_offset", -1), "adapter enp1s0.sriov.vf_offset"),
    (_set(f"{S0}.vf_stride", "2"), "adapter enp1s0.sriov.vf_stride"),
    # -- impossible values (issue 9, item 4): accepted once, then nonsense downstream
    (_set(f"{S0}.vf_stride", 0), "adapter enp1s0.sriov.vf_stride"),
    (
        _set("adapters", [{"name": f"e{i}", "pci_address": "0000:01:00.0"} for i in range(257)]),
        "adapters: more than 256",
    ),
    (_set(f"{S0}.vf_offset", 0), "adapter enp1s0.sriov.vf_offset"),
    (_set(f"{S0}.vf_offset", 0x10000), "adapter enp1s0.sriov.vf_offset"),
    (_set(f"{S0}.vf_offset", 0xFEFF), "past the PCI address space"),
    (_set(f"{S0}.vf_stride", 0x3000), "past the PCI address space"),
    (_set(f"{S0}.queue_pairs", 0), "adapter enp1s0.sriov.queue_pairs"),
    (_set(f"{S0}.max_queue_pairs_per_vf", 0), "adapter enp1s0.sriov.max_queue_pairs_per_vf"),
    (_set(f"{S0}.max_queue_pairs_per_vf", 9), "exceeds the PF's queue_pairs"),
    (_set(f"{S0}.queue_pairs", 10**30), "adapter enp1s0.sriov.queue_pairs"),
    (_set(f"{A0}.link_speed_mbps", 0), "adapter enp1s0.link_speed_mbps"),
    (_set(f"{A0}.link_speed_mbps", 1_600_001), "adapter enp1s0.link_speed_mbps"),
    (_set(f"{A0}.link_speed_mbps", 10**100), "adapter enp1s0.link_speed_mbps"),
    (_set(f"{A0}.numa_node", 10**9), "adapter enp1s0.numa_node"),
    (_set(f"{A0}.model", "x" * 5000), "adapter enp1s0.model"),
    (_set(f"{A0}.model", ["list"]), "adapter enp1s0.model"),
    (_set("cpu.vendor", {"a": 1}), "cpu.vendor"),
    (_set("adapters.1.num_vfs", 1), "adapter eno1.num_vfs"),  # no sriov block
    (_set("adapters.1.name", "enp1s0"), "adapters: duplicate name: enp1s0"),
    (_set("adapters.1.pci_address", "0000:01:00.0"), "adapters: duplicate pci_address"),
    (_set("adapters.1.mac", "52:54:00:AA:00:01"), "adapters: duplicate mac: 52:54:00:aa:00:01"),
    (_set("cpu", "fast"), "cpu: must be a mapping"),
    (_set("cpu", []), "cpu: must be a mapping"),
    (_set("iommu", ["enabled"]), "iommu: must be a mapping"),
    (_set("firmware", False), "firmware: must be a mapping"),
    (_set("kernel", 1), "kernel: must be a mapping"),
    (_set("cpu.virtualization", "yes"), "cpu.virtualization"),
    (_set("cpu.slat", 1), "cpu.slat"),
    (_set("iommu.present", None), "iommu.present"),
    (_set("iommu.enabled", "on"), "iommu.enabled"),
    (_set("iommu.dma_remapping", 0), "iommu.dma_remapping"),
    (_set("iommu.interrupt_remapping", "true"), "iommu.interrupt_remapping"),
    (_set("firmware.sriov_enabled", "off"), "firmware.sriov_enabled"),
    (_set("firmware.pcie_native_control", 1), "firmware.pcie_native_control"),
    (_set("firmware.acs", []), "firmware.acs"),
    (_set("kernel.pci_iov", "y"), "kernel.pci_iov"),
    (_set("kernel.vfio_pci", 1), "kernel.vfio_pci"),
]


@pytest.mark.parametrize(("mutate", "field"), MALFORMED, ids=[f for _, f in MALFORMED])
def test_each_malformed_field_is_named(mutate, field):
    doc = full()
    mutate(doc)
    err = invalid(doc)
    assert err.message.startswith("host spec: ")
    assert field in err.message


@pytest.mark.parametrize("doc", [None, [], "name: x", 42])
def test_a_document_that_is_not_a_mapping(doc):
    assert "document" in invalid(doc).message
