"""Adapter use cases: ``Enable-/Disable-/Set-NetAdapterSriov`` and VF inventory."""

from __future__ import annotations

from iovctl.domain.model import Adapter, EventLevel
from iovctl.domain.steps import SetNumVfs
from iovctl.domain.validation import check_num_vfs
from iovctl.errors import Conflict, HardwareError, InvalidInput
from iovctl.services.allocation import release_vf
from iovctl.services.context import Context
from iovctl.services.readers import adapter_view
from iovctl.services.views import (
    AdapterDetailView,
    AdapterView,
    VfView,
    adapter_detail_view,
    vf_view,
)


def list_adapters(ctx: Context) -> list[AdapterView]:
    return [adapter_view(ctx, a) for a in ctx.hardware.adapters()]


def show_adapter(ctx: Context, name: str) -> AdapterDetailView:
    view = adapter_view(ctx, ctx.hardware.adapter(name))
    return adapter_detail_view(view, list_vfs(ctx, name))


def list_vfs(ctx: Context, adapter: str | None = None) -> list[VfView]:
    names = [adapter] if adapter else [a.name for a in ctx.hardware.adapters() if a.num_vfs]
    out: list[VfView] = []
    elsewhere = ctx.runtime.vfs_held_elsewhere()
    for name in names:
        holders = {n.assignment.index: n for n in ctx.store.nics_holding_vfs(name) if n.assignment}
        out.extend(
            vf_view(vf, holders.get(vf.index), vf.pci_address in elsewhere)
            for vf in ctx.hardware.virtual_functions(name)
        )
    return out


def set_num_vfs(ctx: Context, name: str, count: int, *, force: bool = False) -> None:
    """Set the VF count, doing the kernel's 0-first dance for you.

    Refused (Conflict ``vfs-assigned``, naming the VMs) while VFs are assigned,
    unless ``force``: then the NICs fall back to the software path first and get
    VFs again afterwards where the new count allows.
    """
    check_num_vfs(name, count)
    adapter = ctx.hardware.adapter(name)
    _check_capable(adapter)
    _check_in_range(adapter, count)
    if count == adapter.num_vfs:
        ctx.store.set_desired_num_vfs(name, count)
        return
    if adapter.driver is None:
        # What the inventory already says is refused before anything is written
        # (the kernel would answer ENOENT: iov.c, no sriov_configure).
        raise HardwareError(
            "no-pf-driver",
            f"adapter {name} has no PF driver bound, so its VFs cannot be configured",
            f"load the PF driver and check: lspci -k -s {adapter.pci_address}",
        )
    holders = ctx.store.nics_holding_vfs(name)
    if holders and not force:
        users = ", ".join(
            f"{n.vm} ({n.name} on VF {n.assignment.index})" for n in holders if n.assignment
        )
        raise Conflict(
            "vfs-assigned",
            f"adapter {name} has VFs assigned to running VMs: {users}",
            "stop those VMs, or add --force to move their NICs to the software path first",
        )
    for nic in holders:
        release_vf(ctx, nic, f"VF count of {name} changed", "vf-revoked")
    if adapter.num_vfs and count:
        ctx.do(SetNumVfs(name, 0))  # iov.c: EBUSY unless numvfs is 0 first
    # The VFs appear while no lock is held; the allocator sees them once they are
    # there (journal: a VF count written marks the switch's pool for rebalancing).
    ctx.do(SetNumVfs(name, count, restore=adapter.num_vfs))
    ctx.store.set_desired_num_vfs(name, count)
    ctx.event(
        EventLevel.INFO,
        "adapter-vfs-changed",
        "adapter",
        name,
        f"SR-IOV on {name}: {adapter.num_vfs} -> {count} VFs",
    )


def _check_capable(adapter: Adapter) -> None:
    if adapter.sriov is None:
        raise HardwareError(
            "sriov-not-capable",
            f"adapter {adapter.name} ({adapter.model}) has no SR-IOV capability",
            "pick an SR-IOV capable adapter: iovctl adapter list",
        )


def _check_in_range(adapter: Adapter, count: int) -> None:
    cap = adapter.sriov
    if cap is not None and count > cap.total_vfs:
        # Checked before writing 0, so a refused count leaves the VFs as they were.
        raise HardwareError(
            "vf-count-out-of-range",
            f"adapter {adapter.name} ({adapter.driver}) supports at most {cap.total_vfs} VFs, "
            f"not {count}",
            f"choose a VF count from 0 to {cap.total_vfs}",
        )


def enable(ctx: Context, name: str, count: int | None = None) -> None:
    """``Enable-NetAdapterSriov``: all VFs by default.

    An adapter that has VFs already keeps them (use ``adapter set --num-vfs`` to
    change the count); ``--num-vfs 0`` is not a way to enable anything.
    """
    adapter = ctx.hardware.adapter(name)
    _check_capable(adapter)
    assert adapter.sriov is not None
    if count is not None:
        check_num_vfs(name, count)
        _check_in_range(adapter, count)
    if count == 0:
        raise InvalidInput(
            "invalid-vf-count",
            f"enabling SR-IOV on {name} with 0 VFs would disable it",
            f"give a VF count from 1 to {adapter.sriov.total_vfs}, or: iovctl adapter disable {name}",
        )
    if adapter.num_vfs:
        if count is None or count == adapter.num_vfs:
            raise Conflict(
                "already-enabled",
                f"SR-IOV is already enabled on {name} with {adapter.num_vfs} VFs",
                f"change the count with: iovctl adapter set {name} --num-vfs N",
            )
        raise Conflict(
            "already-enabled",
            f"SR-IOV is already enabled on {name} with {adapter.num_vfs} VFs, not {count}",
            f"change the count with: iovctl adapter set {name} --num-vfs {count}",
        )
    set_num_vfs(ctx, name, adapter.sriov.total_vfs if count is None else count)


def disable(ctx: Context, name: str, *, force: bool = False) -> None:
    """``Disable-NetAdapterSriov``: the rule of ``set --num-vfs 0``: refused while VMs
    hold VFs, unless ``force`` (their NICs fall back to the software path)."""
    set_num_vfs(ctx, name, 0, force=force)
