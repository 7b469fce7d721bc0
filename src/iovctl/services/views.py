"""Read models: the ``-o json`` contract (snake_case, Hyper-V's names) as plain dicts.

Field names here are a stable interface; add fields, never rename or drop them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from iovctl.domain.model import (
    Adapter,
    Event,
    Reason,
    SriovSupport,
    VirtualFunction,
    VirtualMachine,
    VirtualSwitch,
    VmNetworkAdapter,
    VmState,
)
from iovctl.domain.names import bridge_name
from iovctl.domain.nic_rules import mask_reason, nic_status
from iovctl.domain.pvlan import status as pvlan_status
from iovctl.domain.readiness import adapter_reason, adapter_support, host_reasons
from iovctl.services.context import Context


def reason_view(reason: Reason) -> dict[str, str]:
    return {"code": reason.code, "message": reason.message, "hint": reason.hint}


def host_view(ctx: Context) -> dict[str, Any]:
    facts = ctx.facts
    reasons = host_reasons(facts)
    return {
        "backend": ctx.hardware.backend_name,
        "iov_support": not reasons,
        "iov_support_reasons": [reason_view(r) for r in reasons],
        "facts": asdict(facts),
        "adapters": [
            {
                "name": a.name,
                "sriov_support": adapter_support(a, facts).value,
                "num_vfs": a.num_vfs,
                "total_vfs": a.sriov.total_vfs if a.sriov else 0,
            }
            for a in ctx.hardware.adapters()
        ],
    }


def adapter_view(ctx: Context, adapter: Adapter) -> dict[str, Any]:
    support = adapter_support(adapter, ctx.facts)
    reason = adapter_reason(adapter, support)
    cap = adapter.sriov
    in_use, qps_in_use = ctx.store.usage_on_adapter(adapter.name)
    switch = ctx.store.find_switch_by_uplink(adapter.name)
    return {
        "name": adapter.name,
        "pci_address": adapter.pci_address,
        "vendor_id": adapter.vendor_id,
        "device_id": adapter.device_id,
        "driver": adapter.driver,
        "model": adapter.model,
        "link_speed_mbps": adapter.link_speed_mbps,
        "numa_node": adapter.numa_node,
        "mac": adapter.mac,
        "sriov_capable": cap is not None,
        "sriov_support": support.value,
        "sriov_support_reason": reason_view(reason) if reason else None,
        "enabled": adapter.sriov_enabled,
        "num_vfs": adapter.num_vfs,
        "total_vfs": cap.total_vfs if cap else 0,
        "num_allocated_vfs": in_use,
        "queue_pairs": cap.queue_pairs if cap else 0,
        "queue_pairs_in_use": qps_in_use,
        "max_queue_pairs_per_vf": cap.max_queue_pairs_per_vf if cap else 0,
        "vf_driver": cap.vf_driver if cap else None,
        "unsupported_vf_settings": sorted(s.value for s in cap.unsupported) if cap else [],
        "switch_name": switch.name if switch else None,
    }


def vf_view(vf: VirtualFunction, holder: VmNetworkAdapter | None) -> dict[str, Any]:
    s = vf.settings
    return {
        "adapter": vf.adapter,
        "function_id": vf.index,
        "pci_address": vf.pci_address,
        "netdev": vf.netdev,
        "iommu_group": vf.iommu_group,
        "mac": s.mac,
        "vlan": s.vlan,
        "qos": s.qos,
        "vlan_protocol": s.vlan_protocol.value,
        "spoof_check": s.spoof_check,
        "trust": s.trust,
        "max_rate": s.max_rate,
        "min_rate": s.min_rate,
        "link_state": s.link_state.value,
        "in_use": holder is not None,
        "vm_friendly_name": holder.vm if holder else None,
        "vm_nic": holder.name if holder else None,
    }


def switch_view(ctx: Context, switch: VirtualSwitch) -> dict[str, Any]:
    uplink = ctx.hardware.adapter(switch.uplink)
    reasons = ctx.switch_reasons(switch, uplink)
    in_use, qps_in_use = ctx.store.usage_on_adapter(uplink.name)
    pool = switch.iov_enabled and adapter_support(uplink, ctx.facts) is SriovSupport.SUPPORTED
    cap = uplink.sriov
    return {
        "name": switch.name,
        "uplink": switch.uplink,
        "switch_type": "external",
        "bridge": bridge_name(switch.name),
        "iov_enabled": switch.iov_enabled,
        "iov_support": not reasons,
        "iov_support_reasons": [reason_view(r) for r in reasons],
        "iov_virtual_function_count": uplink.num_vfs if pool else 0,
        "iov_virtual_functions_in_use": in_use,
        "iov_queue_pair_count": cap.queue_pairs if pool and cap else 0,
        "iov_queue_pairs_in_use": qps_in_use,
        "nic_count": ctx.store.count_nics_on_switch(switch.name),
    }


def vm_view(vm: VirtualMachine, nics: list[VmNetworkAdapter]) -> dict[str, Any]:
    return {
        "name": vm.name,
        "state": vm.state.value,
        "nic_count": len(nics),
        "nics": [n.name for n in nics],
        "vfs_in_use": sum(1 for n in nics if n.assignment is not None),
    }


class NicViewer:
    """Builds NIC views, caching per-switch facts so listing 5,000 NICs stays cheap."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._switch: dict[str, tuple[VirtualSwitch, Adapter, list[Reason]]] = {}
        self._vm_state: dict[str, VmState] = {}

    def _switch_info(self, name: str) -> tuple[VirtualSwitch, Adapter, list[Reason]]:
        if name not in self._switch:
            switch = self.ctx.store.get_switch(name)
            uplink = self.ctx.hardware.adapter(switch.uplink)
            self._switch[name] = (switch, uplink, self.ctx.switch_reasons(switch, uplink))
        return self._switch[name]

    def view(self, nic: VmNetworkAdapter, vm_state: VmState | None = None) -> dict[str, Any]:
        if vm_state is None:
            vm_state = self._vm_state.get(nic.vm) or self.ctx.store.get_vm(nic.vm).state
        switch, uplink, reasons = self._switch_info(nic.config.switch)
        c = nic.config
        a = nic.assignment
        unsupported = None
        if uplink.sriov is not None and uplink.driver is not None and not reasons:
            unsupported = mask_reason(nic.vf_needs, uplink.driver, uplink.sriov.unsupported)
        running = vm_state is VmState.RUNNING
        status, description = nic_status(
            running=running,
            weight=c.iov_weight,
            switch_name=switch.name,
            switch_reasons=reasons,
            unsupported=unsupported,
            holding=(a.adapter, a.index, a.queue_pairs) if a else None,
            wait_reason=nic.wait_reason,
            uplink=uplink.name,
            vf_count=uplink.num_vfs,
        )
        return {
            "vm": nic.vm,
            "name": nic.name,
            "switch": c.switch,
            "mac": c.mac,
            "iov_weight": c.iov_weight,
            "iov_queue_pairs_requested": c.iov_queue_pairs_requested,
            "iov_queue_pairs_assigned": a.queue_pairs if a else 0,
            "iov_usage": a is not None,
            "virtual_function": (
                {
                    "adapter": a.adapter,
                    "index": a.index,
                    "pci_address": a.pci_address,
                }
                if a
                else None
            ),
            "vf_data_path_active": bool(
                a and running and self.ctx.runtime.vf_data_path_active(nic.vm, nic.name)
            ),
            "vlan": c.vlan,
            "pvlan": pvlan_status(c.pvlan, running=running, on_vf=a is not None),
            "max_rate": c.max_rate,
            "allow_mac_spoofing": c.allow_mac_spoofing,
            "trust": c.trust,
            "status": status.value,
            "status_description": description,
        }

    def views(self, nics: list[VmNetworkAdapter]) -> list[dict[str, Any]]:
        if not self._vm_state:
            self._vm_state = {vm.name: vm.state for vm in self.ctx.store.list_vms()}
        return [self.view(n) for n in nics]


def event_view(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "time": e.time,
        "level": e.level.value,
        "code": e.code,
        "object_kind": e.object_kind,
        "object_name": e.object_name,
        "message": e.message,
    }
