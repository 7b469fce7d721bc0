"""Gathers what a view shows through the ports, and hands it to the pure builders of
:mod:`iovctl.services.views`. Runs inside the caller's snapshot or transaction."""

from __future__ import annotations

from collections.abc import Callable

from iovctl.domain.model import Adapter, Reason, VirtualSwitch, VmNetworkAdapter, VmState
from iovctl.domain.nic_rules import mask_reason, nic_status
from iovctl.domain.pvlan import UplinkTagging
from iovctl.domain.readiness import host_reasons, runtime_reasons, unverified_runtime_facts
from iovctl.services.context import Context
from iovctl.services.views import (
    AdapterView,
    HostView,
    NicView,
    SwitchView,
    VmView,
    nic_view,
    vm_view,
)
from iovctl.services.views import (
    adapter_view as build_adapter_view,
)
from iovctl.services.views import (
    host_view as build_host_view,
)
from iovctl.services.views import (
    switch_view as build_switch_view,
)

__all__ = ["NicViewer", "adapter_view", "host_view", "switch_view", "vm_view"]


def host_view(ctx: Context) -> HostView:
    facts = ctx.facts
    runtime = ctx.runtime.facts()
    follows = ctx.runtime.follows_hypervisor
    return build_host_view(
        ctx.hardware.backend_name,
        facts,
        host_reasons(facts) + runtime_reasons(runtime, follows),
        ctx.hardware.adapters(),
        runtime,
        unverified_runtime_facts(runtime, follows),
    )


def adapter_view(ctx: Context, adapter: Adapter) -> AdapterView:
    in_use, qps_in_use = ctx.store.usage_on_adapter(adapter.name)
    switch = ctx.store.find_switch_by_uplink(adapter.name)
    return build_adapter_view(
        adapter, ctx.facts, in_use, qps_in_use, switch.name if switch else None
    )


def switch_view(ctx: Context, switch: VirtualSwitch) -> SwitchView:
    uplink = ctx.hardware.adapter(switch.uplink)
    reasons = ctx.switch_reasons(switch, uplink)
    in_use, qps_in_use = ctx.store.usage_on_adapter(uplink.name)
    return build_switch_view(
        switch,
        uplink,
        ctx.facts,
        reasons,
        in_use,
        qps_in_use,
        ctx.store.count_nics_on_switch(switch.name),
    )


class NicViewer:
    """Builds NIC views, caching per-switch facts so listing 5,000 NICs stays cheap."""

    def __init__(
        self, ctx: Context, data_path: Callable[[str, str], bool] | None = None
    ) -> None:
        """``data_path(vm, nic)``: whether a running NIC's VF carries traffic; the
        runtime is asked when not given (metrics pass what a hardware sample saw)."""
        self.ctx = ctx
        self._data_path = data_path or ctx.runtime.vf_data_path_active
        self._switch: dict[str, tuple[VirtualSwitch, Adapter, list[Reason]]] = {}
        self._vm_state: dict[str, VmState] = {}

    def _switch_info(self, name: str) -> tuple[VirtualSwitch, Adapter, list[Reason]]:
        if name not in self._switch:
            switch = self.ctx.store.get_switch(name)
            uplink = self.ctx.hardware.adapter(switch.uplink)
            self._switch[name] = (switch, uplink, self.ctx.switch_reasons(switch, uplink))
        return self._switch[name]

    def view(self, nic: VmNetworkAdapter, vm_state: VmState | None = None) -> NicView:
        if vm_state is None:
            vm_state = self._vm_state.get(nic.vm) or self.ctx.store.get_vm(nic.vm).state
        switch, uplink, reasons = self._switch_info(nic.config.switch)
        c = nic.config
        a = nic.assignment
        unsupported = None
        if uplink.sriov is not None and uplink.driver is not None and not reasons:
            unsupported = mask_reason(nic.vf_needs, uplink.driver, uplink.sriov.unsupported)
        running = vm_state is VmState.RUNNING
        active = bool(a and running and self._data_path(nic.vm, nic.name))
        status, reason, description = nic_status(
            running=running,
            weight=c.iov_weight,
            switch_name=switch.name,
            switch_reasons=reasons,
            unsupported=unsupported,
            holding=(a.adapter, a.index, a.queue_pairs) if a else None,
            wait_reason=nic.wait_reason,
            uplink=uplink.name,
            vf_count=uplink.num_vfs,
            vf_active=active,
            grant_error=nic.grant_error,
        )
        tagging = UplinkTagging.OFF
        if c.pvlan is not None and running and a is None:
            tagging = self.ctx.runtime.uplink_tagging(nic.vm, nic.name)
        return nic_view(nic, status.value, description, active, running, reason, tagging)

    def views(self, nics: list[VmNetworkAdapter]) -> list[NicView]:
        if not self._vm_state:
            self._vm_state = {vm.name: vm.state for vm in self.ctx.store.list_vms()}
        return [self.view(n) for n in nics]


def vm_views(ctx: Context) -> list[VmView]:
    by_vm: dict[str, list[VmNetworkAdapter]] = {}
    for nic in ctx.store.list_nics():
        by_vm.setdefault(nic.vm, []).append(nic)
    return [vm_view(vm, by_vm.get(vm.name, [])) for vm in ctx.store.list_vms()]
