"""Issue 4 on real VFs: VMs as network namespaces on the igb guest's VFs.

Two VMs on real VFs ping each other through the NIC's own switch. (A VM on the
synthetic path does not reach a VM on a VF here: frames the PF sends are not looped
back to its VFs in QEMU's 82576 model, seen as "Destination Host Unreachable"; the
failover test on real VFs needs a peer both paths reach and is still open.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_iovctl_on_igb import igb_pf, iovctl, js  # this folder is on sys.path

from iovctl.adapters.netns.names import nic_ifname, vm_netns

pytestmark = pytest.mark.testbed


def ipv4(vm: str) -> str:
    out = subprocess.run(
        ["ip", "-n", vm_netns(vm), "-j", "addr", "show", nic_ifname("nic0")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return next(a["local"] for a in json.loads(out.stdout)[0]["addr_info"] if a["family"] == "inet")


def ping(vm: str, dst: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", vm_netns(vm), "ping", "-n", *args, dst],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def two_vms(tmp_path: Path) -> Any:
    state = tmp_path / "state"
    pf = igb_pf(state)["name"]
    iovctl(state, "adapter", "enable", pf, "--num-vfs", "2")
    iovctl(state, "switch", "create", "ext", "--uplink", pf, "--iov")
    for vm in ("a", "b"):
        iovctl(state, "vm", "create", vm)
        iovctl(state, "nic", "add", vm, "--switch", "ext", "--iov-weight", "50")
        iovctl(state, "vm", "start", vm)
    yield state
    for vm in ("a", "b"):
        iovctl(state, "vm", "stop", vm, ok=False)
        iovctl(state, "vm", "delete", vm, ok=False)
    iovctl(state, "switch", "delete", "ext", ok=False)
    iovctl(state, "adapter", "disable", pf, ok=False)


@pytest.mark.skipif(
    os.environ.get("IOVCTL_TESTBED_IOMMU") != "1",
    reason="without an IOMMU the switch keeps NICs on the software path (tested in test_iovctl_on_igb)",
)
def test_two_vms_on_real_vfs_ping_each_other(two_vms: Path) -> None:
    for vm in ("a", "b"):
        nic = js(two_vms, "nic", "show", vm, "nic0")
        assert nic["iov_usage"] and nic["vf_data_path_active"], nic["status_description"]
    result = ping("a", ipv4("b"), "-c", "3", "-W", "2")
    assert result.returncode == 0, result.stdout + result.stderr
