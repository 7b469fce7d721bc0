"""The bundle of ports a service call works with, and the event helper."""

from __future__ import annotations

from dataclasses import dataclass, field

from iovctl.domain.model import Adapter, EventLevel, HostFacts, Reason, VirtualSwitch
from iovctl.domain.readiness import switch_reasons
from iovctl.domain.steps import Step
from iovctl.ports import HostHardware, VmRuntime
from iovctl.ports.store import StateStore


@dataclass
class Context:
    """What one command runs against: the store, the hardware and the VM runtime.

    Services change the store and queue the machine's side effects with :meth:`do`;
    ``services.journal`` records them and runs them once the store's changes are
    committed. Services never call a mutating port method themselves.
    """

    store: StateStore
    hardware: HostHardware
    runtime: VmRuntime
    #: Best waiters / weakest holders loaded per planning round (services.allocation).
    allocation_window: int = 8
    _facts: HostFacts | None = field(default=None, repr=False)
    #: Side effects the plan being made queued, in order.
    planned: list[Step] = field(default_factory=list, repr=False)

    @property
    def facts(self) -> HostFacts:
        if self._facts is None:
            self._facts = self.hardware.host_facts()
        return self._facts

    def close(self) -> None:
        """Let go of what the command held: the store, and sockets of the ports."""
        try:
            self.hardware.close()
            self.runtime.close()
        finally:
            self.store.close()

    def do(self, *steps: Step) -> None:
        """Queue side effects; they run after the plan's store changes commit."""
        self.planned.extend(steps)

    def event(self, level: EventLevel, code: str, kind: str, name: str, message: str) -> None:
        self.store.add_event(level, code, kind, name, message)

    def switch_reasons(self, switch: VirtualSwitch, uplink: Adapter | None = None) -> list[Reason]:
        uplink = uplink or self.hardware.adapter(switch.uplink)
        return switch_reasons(switch, uplink, self.facts)
