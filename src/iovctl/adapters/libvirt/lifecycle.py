"""libvirt's domain lifecycle events as iovctl's power changes. Pure.

The numbers are libvirt's stable ABI (libvirt-domain.h: virDomainEventType and its
per-type detail enums). Only starts and stops change what iovctl grants: a pause
keeps QEMU (and its VFs), a guest's "shutdown finished" is followed by STOPPED.
"""

from __future__ import annotations

from iovctl.domain.model import VmPowerChange

STARTED = 2
STOPPED = 5

_STARTED_DETAIL = {0: "started", 1: "migrated in", 2: "restored", 3: "started from a snapshot", 4: "woken up"}
_STOPPED_DETAIL = {
    0: "shut down",
    1: "destroyed",
    2: "crashed",
    3: "migrated away",
    4: "saved",
    5: "failed to start or run",
    6: "stopped for a snapshot",
}


def power_change(vm: str, event: int, detail: int) -> VmPowerChange | None:
    """The power change a LIFECYCLE event means; None for events that are none
    (defined, undefined, suspended, resumed, shutdown requested, crash reported)."""
    if event == STARTED:
        return VmPowerChange(vm, True, _STARTED_DETAIL.get(detail, "started"))
    if event == STOPPED:
        return VmPowerChange(vm, False, _STOPPED_DETAIL.get(detail, "stopped"))
    return None
