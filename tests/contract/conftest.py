"""Backends the hardware contract runs against.

Default: the simulated igb host (in-memory SQLite). In the QEMU testbed
(``IOVCTL_TESTBED=1``) the same tests run against the real kernel: the Linux
backend and the guest's igb PF. Set ``IOVCTL_CONTRACT_BACKEND=sim`` there to force
the simulator.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from iovctl.ports import HostHardware


def _sim() -> HostHardware:
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sim.spec import load_spec

    host, _ = simulated_machine(load_spec("igb"))
    return host


def _linux() -> HostHardware:
    from iovctl.adapters.linux.host import LinuxHost

    return LinuxHost()


def backend_name() -> str:
    default = "linux" if os.environ.get("IOVCTL_TESTBED") == "1" else "sim"
    return os.environ.get("IOVCTL_CONTRACT_BACKEND", default)


@pytest.fixture
def hardware() -> Iterator[HostHardware]:
    hw = _linux() if backend_name() == "linux" else _sim()
    pf = _first_pf(hw)
    if backend_name() == "linux":
        # igb refuses VF rates while the PF link is down: bring it up, as an admin would.
        subprocess.run(["ip", "link", "set", pf, "up"], check=False)
    hw.set_num_vfs(pf, 0)
    yield hw
    hw.set_num_vfs(pf, 0)


def _first_pf(hw: HostHardware) -> str:
    for adapter in hw.adapters():
        if adapter.sriov is not None and adapter.driver is not None:
            return adapter.name
    raise AssertionError("no SR-IOV PF with a driver on this backend")


@pytest.fixture
def pf(hardware: HostHardware) -> str:
    return _first_pf(hardware)
