"""Desired vs actual hardware state: the plan ``iovctl apply`` carries out.

Desired: the VF count stored per adapter, each held VF carrying its tenant's
settings, every free VF scrubbed. The plan lists only what drifted, so applying a
state that holds makes zero writes. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from iovctl.domain.model import SCRUBBED, VfSettings


@dataclass(frozen=True)
class SetVfCount:
    adapter: str
    current: int
    desired: int

    @property
    def writes(self) -> list[int]:
        """Values to write to the VF count: the kernel refuses non-zero to non-zero."""
        if self.current and self.desired:
            return [0, self.desired]
        return [self.desired]


@dataclass(frozen=True)
class SetVfSettings:
    adapter: str
    index: int
    current: VfSettings
    desired: VfSettings
    #: Tenant label ("vm/nic"), or None for a free VF being scrubbed.
    tenant: str | None


Step = SetVfCount | SetVfSettings


def plan_counts(desired: dict[str, int], actual: dict[str, int]) -> list[SetVfCount]:
    """VF-count changes for adapters whose count drifted (unknown adapters skipped)."""
    return [
        SetVfCount(name, actual[name], count)
        for name, count in sorted(desired.items())
        if name in actual and actual[name] != count
    ]


def plan_settings(
    adapter: str,
    actual: dict[int, VfSettings],
    tenants: dict[int, tuple[str, VfSettings]],
) -> list[SetVfSettings]:
    """Per-VF changes: tenants' settings on held VFs, scrubbed defaults on free ones."""
    steps = []
    for index, current in sorted(actual.items()):
        tenant, desired = tenants.get(index, (None, SCRUBBED))
        if current != desired:
            steps.append(SetVfSettings(adapter, index, current, desired, tenant))
    return steps
