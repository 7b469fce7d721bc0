"""The bundle of ports a service call works with, and the event helper."""

from __future__ import annotations

from dataclasses import dataclass, field

from iovctl.domain.model import Adapter, EventLevel, HostFacts, Reason, VirtualSwitch
from iovctl.domain.readiness import switch_reasons
from iovctl.ports import HostHardware, VmRuntime
from iovctl.ports.store import StateStore


@dataclass
class Context:
    """What one command runs against: the store, the hardware and the VM runtime."""

    store: StateStore
    hardware: HostHardware
    runtime: VmRuntime
    #: Best waiters / weakest holders loaded per planning round (services.allocation).
    allocation_window: int = 8
    _facts: HostFacts | None = field(default=None, repr=False)

    @property
    def facts(self) -> HostFacts:
        if self._facts is None:
            self._facts = self.hardware.host_facts()
        return self._facts

    def event(self, level: EventLevel, code: str, kind: str, name: str, message: str) -> None:
        self.store.add_event(level, code, kind, name, message)

    def switch_reasons(self, switch: VirtualSwitch, uplink: Adapter | None = None) -> list[Reason]:
        uplink = uplink or self.hardware.adapter(switch.uplink)
        return switch_reasons(switch, uplink, self.facts)
