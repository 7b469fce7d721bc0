"""Suite-wide test selection.

- ``testbed`` tests run only inside the QEMU igb guest, where the testbed's init
  script sets ``IOVCTL_TESTBED=1``; everywhere else they are skipped.
- ``privileged`` tests need root and network namespaces; without them they skip.
- In the second boot of the testbed's ``--reboot-check`` only ``reboot`` tests run:
  everything else ran in the first boot on the same guest configuration, and boot 2
  is there to show what a reboot keeps and what ``apply`` restores.
"""

from __future__ import annotations

import os

import pytest


def _in_testbed() -> bool:
    return os.environ.get("IOVCTL_TESTBED") == "1"


def _can_use_netns() -> bool:
    return os.geteuid() == 0 and os.path.exists("/proc/self/ns/net")


def _second_boot() -> bool:
    return _in_testbed() and os.environ.get("IOVCTL_TESTBED_BOOT") == "2"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _second_boot():
        ran_in_boot1 = [item for item in items if "reboot" not in item.keywords]
        if ran_in_boot1:
            config.hook.pytest_deselected(items=ran_in_boot1)
            items[:] = [item for item in items if "reboot" in item.keywords]
    skip_testbed = pytest.mark.skip(reason="needs the QEMU igb guest (tests/testbed/run)")
    skip_priv = pytest.mark.skip(reason="needs root and network namespaces")
    for item in items:
        if "testbed" in item.keywords and not _in_testbed():
            item.add_marker(skip_testbed)
        if "privileged" in item.keywords and not _can_use_netns():
            item.add_marker(skip_priv)
