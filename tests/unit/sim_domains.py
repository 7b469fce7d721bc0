"""Domains of the simulated hypervisor for the services' unit tests: a demo host with
one VF on ``enp1s0`` behind switch ``sw``, and domains defined outside iovctl and
imported with one NIC."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from iovctl.adapters.sim import runtime as sim
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.wiring import Options, open_context


@contextmanager
def one_vf_host() -> Iterator[Context]:
    context = open_context(Options(sim="demo", in_memory=True))
    api.adapter_enable(context, "enp1s0", num_vfs=1)
    api.switch_create(context, "sw", "enp1s0", iov=True)
    try:
        yield context
    finally:
        context.store.close()


def adopt_domain(
    ctx: Context, name: str, weight: int, *, failover: bool = True, acpi: bool = True
) -> None:
    """``virsh define`` (a guest with or without failover, one that powers off at the
    power button or not), ``vm import``, a NIC on ``sw`` with that IOV weight."""
    sim.define_domain(ctx.runtime.machine, name, failover=failover, acpi=acpi)  # type: ignore[attr-defined]
    api.vm_import(ctx, name)
    api.nic_add(ctx, name, "sw", iov_weight=weight)
