"""``vm stop`` is Hyper-V's ``Stop-VM``: the guest OS is asked to shut down and waited
for, then its VFs are scrubbed and handed on; ``--turn-off`` powers it off at once.
A guest that ignores the request keeps running with its VFs, and the command says
how to turn it off. VMs without a guest OS (namespaces, simulated VMs) just stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_domains import adopt_domain, one_vf_host

from iovctl.domain.model import VmState
from iovctl.errors import Conflict, InvalidInput
from iovctl.services import api
from iovctl.services.context import Context


@pytest.fixture
def ctx() -> Iterator[Context]:
    with one_vf_host() as context:
        yield context


def _domain(ctx: Context, name: str, weight: int, *, acpi: bool = True) -> None:
    adopt_domain(ctx, name, weight, acpi=acpi)
    api.vm_start(ctx, name)


def _codes(ctx: Context, vm: str) -> list[str]:
    return [e.code for e in api.events(ctx, object_name=vm)]


def test_a_guest_shuts_down_and_its_vf_goes_on(ctx: Context) -> None:
    _domain(ctx, "web", 50)
    _domain(ctx, "next", 10)
    assert ctx.store.get_nic("web", "nic0").assignment is not None
    shown = api.vm_stop(ctx, "web")
    assert (shown.state, shown.vfs_in_use) == ("off", 0)
    assert not ctx.runtime.is_running("web")
    assert api.events(ctx, object_name="web")[-1].message == "VM web shut down"
    assert ctx.store.get_nic("next", "nic0").assignment is not None


def test_a_guest_that_ignores_it_keeps_running_with_its_vf(ctx: Context) -> None:
    _domain(ctx, "web", 50, acpi=False)
    before = (api.vm_show(ctx, "web"), api.vf_list(ctx), _codes(ctx, "web"))
    with pytest.raises(Conflict) as info:
        api.vm_stop(ctx, "web", timeout=5)
    assert info.value.code == "shutdown-timeout"
    assert "within 5 s" in info.value.message
    assert "iovctl vm stop web --turn-off" in info.value.hint
    assert (api.vm_show(ctx, "web"), api.vf_list(ctx), _codes(ctx, "web")) == before
    assert ctx.runtime.is_running("web")


def test_turn_off_powers_off_at_once(ctx: Context) -> None:
    _domain(ctx, "web", 50, acpi=False)
    assert api.vm_stop(ctx, "web", turn_off=True).state == "off"
    assert not ctx.runtime.is_running("web")
    assert api.events(ctx, object_name="web")[-1].message == "VM web stopped"


def test_a_vm_without_a_guest_os_just_stops(ctx: Context) -> None:
    api.vm_create(ctx, "own")
    api.vm_start(ctx, "own")
    assert api.vm_stop(ctx, "own").state == "off"
    assert ctx.store.get_vm("own").state is VmState.OFF
    assert api.events(ctx, object_name="own")[-1].message == "VM own stopped"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"timeout": 0}, "invalid-timeout"),
        ({"timeout": 3601}, "invalid-timeout"),
        ({"timeout": "60"}, "invalid-number"),
        ({"timeout": 60, "turn_off": True}, "conflicting-options"),
    ],
)
def test_bad_stop_options_change_nothing(ctx: Context, options: dict, code: str) -> None:  # type: ignore[type-arg]
    _domain(ctx, "web", 50)
    with pytest.raises(InvalidInput) as info:
        api.vm_stop(ctx, "web", **options)
    assert info.value.code == code
    assert ctx.store.get_vm("web").state is VmState.RUNNING and ctx.runtime.is_running("web")


def test_stopping_a_vm_that_is_off_is_refused(ctx: Context) -> None:
    api.vm_create(ctx, "own")
    for options in ({}, {"turn_off": True}):
        with pytest.raises(Conflict) as info:
            api.vm_stop(ctx, "own", **options)  # type: ignore[arg-type]
        assert info.value.code == "vm-not-running"
