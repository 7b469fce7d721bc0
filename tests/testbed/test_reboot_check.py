"""Demonstrates ``bash tests/testbed/run --reboot-check``: the guest boots twice on
the same disk; disk state survives, kernel state (VFs) does not.

``IOVCTL_TESTBED_BOOT`` is 1 or 2, ``IOVCTL_TESTBED_BOOTS`` is 2 with --reboot-check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed

BOOT = int(os.environ.get("IOVCTL_TESTBED_BOOT", "1"))
BOOTS = int(os.environ.get("IOVCTL_TESTBED_BOOTS", "1"))
STATE = Path("/var/lib/iovctl-testbed/reboot-check.json")


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def igb_numvfs() -> list[int]:
    return [
        int((drv / "sriov_numvfs").read_text())
        for drv in Path("/sys/bus/pci/drivers/igb").glob("0000:*")
    ]


@pytest.mark.reboot
@pytest.mark.skipif(BOOT != 1 or BOOTS < 2, reason="only in the first boot of --reboot-check")
def test_first_boot_stores_state_on_disk() -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"boot_id": boot_id()}))


@pytest.mark.reboot
@pytest.mark.skipif(BOOT != 2, reason="only in the second boot of --reboot-check")
def test_second_boot_sees_disk_state_and_fresh_kernel() -> None:
    assert STATE.exists(), "state written in boot 1 is gone"
    assert json.loads(STATE.read_text())["boot_id"] != boot_id(), "not a new boot"
    assert igb_numvfs() and all(n == 0 for n in igb_numvfs())
