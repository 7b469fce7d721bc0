"""The VM-ownership half of ``VmRuntime`` for runtimes whose VMs are iovctl's own
records (the simulated runtime, network namespaces): nothing starts or stops them
behind iovctl's back, there is no hypervisor VM to import, and no hypervisor pool
hands out VFs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from iovctl.domain.model import RuntimeFacts, VmPowerChange, VmTemplate
from iovctl.errors import Conflict


class OwnVms:
    """Mix into a runtime that sets ``backend_name``."""

    backend_name: str
    follows_hypervisor = False

    def define_vm(self, vm: str, template: VmTemplate) -> None:
        """Nothing to define: the VM is the store's record, made real at start."""

    def adopt_vm(self, vm: str) -> None:
        raise Conflict(
            "cannot-import",
            f"the {self.backend_name} runtime has no VMs of its own to import {vm!r} from",
            f"create it instead: iovctl vm create {vm}; import needs the libvirt runtime",
        )

    def shut_down_guest(self, vm: str, timeout: float) -> bool:
        """No guest OS to ask: ``stop_vm`` ends the VM."""
        return True

    def forget_vm(self, vm: str) -> None:
        """Nothing is kept for a VM beyond what stop and unplug remove."""

    def power_states(self) -> dict[str, bool]:
        return {}

    def lost_vms(self, vms: Iterable[str]) -> frozenset[str]:
        return frozenset()

    def watch(self, on_change: Callable[[VmPowerChange], None], stop: threading.Event) -> None:
        stop.wait()

    def vfs_held_elsewhere(self) -> frozenset[str]:
        return frozenset()

    def facts(self) -> RuntimeFacts:
        return RuntimeFacts(kind=self.backend_name)
