"""What ``/metrics`` shows: a sample of the hardware, and the store read against it.

A scrape must never wait on a command or on the machine. So the machine is read
apart (:func:`sample_hardware`: facts, adapters, VFs, VF counters, whether each
held VF carries traffic), and a front end keeps that sample for a bounded time;
each scrape then reads only the store, in one snapshot (:func:`metrics_view`),
and sees the hardware through the sample (:class:`SampledHost`). Switches,
adapters and NICs are built by the same readers as the JSON API's views, so a
metric and the API's field agree whenever the hardware has not moved since the
sample was taken.

Must not import ports' adapters, the CLI, or any HTTP/Prometheus library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import (
    Adapter,
    HostFacts,
    VfSetting,
    VfSettings,
    VfStats,
    VirtualFunction,
    VmState,
)
from iovctl.errors import Conflict, HardwareError, NotFound
from iovctl.services.context import Context
from iovctl.services.readers import NicViewer, adapter_view, switch_view
from iovctl.services.views import AdapterView, NicView, SwitchView


@dataclass(frozen=True)
class HardwareSample:
    """The machine as read at one moment, for the scrapes that follow."""

    backend: str
    facts: HostFacts
    adapters: tuple[Adapter, ...]
    #: Adapter name -> its VFs (their PCI addresses label the counters).
    vfs: dict[str, tuple[VirtualFunction, ...]]
    #: Adapter name -> VF index -> counters.
    stats: dict[str, dict[int, VfStats]]
    #: (vm, nic) -> the runtime's ``vf_data_path_active``, for NICs of running VMs
    #: that held a VF when the sample was taken.
    data_paths: dict[tuple[str, str], bool] = field(default_factory=dict)
    #: Adapter name -> the error code its VFs or counters could not be read with
    #: (a driver still creating VFs, a PF gone): its VFs are left out, the rest shown.
    unread: dict[str, str] = field(default_factory=dict)


def sample_hardware(ctx: Context) -> HardwareSample:
    """Read the machine: one VF listing and one counter read per adapter with VFs."""
    hw = ctx.hardware
    adapters = tuple(hw.adapters())
    vfs: dict[str, tuple[VirtualFunction, ...]] = {}
    stats: dict[str, dict[int, VfStats]] = {}
    unread: dict[str, str] = {}
    for adapter in adapters:
        if adapter.num_vfs:
            try:
                vfs[adapter.name] = tuple(hw.virtual_functions(adapter.name))
                stats[adapter.name] = hw.vf_stats(adapter.name)
            except HardwareError as exc:
                vfs.pop(adapter.name, None)
                unread[adapter.name] = exc.code
    running = {vm.name for vm in ctx.store.list_vms() if vm.state is VmState.RUNNING}
    data_paths = {
        (nic.vm, nic.name): ctx.runtime.vf_data_path_active(nic.vm, nic.name)
        for nic in ctx.store.list_nics()
        if nic.assignment is not None and nic.vm in running
    }
    return HardwareSample(
        hw.backend_name, hw.host_facts(), adapters, vfs, stats, data_paths, unread
    )


@dataclass(slots=True)
class VfTrafficView:
    """One VF's counters and whose traffic they are."""

    adapter: str
    index: int
    pci_address: str
    numa_node: int
    #: The virtual switch whose uplink the adapter is; None when none.
    switch: str | None
    #: The NIC holding the VF (``vm``/``nic``); None for a free VF.
    vm: str | None
    nic: str | None
    stats: VfStats


@dataclass(slots=True)
class MetricsView:
    """Everything one scrape shows."""

    switches: list[SwitchView]
    adapters: list[AdapterView]
    nics: list[NicView]
    #: (code, level) -> events in the log.
    events: dict[tuple[str, str], int]
    vf_traffic: list[VfTrafficView]
    #: Adapter name -> why its VFs are missing from ``vf_traffic`` (error code).
    unread: dict[str, str] = field(default_factory=dict)


def metrics_view(ctx: Context, sample: HardwareSample) -> MetricsView:
    """Read the store (the caller's snapshot) and show it against ``sample``; touches
    no hardware. A switch whose uplink the sample lacks is left out."""
    sampled = Context(ctx.store, SampledHost(sample), ctx.runtime)
    switches: list[SwitchView] = []
    for switch in ctx.store.list_switches():
        try:
            switches.append(switch_view(sampled, switch))
        except NotFound:
            continue
    adapters = [adapter_view(sampled, a) for a in sample.adapters]
    nic_list = ctx.store.list_nics()
    known = {s.name for s in switches}
    viewer = NicViewer(
        sampled,
        # A NIC that got its VF after the sample counts as on it until the next sample.
        data_path=lambda vm, nic: sample.data_paths.get((vm, nic), True),
    )
    nics = viewer.views([n for n in nic_list if n.config.switch in known])
    holders = {
        (n.assignment.adapter, n.assignment.index): n for n in nic_list if n.assignment is not None
    }
    on_uplink = {s.uplink: s.name for s in switches}
    traffic = []
    for adapter in sample.adapters:
        counters = sample.stats.get(adapter.name, {})
        for vf in sample.vfs.get(adapter.name, ()):
            if vf.index not in counters:
                continue
            holder = holders.get((adapter.name, vf.index))
            traffic.append(
                VfTrafficView(
                    adapter=adapter.name,
                    index=vf.index,
                    pci_address=vf.pci_address,
                    numa_node=adapter.numa_node,
                    switch=on_uplink.get(adapter.name),
                    vm=holder.vm if holder else None,
                    nic=holder.name if holder else None,
                    stats=counters[vf.index],
                )
            )
    return MetricsView(
        switches, adapters, nics, ctx.store.event_counts(), traffic, dict(sample.unread)
    )


class SampledHost:
    """The HostHardware port over a :class:`HardwareSample`: reads answer from the
    sample, writes are refused (Conflict ``read-only-sample``)."""

    def __init__(self, sample: HardwareSample) -> None:
        self.sample = sample
        self.backend_name = sample.backend
        self._by_name = {a.name: a for a in sample.adapters}

    def host_facts(self) -> HostFacts:
        return self.sample.facts

    def adapters(self) -> list[Adapter]:
        return list(self.sample.adapters)

    def adapter(self, name: str) -> Adapter:
        found = self._by_name.get(name)
        if found is None:
            raise NotFound(
                "unknown-adapter",
                f"adapter {name!r} does not exist on this host",
                f"adapters: {', '.join(sorted(self._by_name))} (iovctl adapter list)",
            )
        return found

    def virtual_functions(self, adapter: str) -> list[VirtualFunction]:
        self.adapter(adapter)
        return list(self.sample.vfs.get(adapter, ()))

    def virtual_function(self, adapter: str, index: int) -> VirtualFunction:
        for vf in self.virtual_functions(adapter):
            if vf.index == index:
                return vf
        raise HardwareError("vf-not-found", f"adapter {adapter} has no VF {index}")

    def vf_stats(self, adapter: str) -> dict[int, VfStats]:
        self.adapter(adapter)
        return dict(self.sample.stats.get(adapter, {}))

    def unsupported_vf_settings(self, adapter: str) -> frozenset[VfSetting]:
        cap = self.adapter(adapter).sriov
        return cap.unsupported if cap else frozenset(VfSetting)

    def set_num_vfs(self, adapter: str, count: int) -> None:
        raise self._read_only()

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        raise self._read_only()

    def bind_vf_driver(self, adapter: str, index: int, driver: VfDriver) -> str | None:
        raise self._read_only()

    def power_cycle(self) -> None:
        raise self._read_only()

    def refresh(self) -> None:
        """A sample is what it is: the next sample reads the machine again."""

    def close(self) -> None:
        """Nothing held open."""

    @staticmethod
    def _read_only() -> Conflict:
        return Conflict(
            "read-only-sample",
            "a hardware sample taken for metrics cannot change the machine",
            "change it through a command (iovctl, or the daemon's API)",
        )
