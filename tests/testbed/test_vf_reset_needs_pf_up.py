"""Why a VF handed to a VM can come up with a random MAC: igbvf's reset needs the PF up.

An igbvf probe resets the VF through the PF's mailbox. igb serves it, and clears the
mailbox's RSTI bit (CTRL_EXT.PFRSTD), only while the PF's netdev is open: with the PF
down the probe says "PF still in reset state" and takes a random MAC as the VF's
permanent address, which net_failover compares with the virtio NIC's MAC. iovctl's
Linux backend therefore brings a PF that is down up before enabling VFs. README,
"The igbvf 'PF still in reset state' catch".
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iovctl.adapters.linux.host import LinuxHost

pytestmark = pytest.mark.testbed

PF_DEV = Path("/sys/bus/pci/devices/0000:01:00.0")
MAC = "52:54:00:aa:bb:01"


def pf_name() -> str:
    return next((PF_DEV / "net").iterdir()).name


def vf_address() -> str:
    return os.path.basename(os.readlink(PF_DEV / "virtfn0"))


def probe_igbvf(vf: str) -> str:
    """Bind the VF to igbvf (a fresh probe) and return its netdev's permanent MAC."""
    dev = Path("/sys/bus/pci/devices") / vf
    if (dev / "driver").exists():
        (dev / "driver" / "unbind").write_text(vf)
    (dev / "driver_override").write_text("igbvf")
    Path("/sys/bus/pci/drivers_probe").write_text(vf)
    deadline = time.monotonic() + 30
    while not (dev / "net").is_dir() or not list((dev / "net").iterdir()):
        assert time.monotonic() < deadline, f"no igbvf netdev for {vf}"
        time.sleep(0.05)
    netdev = next((dev / "net").iterdir()).name
    out = subprocess.run(["ethtool", "-P", netdev], capture_output=True, text=True, check=True)
    match = re.search(r"([0-9a-f]{2}(:[0-9a-f]{2}){5})", out.stdout)
    assert match, out.stdout
    return match.group(1)


@pytest.fixture
def one_vf_unprobed() -> Iterator[str]:
    """One VF that no driver has probed yet (autoprobe off while it is created)."""
    (PF_DEV / "sriov_numvfs").write_text("0")  # an earlier test may have left VFs
    (PF_DEV / "sriov_drivers_autoprobe").write_text("0")
    try:
        (PF_DEV / "sriov_numvfs").write_text("1")
        yield vf_address()
    finally:
        subprocess.run(["ip", "link", "set", pf_name(), "up"], check=False)
        (PF_DEV / "sriov_numvfs").write_text("0")
        (PF_DEV / "sriov_drivers_autoprobe").write_text("1")


def test_igbvf_gets_the_pf_assigned_mac_only_while_the_pf_is_up(one_vf_unprobed: str) -> None:
    vf, pf = one_vf_unprobed, pf_name()
    subprocess.run(["ip", "link", "set", pf, "vf", "0", "mac", MAC], check=True)

    subprocess.run(["ip", "link", "set", pf, "down"], check=True)
    assert probe_igbvf(vf) != MAC  # "PF still in reset state": a random permanent MAC

    subprocess.run(["ip", "link", "set", pf, "up"], check=True)
    assert probe_igbvf(vf) == MAC  # the reset handshake gave it the PF-assigned MAC


def test_iovctl_enables_vfs_on_a_pf_it_brings_up_first() -> None:
    pf = pf_name()
    subprocess.run(["ip", "link", "set", pf, "down"], check=True)
    host = LinuxHost()
    try:
        host.set_num_vfs(pf, 1)
        flags = int((Path("/sys/class/net") / pf / "flags").read_text(), 16)
        assert flags & 0x1  # IFF_UP
        subprocess.run(["ip", "link", "set", pf, "vf", "0", "mac", MAC], check=True)
        assert probe_igbvf(vf_address()) == MAC  # a VF reset now completes
    finally:
        subprocess.run(["ip", "link", "set", pf, "up"], check=False)
        (PF_DEV / "sriov_numvfs").write_text("0")
        host.close()
