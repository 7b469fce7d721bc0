"""The libvirt runtime's pure parts: domain XML built and read back, iovctl's ownership
record, refusals, lifecycle events as power changes, capability facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iovctl.adapters.libvirt import domain_xml as dx
from iovctl.adapters.libvirt.facts import offers_kvm, offers_q35, version_triple
from iovctl.adapters.libvirt.lifecycle import power_change
from iovctl.domain.model import VmPowerChange, VmTemplate
from iovctl.errors import InvalidInput

KERNEL = VmTemplate(memory_mib=256, vcpus=2, kernel="/k", initrd="/i", cmdline="console=ttyS0")


def test_a_new_domain_is_q35_with_spare_root_ports_and_iovctls_record() -> None:
    view = dx.parse_domain(dx.new_domain("web", KERNEL, domain_type="qemu"))
    assert (view.name, view.domain_type, view.q35) == ("web", "qemu", True)
    assert view.root_ports == tuple(range(1, dx.SPARE_ROOT_PORTS + 1))
    assert view.free_root_ports() == list(view.root_ports)
    assert view.ownership == dx.Ownership(dx.Origin.DEFINED)


def test_a_disk_domain_boots_its_disk() -> None:
    xml = dx.new_domain("db", VmTemplate(disk="/img/db.qcow2"), domain_type="kvm")
    assert "<boot dev=\"hd\"" in xml and 'type="qcow2"' in xml and "<kernel>" not in xml


@pytest.mark.parametrize(
    "template",
    [
        VmTemplate(),
        VmTemplate(disk="/d.raw", kernel="/k"),
        VmTemplate(disk="/d.raw", initrd="/i"),
        VmTemplate(kernel="/k", memory_mib=16),
        VmTemplate(kernel="/k", vcpus=0),
    ],
)
def test_templates_that_cannot_boot_are_refused_naming_the_vm(template: VmTemplate) -> None:
    with pytest.raises(InvalidInput, match="'web'") as raised:
        dx.new_domain("web", template, domain_type="qemu")
    assert raised.value.code == "bad-vm-template" and raised.value.hint


def test_the_pair_round_trips_and_takes_its_root_ports() -> None:
    xml = dx.new_domain("web", KERNEL, domain_type="qemu")
    alias, vf_alias = dx.pair_aliases("nic0")
    xml = dx.with_device(xml, dx.virtio_interface(alias, "52:54:00:00:00:01", "iovbr1", 2))
    xml = dx.with_device(xml, dx.vf_hostdev(vf_alias, alias, "0000:03:10.1", 3))
    view = dx.parse_domain(xml)
    assert view.interfaces[alias] == dx.Interface("52:54:00:00:00:01", "iovbr1", None)
    assert view.hostdevs == (dx.Hostdev("0000:03:10.1", vf_alias),)
    assert 2 not in view.free_root_ports() and 3 not in view.free_root_ports()
    assert dx.bus_of(xml, vf_alias) == 3
    assert "<teaming type=\"transient\" persistent=\"ua-iovctl-nic0\"" in xml
    assert 'managed="no"' in xml
    back = dx.parse_domain(dx.without_alias(dx.without_alias(xml, vf_alias), alias))
    assert back.hostdevs == () and alias not in back.aliases
    assert back.free_root_ports() == list(back.root_ports)


def test_ownership_round_trips_through_the_metadata() -> None:
    nic = dx.OwnedNic("nic0", "52:54:00:00:00:01", "sw", *dx.pair_aliases("nic0"), vf_port=4)
    record = dx.Ownership(dx.Origin.ADOPTED, spare_ports=(5,), nics=(nic,))
    xml = dx.with_ownership(dx.new_domain("web", KERNEL, domain_type="qemu"), record)
    view = dx.parse_domain(xml)
    assert view.ownership == record
    assert view.ownership.reserved_ports() == {4, 5}
    assert 4 not in view.unreserved_free_ports() and 5 not in view.unreserved_free_ports()
    assert f"xmlns:iovctl=\"{dx.NAMESPACE}\"" in xml
    assert dx.parse_domain(dx.with_ownership(xml, None)).ownership is None


def test_ownership_gives_a_nics_port_back_to_no_one_else() -> None:
    nic = dx.OwnedNic("nic0", "m", "sw", *dx.pair_aliases("nic0"), vf_port=5)
    record = dx.Ownership(dx.Origin.ADOPTED, spare_ports=(5, 6)).with_nic(nic)
    assert record.spare_ports == (6,) and record.nic("nic0") == nic
    assert record.without_nic("nic0").nics == ()


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True))
def test_aliases_are_libvirt_user_aliases_and_tell_nics_apart(nic: str) -> None:
    alias, vf_alias = dx.pair_aliases(nic)
    for a in (alias, vf_alias):
        assert a.startswith("ua-") and all(c.isalnum() or c in "_-" for c in a[3:])
    assert alias != vf_alias
    if "." in nic:
        assert dx.pair_aliases(nic.replace(".", "_"))[0] != alias


def test_a_pc_domain_is_not_q35_and_hotplug_off_ports_are_not_free() -> None:
    xml = (
        "<domain type='kvm'><name>old</name><os><type machine='pc-i440fx-7.2'>hvm</type></os>"
        "<devices><controller type='pci' index='1' model='pcie-root-port'>"
        "<target hotplug='off'/></controller></devices></domain>"
    )
    view = dx.parse_domain(xml)
    assert not view.q35 and view.free_root_ports() == [] and view.ownership is None
    assert dx.is_q35("pc-q35-10.0") and dx.is_q35("q35") and not dx.is_q35("pc")


def test_unreadable_xml_is_refused() -> None:
    with pytest.raises(InvalidInput):
        dx.parse_domain("<domain")
    with pytest.raises(InvalidInput):
        dx.parse_domain("<network/>")


def test_a_hostdev_pool_lists_its_pfs_and_vfs() -> None:
    network = (
        "<network><name>pool</name><forward mode='hostdev' managed='yes'><pf dev='enp3s0'/>"
        "<address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/>"
        "</forward></network>"
    )
    assert dx.hostdev_pools(network) == (["enp3s0"], ["0000:03:10.1"])
    assert dx.hostdev_pools("<network><forward mode='nat'/></network>") == ([], [])


def test_with_root_port_adds_the_next_index() -> None:
    xml, index = dx.with_root_port(dx.new_domain("web", KERNEL, domain_type="qemu"))
    assert index == dx.SPARE_ROOT_PORTS + 1
    assert index in dx.parse_domain(xml).free_root_ports()


@pytest.mark.parametrize(
    ("event", "detail", "change"),
    [
        (2, 0, VmPowerChange("v", True, "started")),
        (5, 0, VmPowerChange("v", False, "shut down")),
        (5, 1, VmPowerChange("v", False, "destroyed")),
        (5, 2, VmPowerChange("v", False, "crashed")),
        (3, 0, None),  # suspended: QEMU keeps its devices
        (0, 0, None),  # defined
    ],
)
def test_lifecycle_events_become_power_changes(
    event: int, detail: int, change: VmPowerChange | None
) -> None:
    assert power_change("v", event, detail) == change


def test_facts_read_versions_and_machine_types() -> None:
    assert version_triple(9_000_000) == (9, 0, 0)
    assert version_triple(10_000_002) == (10, 0, 2)
    caps = (
        "<capabilities><guest><arch name='x86_64'>"
        "<machine canonical='pc-q35-10.0'>q35</machine><domain type='qemu'/>"
        "</arch></guest></capabilities>"
    )
    assert offers_q35(caps) and not offers_kvm(caps)
    assert not offers_q35("<capabilities><guest><arch name='x86_64'>"
                          "<machine>pc</machine></arch></guest></capabilities>")
