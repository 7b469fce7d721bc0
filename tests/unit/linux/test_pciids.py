"""PciIds: model names from a pci.ids file under the root, lazily, with a fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from iovctl.adapters.linux.pciids import PciIds

PCI_IDS = """\
#
#\tList of PCI ID's
#
# Vendors, devices and subsystems. Please keep sorted.

0001  SafeNet (wrong ID)
8086  Intel Corporation
\t0007  82379AB
\t10c9  82576 Gigabit Network Connection
\t\t8086 a03c  Ethernet Server Adapter I340-T4
\t10ca  82576 Virtual Function
\t1572  Ethernet Controller X710 for 10GbE SFP+
15b3  Mellanox Technologies
\t101f  MT2894 Family [ConnectX-6 Lx]

# List of known device classes, subclasses and programming interfaces
C 02  Network controller
\t00  Ethernet controller
"""


@pytest.fixture
def ids(tmp_path: Path) -> PciIds:
    path = tmp_path / "usr" / "share" / "misc" / "pci.ids"
    path.parent.mkdir(parents=True)
    path.write_text(PCI_IDS)
    return PciIds(tmp_path)


@pytest.mark.parametrize(
    ("vendor", "device", "model"),
    [
        ("8086", "10c9", "Intel Corporation 82576 Gigabit Network Connection"),
        ("0x8086", "0x10CA", "Intel Corporation 82576 Virtual Function"),
        ("15b3", "101f", "Mellanox Technologies MT2894 Family [ConnectX-6 Lx]"),
        ("8086", "ffff", "Intel Corporation 8086:ffff"),
        ("1af4", "1041", "1af4:1041"),
    ],
)
def test_model(ids: PciIds, vendor: str, device: str, model: str) -> None:
    assert ids.model(vendor, device) == model


def test_subsystem_lines_are_not_devices(ids: PciIds) -> None:
    assert ids.device_name("8086", "a03c") is None


def test_only_the_vendors_asked_for_are_parsed(ids: PciIds) -> None:
    ids.model("8086", "10c9")
    ids.model("8086", "10ca")
    assert list(ids._vendors) == ["8086"]
    assert ids.vendor_name("8086") == "Intel Corporation"


def test_class_section_is_not_a_vendor(ids: PciIds) -> None:
    assert ids.vendor_name("C 02") is None
    assert ids.model("0002", "0000") == "0002:0000"


def test_missing_database_falls_back_to_ids(tmp_path: Path) -> None:
    assert PciIds(tmp_path).model("8086", "10c9") == "8086:10c9"


def test_hwdata_location(tmp_path: Path) -> None:
    path = tmp_path / "usr" / "share" / "hwdata" / "pci.ids"
    path.parent.mkdir(parents=True)
    path.write_text(PCI_IDS)
    assert PciIds(tmp_path).device_name("8086", "1572") == "Ethernet Controller X710 for 10GbE SFP+"
