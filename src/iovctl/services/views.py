"""Read models: the ``-o json`` contract as typed views (snake_case, Hyper-V's names).

Each view is a dataclass whose fields are the JSON keys, in order (built once and
not changed after; slots, not frozen: a frozen init costs 3x, and ``nic list``
builds 5,000 of them); ``#:`` comments
document them, and ``docs/schema/iovctl-v1.json`` is generated from them
(:mod:`iovctl.services.schema`). Keys are a stable interface: add fields, never
rename or drop them (a test holds the committed schema still).

The builders here are pure: they are handed the domain objects, facts and counts
they show, and do no I/O (services.readers gathers those through the ports).
Must not import ports, adapters or the CLI.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from iovctl.domain.model import (
    Adapter,
    Event,
    HostFacts,
    Reason,
    RuntimeFacts,
    SriovSupport,
    VfSettings,
    VirtualFunction,
    VirtualMachine,
    VirtualSwitch,
    VmNetworkAdapter,
)
from iovctl.domain.names import bridge_name
from iovctl.domain.pvlan import UplinkTagging
from iovctl.domain.pvlan import status as pvlan_status
from iovctl.domain.readiness import adapter_reason, adapter_support, unverified_facts

# -- views ---------------------------------------------------------------------------


@dataclass(slots=True)
class ReasonView:
    """Why something cannot do SR-IOV (``IovSupportReasons``), and the fix."""

    code: str
    message: str
    hint: str


@dataclass(slots=True)
class HostAdapterView:
    """An adapter as ``iovctl host`` lists it."""

    name: str
    sriov_support: str
    num_vfs: int
    total_vfs: int


@dataclass(slots=True)
class HostView:
    """``iovctl host`` (``Get-VMHost``): readiness, its reasons and the facts it is judged on."""

    backend: str
    iov_support: bool
    iov_support_reasons: list[ReasonView]
    #: Facts that could not be checked here (None in ``facts``), with how to check.
    unverified_facts: list[ReasonView]
    facts: HostFacts
    adapters: list[HostAdapterView]
    #: What the VM runtime was judged on (libvirt and QEMU versions, q35, reachable).
    runtime_facts: RuntimeFacts | None = None


@dataclass(slots=True)
class AdapterView:
    """An adapter (``Get-NetAdapterSriov``)."""

    name: str
    pci_address: str
    vendor_id: str
    device_id: str
    #: Bound PF driver; None when none is bound.
    driver: str | None
    model: str
    #: None: unknown (no link, or no netdev to ask).
    link_speed_mbps: int | None
    numa_node: int
    mac: str
    sriov_capable: bool
    #: ``supported`` or why not (``domain.model.SriovSupport``).
    sriov_support: str
    sriov_support_reason: ReasonView | None
    enabled: bool
    num_vfs: int
    total_vfs: int
    #: VFs held by VM NICs.
    num_allocated_vfs: int
    queue_pairs: int
    queue_pairs_in_use: int
    max_queue_pairs_per_vf: int
    vf_driver: str | None
    #: VF settings the PF driver refuses (``domain.model.VfSetting`` values).
    unsupported_vf_settings: list[str]
    #: The virtual switch this adapter is the uplink of.
    switch_name: str | None


@dataclass(slots=True)
class VfView:
    """A virtual function (``Get-NetAdapterSriovVf``) and who holds it."""

    adapter: str
    function_id: int
    pci_address: str
    netdev: str | None
    iommu_group: int | None
    mac: str
    #: 0 = none.
    vlan: int
    qos: int
    vlan_protocol: str
    spoof_check: bool
    trust: bool
    #: Mbit/s, 0 = unlimited.
    max_rate: int
    min_rate: int
    link_state: str
    in_use: bool
    vm_friendly_name: str | None
    vm_nic: str | None
    #: Given out by the hypervisor by its own means (a libvirt hostdev network pool,
    #: a hostdev of a domain iovctl does not manage): iovctl never hands it out.
    held_elsewhere: bool = False


@dataclass(slots=True)
class AdapterDetailView(AdapterView):
    """``adapter show``: the adapter with its VFs."""

    virtual_functions: list[VfView] = field(default_factory=list)


@dataclass(slots=True)
class SwitchView:
    """A virtual switch (``Get-VMSwitch``) with its IOV counters."""

    name: str
    uplink: str
    switch_type: str
    #: The Linux bridge of its software path.
    bridge: str
    iov_enabled: bool
    iov_support: bool
    iov_support_reasons: list[ReasonView]
    iov_virtual_function_count: int
    iov_virtual_functions_in_use: int
    iov_queue_pair_count: int
    iov_queue_pairs_in_use: int
    nic_count: int


@dataclass(slots=True)
class VfRefView:
    """The VF a NIC holds."""

    adapter: str
    index: int
    pci_address: str


@dataclass(slots=True)
class PvlanView:
    """Private VLAN membership (``Set-VMNetworkAdapterVlan -Isolated|-Community|-Promiscuous``)."""

    mode: str
    primary_vlan: int
    secondary_vlan: int | None
    #: ``vf`` (the NIC's embedded switch), ``software`` (the switch's bridge), or None
    #: while the VM is off.
    enforced_by: str | None
    #: Whether frames leave the uplink tagged with the private VLAN they travel in (the
    #: primary from a promiscuous port, the secondary from an isolated or community
    #: one); ``description`` says why not.
    uplink_tagged: bool
    description: str


@dataclass(slots=True)
class NicView:
    """A VM network adapter (``Get-VMNetworkAdapter``): its settings and its path."""

    vm: str
    name: str
    switch: str
    mac: str
    iov_weight: int
    iov_queue_pairs_requested: int
    iov_queue_pairs_assigned: int
    #: Holds a VF.
    iov_usage: bool
    virtual_function: VfRefView | None
    #: Traffic flows over the VF now (the VM runs and the VF half is up).
    vf_data_path_active: bool
    vlan: int | None
    pvlan: PvlanView | None
    max_rate: int | None
    allow_mac_spoofing: bool
    trust: bool
    #: ``ok``, ``degraded`` (wants a VF, has none) or ``off``.
    status: str
    #: Which path, and why not the VF.
    status_description: str
    #: The same as a stable code: ``on-vf``, ``iov-weight-zero``, ``vm-off``,
    #: ``vfs-exhausted``, ``queue-pairs-exhausted``, ``vf-gone``, ``vf-not-attached``,
    #: ``vf-grant-refused``, or the switch's or the driver's reason code.
    status_reason: str = ""


@dataclass(slots=True)
class VmView:
    """A VM as ``vm list`` shows it."""

    name: str
    state: str
    nic_count: int
    nics: list[str]
    vfs_in_use: int


@dataclass(slots=True)
class VmDetailView(VmView):
    """``vm show``: the VM with its network adapters and its times."""

    network_adapters: list[NicView] = field(default_factory=list)
    #: Unix time the VM was created.
    created_at: float | None = None
    #: Unix time it last started; None while it is off.
    started_at: float | None = None


@dataclass(slots=True)
class EventView:
    """One entry of the event log."""

    seq: int
    #: Unix time.
    time: float
    level: str
    code: str
    object_kind: str
    object_name: str
    message: str


@dataclass(slots=True)
class VfSettingsView:
    """The VF settings ``apply`` compares and restores."""

    mac: str
    vlan: int
    qos: int
    spoof_check: bool
    trust: bool
    max_rate: int


@dataclass(slots=True)
class VfCountChange:
    """``apply``: a VF count put back."""

    action: Literal["set-vf-count"]
    adapter: str
    from_: int = field(metadata={"json": "from"})
    to: int


@dataclass(slots=True)
class VfSettingsChange:
    """``apply``: a VF's settings put back (its tenant's, or scrubbed)."""

    action: Literal["set-vf-settings"]
    adapter: str
    index: int
    #: The NIC (``vm/nic``) the VF belongs to; None for a free VF.
    tenant: str | None
    from_: VfSettingsView = field(metadata={"json": "from"})
    to: VfSettingsView


@dataclass(slots=True)
class VfReleaseChange:
    """``apply``: a VF taken back from a NIC whose settings its driver cannot carry
    (the NIC got it under an older rule); the NIC goes on on the software path."""

    action: Literal["release-vf"]
    adapter: str
    index: int
    #: The NIC (``vm/nic``) that held the VF.
    tenant: str
    #: Why the VF cannot carry the NIC's settings.
    reason: str


@dataclass(slots=True)
class VfAttachChange:
    """``apply``: a running VM's VF attached again (after a reboot or a PF reset)."""

    action: Literal["attach-vf"]
    adapter: str
    index: int
    #: The NIC (``vm/nic``) the VF belongs to.
    tenant: str


@dataclass(slots=True)
class LeftoverVmChange:
    """``apply``: what an interrupted command left of a stopped VM, removed."""

    action: Literal["remove-leftover-vm"]
    vm: str


@dataclass(slots=True)
class VmFollowedChange:
    """``apply``: a VM the hypervisor started or stopped outside iovctl; the store
    follows it (its VFs granted or released), it is not undone."""

    action: Literal["follow-hypervisor"]
    vm: str
    running: bool


@dataclass(slots=True)
class ApplyReport:
    """``iovctl apply``: what drifted and was (or, with ``dry_run``, would be) changed."""

    dry_run: bool
    changed: int
    changes: list[
        VfCountChange
        | VfSettingsChange
        | VfReleaseChange
        | VfAttachChange
        | LeftoverVmChange
        | VmFollowedChange
    ]


@dataclass(slots=True)
class DeletedView:
    """What a delete or remove command removed."""

    deleted: str
    name: str


@dataclass(slots=True)
class CleanupView:
    """``iovctl cleanup``: the kernel objects removed."""

    namespaces: list[str]
    links: list[str]
    nft_chains: list[str]


@dataclass(slots=True)
class InstallServiceView:
    """``iovctl install-service``: the unit written and whether it was enabled."""

    unit: str
    changed: bool
    enabled: bool


# -- JSON ------------------------------------------------------------------------------


_KEYS: dict[type, tuple[tuple[str, str], ...]] = {}


def json_keys(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) of a view class, in order (``from_`` is ``from``)."""
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = tuple((f.name, f.metadata.get("json", f.name)) for f in fields(cls))
    return keys


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(tp: Any) -> bool:
    """Whether values of type ``tp`` go into JSON as they are (no view inside)."""
    if tp in _PLAIN:
        return True
    if typing.get_origin(tp) is Literal:
        return True
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return all(_is_plain(a) for a in typing.get_args(tp))
    return False


_CONVERTERS: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _converter(cls: type) -> Callable[[Any], dict[str, Any]]:
    """A function from a view of ``cls`` to its dict, one expression per field.

    Built once per class (from the field types) because ``nic list`` converts 5,000
    views: a generic per-field loop doubled the command's time.
    """
    hints = typing.get_type_hints(cls)
    items = [
        f"{key!r}: o.{attr}" if _is_plain(hints[attr]) else f"{key!r}: to_json(o.{attr})"
        for attr, key in json_keys(cls)
    ]
    convert: Callable[[Any], dict[str, Any]] = eval(  # built from field names only
        "lambda o: {" + ", ".join(items) + "}", {"to_json": to_json}
    )
    return convert


def to_json(value: Any) -> Any:
    """A view (or a list of them) as JSON-ready dicts and lists."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    cls = type(value)
    convert = _CONVERTERS.get(cls)
    if convert is None:
        convert = _CONVERTERS[cls] = _converter(cls)
    return convert(value)


# -- builders (pure) ----------------------------------------------------------------


def reason_view(reason: Reason) -> ReasonView:
    return ReasonView(reason.code, reason.message, reason.hint)


def host_view(
    backend: str,
    facts: HostFacts,
    reasons: list[Reason],
    adapters: list[Adapter],
    runtime_facts: RuntimeFacts | None = None,
    unverified_runtime: list[Reason] | None = None,
) -> HostView:
    return HostView(
        backend=backend,
        iov_support=not reasons,
        iov_support_reasons=[reason_view(r) for r in reasons],
        unverified_facts=[
            reason_view(r) for r in unverified_facts(facts) + (unverified_runtime or [])
        ],
        facts=facts,
        runtime_facts=runtime_facts,
        adapters=[
            HostAdapterView(
                a.name,
                adapter_support(a, facts).value,
                a.num_vfs,
                a.sriov.total_vfs if a.sriov else 0,
            )
            for a in adapters
        ],
    )


def adapter_view(
    adapter: Adapter, facts: HostFacts, in_use: int, qps_in_use: int, switch: str | None
) -> AdapterView:
    support = adapter_support(adapter, facts)
    reason = adapter_reason(adapter, support, facts)
    cap = adapter.sriov
    return AdapterView(
        name=adapter.name,
        pci_address=adapter.pci_address,
        vendor_id=adapter.vendor_id,
        device_id=adapter.device_id,
        driver=adapter.driver,
        model=adapter.model,
        link_speed_mbps=adapter.link_speed_mbps,
        numa_node=adapter.numa_node,
        mac=adapter.mac,
        sriov_capable=cap is not None,
        sriov_support=support.value,
        sriov_support_reason=reason_view(reason) if reason else None,
        enabled=adapter.sriov_enabled,
        num_vfs=adapter.num_vfs,
        total_vfs=cap.total_vfs if cap else 0,
        num_allocated_vfs=in_use,
        queue_pairs=cap.queue_pairs if cap else 0,
        queue_pairs_in_use=qps_in_use,
        max_queue_pairs_per_vf=cap.max_queue_pairs_per_vf if cap else 0,
        vf_driver=cap.vf_driver if cap else None,
        unsupported_vf_settings=sorted(s.value for s in cap.unsupported) if cap else [],
        switch_name=switch,
    )


def adapter_detail_view(view: AdapterView, vfs: list[VfView]) -> AdapterDetailView:
    values = {attr: getattr(view, attr) for attr, _ in json_keys(AdapterView)}
    return AdapterDetailView(**values, virtual_functions=vfs)


def vf_view(
    vf: VirtualFunction, holder: VmNetworkAdapter | None, held_elsewhere: bool = False
) -> VfView:
    s = vf.settings
    return VfView(
        adapter=vf.adapter,
        function_id=vf.index,
        pci_address=vf.pci_address,
        netdev=vf.netdev,
        iommu_group=vf.iommu_group,
        mac=s.mac,
        vlan=s.vlan,
        qos=s.qos,
        vlan_protocol=s.vlan_protocol.value,
        spoof_check=s.spoof_check,
        trust=s.trust,
        max_rate=s.max_rate,
        min_rate=s.min_rate,
        link_state=s.link_state.value,
        in_use=holder is not None or held_elsewhere,
        vm_friendly_name=holder.vm if holder else None,
        vm_nic=holder.name if holder else None,
        held_elsewhere=held_elsewhere,
    )


def switch_view(
    switch: VirtualSwitch,
    uplink: Adapter,
    facts: HostFacts,
    reasons: list[Reason],
    in_use: int,
    qps_in_use: int,
    nic_count: int,
) -> SwitchView:
    pool = switch.iov_enabled and adapter_support(uplink, facts) is SriovSupport.SUPPORTED
    cap = uplink.sriov
    return SwitchView(
        name=switch.name,
        uplink=switch.uplink,
        switch_type="external",
        bridge=bridge_name(switch.name),
        iov_enabled=switch.iov_enabled,
        iov_support=not reasons,
        iov_support_reasons=[reason_view(r) for r in reasons],
        iov_virtual_function_count=uplink.num_vfs if pool else 0,
        iov_virtual_functions_in_use=in_use,
        iov_queue_pair_count=cap.queue_pairs if pool and cap else 0,
        iov_queue_pairs_in_use=qps_in_use,
        nic_count=nic_count,
    )


def vm_view(vm: VirtualMachine, nics: list[VmNetworkAdapter]) -> VmView:
    return VmView(
        name=vm.name,
        state=vm.state.value,
        nic_count=len(nics),
        nics=[n.name for n in nics],
        vfs_in_use=sum(1 for n in nics if n.assignment is not None),
    )


def vm_detail_view(
    view: VmView,
    nics: list[NicView],
    created_at: float | None,
    started_at: float | None,
) -> VmDetailView:
    values = {attr: getattr(view, attr) for attr, _ in json_keys(VmView)}
    return VmDetailView(
        **values, network_adapters=nics, created_at=created_at, started_at=started_at
    )


def nic_view(
    nic: VmNetworkAdapter,
    status: str,
    description: str,
    vf_data_path_active: bool,
    running: bool = False,
    reason: str = "",
    tagging: UplinkTagging = UplinkTagging.OFF,
) -> NicView:
    c = nic.config
    a = nic.assignment
    pvlan = pvlan_status(c.pvlan, running=running, on_vf=a is not None, tagging=tagging)
    return NicView(
        vm=nic.vm,
        name=nic.name,
        switch=c.switch,
        mac=c.mac,
        iov_weight=c.iov_weight,
        iov_queue_pairs_requested=c.iov_queue_pairs_requested,
        iov_queue_pairs_assigned=a.queue_pairs if a else 0,
        iov_usage=a is not None,
        virtual_function=VfRefView(a.adapter, a.index, a.pci_address) if a else None,
        vf_data_path_active=vf_data_path_active,
        vlan=c.vlan,
        pvlan=PvlanView(**pvlan) if pvlan is not None else None,  # type: ignore[arg-type]
        max_rate=c.max_rate,
        allow_mac_spoofing=c.allow_mac_spoofing,
        trust=c.trust,
        status=status,
        status_description=description,
        status_reason=reason,
    )


def event_view(e: Event) -> EventView:
    return EventView(e.seq, e.time, e.level.value, e.code, e.object_kind, e.object_name, e.message)


def vf_settings_view(s: VfSettings) -> VfSettingsView:
    return VfSettingsView(s.mac, s.vlan, s.qos, s.spoof_check, s.trust, s.max_rate)
