"""Backends the hardware contract runs against.

Hardware (``hardware``): by default the simulated igb host (in-memory SQLite). In the QEMU testbed
(``IOVCTL_TESTBED=1``) the same tests run against the real kernel: the Linux
backend and the guest's igb PF. Set ``IOVCTL_CONTRACT_BACKEND=sim`` there to force
the simulator.

VM runtimes (``under_test``): the simulated one, the namespace runtime on an
emulated NIC, and the libvirt runtime on a real libvirtd + QEMU (both privileged:
root, under the shared lock).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iovctl.ports import HostHardware

from .libvirt_host import libvirt_host
from .runtimes import RuntimeUnderTest, libvirt_runtime, netns_runtime, sim_runtime

# The namespace runtime's contract runs on the privileged suite's lab.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "privileged"))
from netns_lab import make_lab

__all__ = ["libvirt_host", "make_lab"]


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


@pytest.fixture
def set_pf_up(hardware: HostHardware, pf: str) -> Iterator[Callable[[bool], None]]:
    """The outside world's ``ip link set PF up`` / ``down``; the PF is up afterwards."""
    if backend_name() == "linux":

        def set_up(up: bool) -> None:
            subprocess.run(["ip", "link", "set", pf, "up" if up else "down"], check=True)

    else:
        from iovctl.adapters.sim.host import set_pf_admin_up

        def set_up(up: bool) -> None:
            set_pf_admin_up(hardware.machine, pf, up)  # type: ignore[attr-defined]

    yield set_up
    set_up(True)


def _first_pf(hw: HostHardware) -> str:
    for adapter in hw.adapters():
        if adapter.sriov is not None and adapter.driver is not None:
            return adapter.name
    raise AssertionError("no SR-IOV PF with a driver on this backend")


@pytest.fixture
def pf(hardware: HostHardware) -> str:
    return _first_pf(hardware)


@pytest.fixture(
    params=[
        "sim",
        pytest.param("netns", marks=pytest.mark.privileged),
        pytest.param("libvirt", marks=pytest.mark.privileged),
    ],
)
def under_test(request: pytest.FixtureRequest) -> Iterator[RuntimeUnderTest]:
    """Each VM runtime with hardware whose VFs it can take (see runtimes.py)."""
    if request.param == "netns":
        yield netns_runtime(request.getfixturevalue("make_lab"))
        return
    if request.param == "libvirt":
        with libvirt_runtime(request.getfixturevalue("libvirt_host")) as built:
            yield built
        return
    with sim_runtime() as built:
        yield built
