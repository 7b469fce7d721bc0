"""A PF taken down after its VFs exist (``ip link set PF down``): igb and ixgbe answer
a VF's reset only while the PF is up, so a VF handed out then would come up with a
random MAC and no failover pair. The grant is refused with the reason, the NIC stays
on the software path and the VF goes back to the pool, scrubbed; once the PF is up,
``apply`` gives the NIC its VF. Drivers without that rule hand VFs out as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from iovctl.adapters.sim.host import set_pf_admin_up
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.wiring import Options, open_context

IGB, ICE = "enp1s0", "ens2f0"  # the demo host's igb and ice PFs


@pytest.fixture
def ctx() -> Iterator[Context]:
    context = open_context(Options(sim="demo", in_memory=True))
    for pf, switch in ((IGB, "sw"), (ICE, "fast")):
        api.adapter_enable(context, pf, num_vfs=2)
        api.switch_create(context, switch, pf, iov=True)
    yield context
    context.store.close()


def _pf_up(ctx: Context, pf: str, up: bool) -> None:
    set_pf_admin_up(ctx.hardware.machine, pf, up)  # type: ignore[attr-defined]


def _vm(ctx: Context, name: str, switch: str) -> None:
    api.vm_create(ctx, name)
    api.nic_add(ctx, name, switch, iov_weight=50)


def test_a_vf_of_an_igb_pf_that_is_down_is_refused_with_the_reason(ctx: Context) -> None:
    _vm(ctx, "web", "sw")
    _pf_up(ctx, IGB, False)
    api.vm_start(ctx, "web")
    nic = api.nic_show(ctx, "web", "nic0")
    assert (nic.status, nic.status_reason, nic.iov_usage) == ("degraded", "vf-grant-refused", False)
    assert f"adapter {IGB} is down" in nic.status_description
    assert f"ip link set {IGB} up" not in nic.status_description  # the hint is the event's
    (event,) = [e for e in api.events(ctx, object_name="web") if e.code == "vf-grant-failed"]
    assert "web/nic0" in event.message and "random MAC" in event.message
    # The VF went back to the pool, scrubbed: nobody holds it, no tenant's MAC on it.
    vfs = api.vf_list(ctx, IGB)
    assert not any(vf.in_use for vf in vfs)
    assert {vf.mac for vf in vfs} == {"00:00:00:00:00:00"}
    assert ctx.store.released_vfs(IGB) == []


def test_apply_gives_the_vf_once_the_pf_is_up_again(ctx: Context) -> None:
    _vm(ctx, "web", "sw")
    _pf_up(ctx, IGB, False)
    api.vm_start(ctx, "web")
    assert api.apply(ctx).changed == 0  # still down: nothing apply can do
    assert api.nic_show(ctx, "web", "nic0").status_reason == "vf-grant-refused"
    _pf_up(ctx, IGB, True)
    api.apply(ctx)
    nic = api.nic_show(ctx, "web", "nic0")
    assert (nic.status_reason, nic.vf_data_path_active) == ("on-vf", True)


def test_a_driver_without_the_rule_hands_out_vfs_of_a_pf_that_is_down(ctx: Context) -> None:
    _vm(ctx, "db", "fast")
    _pf_up(ctx, ICE, False)
    api.vm_start(ctx, "db")
    assert api.nic_show(ctx, "db", "nic0").status_reason == "on-vf"


def test_enabling_vfs_brings_a_pf_that_is_down_up(ctx: Context) -> None:
    api.adapter_disable(ctx, IGB)
    _pf_up(ctx, IGB, False)
    api.adapter_enable(ctx, IGB, num_vfs=1)
    _vm(ctx, "web", "sw")
    api.vm_start(ctx, "web")
    assert api.nic_show(ctx, "web", "nic0").status_reason == "on-vf"
