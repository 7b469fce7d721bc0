"""The simulated host: SR-IOV hardware and VMs in SQLite, with kernel-exact rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime
    from iovctl.adapters.sim.spec import HostSpec


def simulated_machine(
    spec: HostSpec, state_dir: Path | None = None
) -> tuple[SimulatedHost, SimulatedVmRuntime]:
    """The simulated host and runtime of ``spec``, on the machine database of
    ``state_dir`` (None: in memory), powered on at first use."""
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.machine import mark_powered_on, open_machine, powered_on
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime

    machine = open_machine(state_dir)
    host, runtime = SimulatedHost(machine, spec), SimulatedVmRuntime(machine)
    if not powered_on(machine):
        host.ensure_schema()
        runtime.ensure_schema()
        mark_powered_on(machine)
    else:
        runtime.ensure_hypervisor()
    return host, runtime
