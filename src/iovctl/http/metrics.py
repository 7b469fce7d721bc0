"""``GET /metrics``: Prometheus text, from a collector over the app's own registry.

Metric names follow Hyper-V's switch properties and node_exporter's conventions:

- switches (labels ``switch``, ``uplink``): ``iovctl_switch_iov_enabled``,
  ``_iov_supported``, ``_vfs``, ``_vfs_in_use``, ``_queue_pairs``,
  ``_queue_pairs_in_use`` (``Get-VMSwitch`` IovEnabled, IovSupport,
  IovVirtualFunctionCount/InUse, IovQueuePairCount/InUse);
- SR-IOV PFs (``device``, ``pci_address``): ``iovctl_pf_sriov_numvfs``, ``_totalvfs``;
- NICs (``vm``, ``nic``, ``switch``): ``iovctl_nic_iov_weight``, and
  ``iovctl_nic_datapath_info{path,reason}`` = 1 (``path``: ``vf`` or ``software``);
- ``iovctl_events_total{code,level}``: the event log, counted in the store;
- per VF (``device``, ``vf``, ``pci_address``, ``numa_node``, ``switch``, ``vm``,
  ``nic``): ``iovctl_vf_{receive,transmit}_{bytes,packets,dropped}_total``, from the
  PF's counters (wherever the VF netdev is: host, namespace, VM);
- ``iovctl_hardware_sample_age_seconds``: how old the hardware read behind them is;
  ``iovctl_hardware_sample_failures_total``: background reads that failed (the
  previous sample stayed); ``iovctl_pf_vf_read_error{device,code}`` = 1 for a PF
  whose VFs or counters the sample could not read (its VF series are left out).

A scrape never waits on a command: the hardware is read at most once per
``max_age`` seconds (default :data:`HARDWARE_MAX_AGE_S`, or
``IOVCTL_METRICS_HARDWARE_MAX_AGE``), in the background while the previous sample
is served (stale-while-revalidate; only the very first scrape waits for one);
the store is read in one snapshot per scrape, which takes no lock.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.services.metrics import HardwareSample, MetricsView

#: Default bound on hardware reads: at most one per this many seconds.
HARDWARE_MAX_AGE_S = 5.0
MAX_AGE_ENV = "IOVCTL_METRICS_HARDWARE_MAX_AGE"


@dataclass(frozen=True)
class SampleStatus:
    """How the hardware sample behind a scrape stands."""

    age_seconds: float
    failures: int


@dataclass(frozen=True)
class _Sample:
    hardware: HardwareSample
    #: time.monotonic() when the read began.
    taken: float


class HardwareCache:
    """The last hardware sample, renewed in the background when older than ``max_age``.

    At most one read is in flight; a read that fails leaves the previous sample in
    place (and the next scrape tries again).
    """

    def __init__(self, gateway: Gateway, max_age: float) -> None:
        self.gateway = gateway
        self.max_age = max_age
        self.current: _Sample | None = None
        self._lock = anyio.Lock()
        self._renewal: asyncio.Task[None] | None = None
        #: Background reads that failed so far.
        self.failures = 0

    async def get(self) -> _Sample:
        """A sample no staler than ``max_age`` plus one read's time; waits only when
        there is none yet."""
        current = self.current
        if current is None:
            await self._renew()
            assert self.current is not None
            return self.current
        if time.monotonic() - current.taken > self.max_age and (
            self._renewal is None or self._renewal.done()
        ):
            self._renewal = asyncio.get_running_loop().create_task(self._renew_quietly())
        return current

    async def _renew(self) -> None:
        async with self._lock:
            if self.current is not None and time.monotonic() - self.current.taken <= self.max_age:
                return  # another scrape renewed it while this one waited
            taken = time.monotonic()
            sample = await self.gateway.read(api.metrics_sample)
            self.current = _Sample(sample, taken)

    async def _renew_quietly(self) -> None:
        try:
            await self._renew()
        except Exception:  # the stale sample stays; the next scrape retries
            self.failures += 1


#: What names a VF's series besides its address: adapter, index, switch, vm, nic.
_VfLabels = tuple[str, int, str | None, str | None, str | None]


class ViewCollector(Collector):
    """The families of one part of a scrape's view (:func:`state_families` or
    :func:`vf_families`). The view is the calling thread's: each scrape sets it and
    renders in its own worker thread, so concurrent scrapes do not mix."""

    def __init__(self, part: Callable[[MetricsView, SampleStatus], Iterable[Metric]]) -> None:
        self.part = part
        self._local = threading.local()

    def render(self, registry: CollectorRegistry, view: MetricsView, status: SampleStatus) -> bytes:
        self._local.scrape = (view, status)
        try:
            return generate_latest(registry)
        finally:
            self._local.scrape = None

    def collect(self) -> Iterator[Metric]:
        scrape = getattr(self._local, "scrape", None)
        if scrape is not None:
            yield from self.part(*scrape)


class Scraper:
    """One scrape: the store read in one snapshot against the cached sample, then
    the text. The VF counters' text (most of it: 6 series per VF) is rendered once
    per hardware sample and VF holders, and reused until either changes."""

    def __init__(self, gateway: Gateway, cache: HardwareCache) -> None:
        self.gateway = gateway
        self.cache = cache
        self.state = ViewCollector(state_families)
        self.vfs = ViewCollector(lambda view, _status: vf_families(view))
        #: The app's registries: the state's families, and the VF counters'.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.state)
        self.vf_registry = CollectorRegistry(auto_describe=False)
        self.vf_registry.register(self.vfs)
        #: (sample, VF labels, text) of the last VF counters rendered.
        self._vf_text: tuple[_Sample, list[_VfLabels], bytes] | None = None

    def text(self, sample: _Sample) -> bytes:
        """Runs in a worker thread."""
        view = self.gateway.call(lambda ctx: api.metrics(ctx, sample.hardware), writes=False)
        status = SampleStatus(time.monotonic() - sample.taken, self.cache.failures)
        head = self.state.render(self.registry, view, status)
        labels: list[_VfLabels] = [
            (t.adapter, t.index, t.switch, t.vm, t.nic) for t in view.vf_traffic
        ]
        cached = self._vf_text
        if cached is None or cached[0] is not sample or cached[1] != labels:
            cached = self._vf_text = (
                sample,
                labels,
                self.vfs.render(self.vf_registry, view, status),
            )
        return head + cached[2]


_SWITCH = ("switch", "uplink")
_PF = ("device", "pci_address")
_NIC = ("vm", "nic", "switch")
_VF = ("device", "vf", "pci_address", "numa_node", "switch", "vm", "nic")
#: (metric name without _total, VfStats field, help).
_VF_COUNTERS = (
    ("iovctl_vf_receive_bytes", "receive_bytes", "Bytes the VF received (PF counters)."),
    ("iovctl_vf_transmit_bytes", "transmit_bytes", "Bytes the VF sent (PF counters)."),
    ("iovctl_vf_receive_packets", "receive_packets", "Packets the VF received."),
    ("iovctl_vf_transmit_packets", "transmit_packets", "Packets the VF sent."),
    ("iovctl_vf_receive_dropped", "receive_dropped", "Packets dropped on their way to the VF."),
    ("iovctl_vf_transmit_dropped", "transmit_dropped", "Packets the VF sent that were dropped."),
)


def state_families(view: MetricsView, status: SampleStatus) -> Iterator[Metric]:
    """Switches, PFs, NICs, events and the sample's age (see the module docstring)."""

    def gauge(name: str, doc: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=list(labels))

    enabled = gauge("iovctl_switch_iov_enabled", "The switch offers VFs (IovEnabled).", _SWITCH)
    supported = gauge(
        "iovctl_switch_iov_supported", "The switch can use SR-IOV (IovSupport).", _SWITCH
    )
    vfs = gauge("iovctl_switch_vfs", "VFs in the switch's pool (IovVirtualFunctionCount).", _SWITCH)
    vfs_used = gauge("iovctl_switch_vfs_in_use", "VFs of the pool held by NICs.", _SWITCH)
    qps = gauge("iovctl_switch_queue_pairs", "Queue pairs of the pool (IovQueuePairCount).", _SWITCH)
    qps_used = gauge("iovctl_switch_queue_pairs_in_use", "Queue pairs held by NICs.", _SWITCH)
    for s in view.switches:
        labels = [s.name, s.uplink]
        enabled.add_metric(labels, int(s.iov_enabled))
        supported.add_metric(labels, int(s.iov_support))
        vfs.add_metric(labels, s.iov_virtual_function_count)
        vfs_used.add_metric(labels, s.iov_virtual_functions_in_use)
        qps.add_metric(labels, s.iov_queue_pair_count)
        qps_used.add_metric(labels, s.iov_queue_pairs_in_use)
    yield from (enabled, supported, vfs, vfs_used, qps, qps_used)

    numvfs = gauge("iovctl_pf_sriov_numvfs", "VFs enabled on the PF (sriov_numvfs).", _PF)
    totalvfs = gauge("iovctl_pf_sriov_totalvfs", "VFs the PF can have (sriov_totalvfs).", _PF)
    for a in view.adapters:
        if a.sriov_capable:
            numvfs.add_metric([a.name, a.pci_address], a.num_vfs)
            totalvfs.add_metric([a.name, a.pci_address], a.total_vfs)
    yield from (numvfs, totalvfs)

    weight = gauge("iovctl_nic_iov_weight", "The NIC's IOV weight (0: SR-IOV off).", _NIC)
    path = gauge(
        "iovctl_nic_datapath_info",
        "The NIC's data path (vf or software) and why (its status_reason); always 1.",
        (*_NIC, "path", "reason"),
    )
    for n in view.nics:
        labels = [n.vm, n.name, n.switch]
        weight.add_metric(labels, n.iov_weight)
        on = "vf" if n.vf_data_path_active else "software"
        path.add_metric([*labels, on, n.status_reason], 1)
    yield from (weight, path)

    events = CounterMetricFamily(
        "iovctl_events", "Events in the log by code and level.", labels=["code", "level"]
    )
    for (code, level), count in sorted(view.events.items()):
        events.add_metric([code, level], count)
    yield events

    age = GaugeMetricFamily(
        "iovctl_hardware_sample_age_seconds",
        "Age of the hardware read (adapters, VFs, VF counters) behind these metrics.",
    )
    age.add_metric([], status.age_seconds)
    failures = CounterMetricFamily(
        "iovctl_hardware_sample_failures",
        "Background hardware reads that failed (the previous sample was kept).",
    )
    failures.add_metric([], status.failures)
    unread = gauge(
        "iovctl_pf_vf_read_error",
        "The PF's VFs or counters could not be read (its VF series are left out); 1.",
        ("device", "code"),
    )
    for device, code in sorted(view.unread.items()):
        unread.add_metric([device, code], 1)
    yield from (age, failures, unread)


def vf_families(view: MetricsView) -> Iterator[Metric]:
    """The per-VF traffic counters (see the module docstring)."""
    counters = [
        (CounterMetricFamily(name, doc, labels=list(_VF)), attr)
        for name, attr, doc in _VF_COUNTERS
    ]
    for t in view.vf_traffic:
        labels = [
            t.adapter,
            str(t.index),
            t.pci_address,
            str(t.numa_node),
            t.switch or "",
            t.vm or "",
            t.nic or "",
        ]
        for family, attr in counters:
            family.add_metric(labels, getattr(t.stats, attr))
    yield from (family for family, _ in counters)


def max_age_from_env() -> float:
    text = os.environ.get(MAX_AGE_ENV)
    if not text:
        return HARDWARE_MAX_AGE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        from iovctl.errors import InvalidInput

        raise InvalidInput(
            "invalid-metrics-max-age",
            f"{MAX_AGE_ENV}={text!r} is not a number of seconds",
            f"set it to 0 or more (default {HARDWARE_MAX_AGE_S:g})",
        )
    return value


def router(gateway: Gateway, role: str, max_age: float | None = None) -> APIRouter:
    """``GET /metrics`` for both socket roles (a read). ``max_age``: seconds a
    hardware sample serves (None: :func:`max_age_from_env`)."""
    r = APIRouter()
    cache = HardwareCache(gateway, max_age_from_env() if max_age is None else max_age)
    scraper = Scraper(gateway, cache)

    @r.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        sample = await cache.get()
        text = await anyio.to_thread.run_sync(scraper.text, sample)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return r
