"""Virtual switch use cases: ``New-/Get-/Remove-VMSwitch``."""

from __future__ import annotations

from iovctl.domain.model import EventLevel, VirtualSwitch
from iovctl.domain.steps import RemoveSwitch
from iovctl.domain.validation import check_name
from iovctl.errors import Conflict
from iovctl.services.context import Context
from iovctl.services.readers import switch_view
from iovctl.services.views import SwitchView


def create(ctx: Context, name: str, uplink: str, iov: bool) -> SwitchView:
    """Create an external switch on ``uplink``. IOV is fixed from here on.

    An IOV switch whose uplink or host cannot do SR-IOV is still created (as in
    Hyper-V): it reports ``iov_support: false`` with reasons and logs a warning.
    """
    check_name("switch", name)
    if ctx.store.find_switch(name) is not None:
        raise Conflict(
            "duplicate-name", f"virtual switch {name!r} already exists", "pick another name"
        )
    adapter = ctx.hardware.adapter(uplink)
    taken = ctx.store.find_switch_by_uplink(uplink)
    if taken is not None:
        raise Conflict(
            "adapter-in-use",
            f"adapter {uplink} is already the uplink of switch {taken.name}",
            f"one external switch per adapter: use {taken.name}, or delete it first",
        )
    switch = VirtualSwitch(name, adapter.name, iov)
    ctx.store.add_switch(switch)
    ctx.event(
        EventLevel.INFO,
        "switch-created",
        "switch",
        name,
        f"Virtual switch {name} created on {uplink} with IOV {'enabled' if iov else 'disabled'}",
    )
    reasons = ctx.switch_reasons(switch, adapter)
    if iov and reasons:
        ctx.event(
            EventLevel.WARNING,
            "switch-iov-unsupported",
            "switch",
            name,
            f"Virtual switch {name} was created with IOV, but SR-IOV cannot work on it: "
            + "; ".join(r.message for r in reasons),
        )
    return switch_view(ctx, switch)


def show(ctx: Context, name: str) -> SwitchView:
    return switch_view(ctx, ctx.store.get_switch(name))


def list_all(ctx: Context) -> list[SwitchView]:
    return [switch_view(ctx, s) for s in ctx.store.list_switches()]


def set_iov(ctx: Context, name: str, iov: bool) -> None:
    """Always refused unless unchanged: IOV is fixed when a switch is created."""
    switch = ctx.store.get_switch(name)
    if switch.iov_enabled == iov:
        return
    raise Conflict(
        "iov-fixed-at-creation",
        f"IOV of virtual switch {name} is {'on' if switch.iov_enabled else 'off'} and cannot be changed",
        f"delete the switch and create it again: iovctl switch delete {name} && "
        f"iovctl switch create {name} --uplink {switch.uplink}{' --iov' if iov else ''}",
    )


def delete(ctx: Context, name: str) -> None:
    switch = ctx.store.get_switch(name)
    nics = ctx.store.nics_on_switch(name)
    if nics:
        users = ", ".join(sorted(n.label for n in nics)[:10])
        raise Conflict(
            "switch-in-use",
            f"virtual switch {name} still has network adapters: {users}",
            "remove them (iovctl nic remove VM NIC) or move them (iovctl nic set --switch)",
        )
    ctx.do(RemoveSwitch(switch.name))
    ctx.store.delete_switch(switch.name)
    ctx.event(EventLevel.INFO, "switch-deleted", "switch", name, f"Virtual switch {name} deleted")
