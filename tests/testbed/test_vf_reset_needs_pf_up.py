"""Why a VF handed to a VM can come up with a random MAC: igbvf's reset needs the PF up.

An igbvf probe resets the VF through the PF's mailbox. igb serves it, and clears the
mailbox's RSTI bit (CTRL_EXT.PFRSTD), only while the PF's netdev is open: with the PF
down the probe says "PF still in reset state" and takes a random MAC as the VF's
permanent address, which net_failover compares with the virtio NIC's MAC. iovctl's
Linux backend therefore brings a PF that is down up before enabling VFs, and hands no
VF of a PF taken down later to a VM (``pf-down``). README, "The igbvf 'PF still in
reset state' catch".
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_iovctl_on_igb import iovctl, js  # this folder is on sys.path
from test_vms_on_igb_vfs import vf_port

from iovctl.adapters.linux.host import LinuxHost
from iovctl.adapters.netns.names import vm_netns

pytestmark = pytest.mark.testbed
IOMMU = os.environ.get("IOVCTL_TESTBED_IOMMU") == "1"

PF_DEV = Path("/sys/bus/pci/devices/0000:01:00.0")
MAC = "52:54:00:aa:bb:01"


def pf_name() -> str:
    return next((PF_DEV / "net").iterdir()).name


def vf_address() -> str:
    return os.path.basename(os.readlink(PF_DEV / "virtfn0"))


def permanent_mac(netdev: str, *netns: str) -> str:
    out = subprocess.run(
        [*(["ip", "netns", "exec", *netns] if netns else []), "ethtool", "-P", netdev],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"([0-9a-f]{2}(:[0-9a-f]{2}){5})", out.stdout)
    assert match, out.stdout
    return match.group(1)


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
    return permanent_mac(next((dev / "net").iterdir()).name)


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


@pytest.mark.skipif(not IOMMU, reason="without an IOMMU the switch keeps NICs on the software path")
def test_iovctl_gives_no_vf_of_a_pf_taken_down_and_gives_it_once_up(tmp_path: Path) -> None:
    state, pf = tmp_path / "state", pf_name()
    iovctl(state, "adapter", "set", pf, "--num-vfs", "1")
    iovctl(state, "switch", "create", "ext", "--uplink", pf, "--iov")
    iovctl(state, "vm", "create", "web")
    iovctl(state, "nic", "add", "web", "--switch", "ext", "--iov-weight", "50", "--mac", MAC)
    subprocess.run(["ip", "link", "set", pf, "down"], check=True)
    try:
        iovctl(state, "vm", "start", "web")
        nic = js(state, "nic", "show", "web", "nic0")
        assert (nic["status_reason"], nic["iov_usage"]) == ("vf-grant-refused", False), nic
        assert f"adapter {pf} is down" in nic["status_description"]
        subprocess.run(["ip", "link", "set", pf, "up"], check=True)
        iovctl(state, "apply")
        nic = js(state, "nic", "show", "web", "nic0")
        assert (nic["status_reason"], nic["vf_data_path_active"]) == ("on-vf", True), nic
        # The VF's reset completed in the VM: its own address is the NIC's.
        assert permanent_mac(vf_port("web"), vm_netns("web")) == MAC
    finally:
        subprocess.run(["ip", "link", "set", pf, "up"], check=False)
        iovctl(state, "vm", "stop", "web", ok=False)
        iovctl(state, "vm", "delete", "web", ok=False)
        iovctl(state, "switch", "delete", "ext", ok=False)
        iovctl(state, "adapter", "disable", pf, ok=False)
