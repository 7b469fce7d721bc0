"""``/metrics`` over ASGI on a simulated igb host: the exact text, values equal to the
services' views, event counts from the store, the hardware read bound, no lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from iovctl.adapters.sim.host import SimulatedHost
from iovctl.adapters.sqlite.store import DB_NAME
from iovctl.domain.model import EventLevel, VfStats
from iovctl.http import metrics as metrics_module
from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.wiring import Options

T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    """sw0 on enp1s0 (2 VFs); VM web on a VF (weight 50), VM db off (weight 0); 10
    packets in and 20 out of VF 0."""
    g = Gateway(Options(state_dir=tmp_path / "state", sim="igb"))

    def w(call: Callable[[Context], Any]) -> None:
        g.call(call, writes=True)

    w(lambda c: api.switch_create(c, "sw0", "enp1s0", True))
    w(lambda c: api.adapter_enable(c, "enp1s0", 2))
    w(lambda c: api.vm_create(c, "web"))
    w(lambda c: api.nic_add(c, "web", "sw0", "eth0", mac="52:54:00:00:00:01", iov_weight=50))
    w(lambda c: api.vm_create(c, "db"))
    w(lambda c: api.nic_add(c, "db", "sw0", "eth0", mac="52:54:00:00:00:02", iov_weight=0))
    w(lambda c: api.vm_start(c, "web"))
    traffic(g, 0, VfStats(1500, 10, 1, 3000, 20, 2))
    return g


def traffic(g: Gateway, index: int, stats: VfStats) -> None:
    def run(ctx: Context) -> None:
        assert isinstance(ctx.hardware, SimulatedHost)
        ctx.hardware.pass_traffic("enp1s0", index, stats)

    g.call(run, writes=False)


def read(g: Gateway, call: Callable[[Context], T]) -> T:
    return g.call(call, writes=False)


async def scrape(app: Any) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://iovctl"
    ) as client:
        got = await client.get("/metrics")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain; version=")
    return got.text


def without_age(text: str) -> str:
    return "".join(
        line + "\n"
        for line in text.splitlines()
        if "iovctl_hardware_sample_age_seconds" not in line
    )


EXPECTED = """\
# HELP iovctl_switch_iov_enabled The switch offers VFs (IovEnabled).
# TYPE iovctl_switch_iov_enabled gauge
iovctl_switch_iov_enabled{switch="sw0",uplink="enp1s0"} 1.0
# HELP iovctl_switch_iov_supported The switch can use SR-IOV (IovSupport).
# TYPE iovctl_switch_iov_supported gauge
iovctl_switch_iov_supported{switch="sw0",uplink="enp1s0"} 1.0
# HELP iovctl_switch_vfs VFs in the switch's pool (IovVirtualFunctionCount).
# TYPE iovctl_switch_vfs gauge
iovctl_switch_vfs{switch="sw0",uplink="enp1s0"} 2.0
# HELP iovctl_switch_vfs_in_use VFs of the pool held by NICs.
# TYPE iovctl_switch_vfs_in_use gauge
iovctl_switch_vfs_in_use{switch="sw0",uplink="enp1s0"} 1.0
# HELP iovctl_switch_queue_pairs Queue pairs of the pool (IovQueuePairCount).
# TYPE iovctl_switch_queue_pairs gauge
iovctl_switch_queue_pairs{switch="sw0",uplink="enp1s0"} 8.0
# HELP iovctl_switch_queue_pairs_in_use Queue pairs held by NICs.
# TYPE iovctl_switch_queue_pairs_in_use gauge
iovctl_switch_queue_pairs_in_use{switch="sw0",uplink="enp1s0"} 1.0
# HELP iovctl_pf_sriov_numvfs VFs enabled on the PF (sriov_numvfs).
# TYPE iovctl_pf_sriov_numvfs gauge
iovctl_pf_sriov_numvfs{device="enp1s0",pci_address="0000:01:00.0"} 2.0
# HELP iovctl_pf_sriov_totalvfs VFs the PF can have (sriov_totalvfs).
# TYPE iovctl_pf_sriov_totalvfs gauge
iovctl_pf_sriov_totalvfs{device="enp1s0",pci_address="0000:01:00.0"} 7.0
# HELP iovctl_nic_iov_weight The NIC's IOV weight (0: SR-IOV off).
# TYPE iovctl_nic_iov_weight gauge
iovctl_nic_iov_weight{nic="eth0",switch="sw0",vm="db"} 0.0
iovctl_nic_iov_weight{nic="eth0",switch="sw0",vm="web"} 50.0
# HELP iovctl_nic_datapath_info The NIC's data path (vf or software) and why (its status_reason); always 1.
# TYPE iovctl_nic_datapath_info gauge
iovctl_nic_datapath_info{nic="eth0",path="software",reason="vm-off",switch="sw0",vm="db"} 1.0
iovctl_nic_datapath_info{nic="eth0",path="vf",reason="on-vf",switch="sw0",vm="web"} 1.0
# HELP iovctl_events_total Events in the log by code and level.
# TYPE iovctl_events_total counter
iovctl_events_total{code="adapter-vfs-changed",level="info"} 1.0
iovctl_events_total{code="nic-added",level="info"} 2.0
iovctl_events_total{code="switch-created",level="info"} 1.0
iovctl_events_total{code="switch-iov-unsupported",level="warning"} 1.0
iovctl_events_total{code="vf-assigned",level="info"} 1.0
iovctl_events_total{code="vm-created",level="info"} 2.0
iovctl_events_total{code="vm-started",level="info"} 1.0
# HELP iovctl_hardware_sample_age_seconds Age of the hardware read (adapters, VFs, VF counters) behind these metrics.
# TYPE iovctl_hardware_sample_age_seconds gauge
# HELP iovctl_hardware_sample_failures_total Background hardware reads that failed (the previous sample was kept).
# TYPE iovctl_hardware_sample_failures_total counter
iovctl_hardware_sample_failures_total 0.0
# HELP iovctl_pf_vf_read_error The PF's VFs or counters could not be read (its VF series are left out); 1.
# TYPE iovctl_pf_vf_read_error gauge
"""

VF_LABELS = (
    '{{device="enp1s0",nic="{nic}",numa_node="0",pci_address="{pci}",switch="sw0",'
    'vf="{vf}",vm="{vm}"}}'
)
VF0 = VF_LABELS.format(nic="eth0", pci="0000:01:10.0", vf=0, vm="web")
VF1 = VF_LABELS.format(nic="", pci="0000:01:10.2", vf=1, vm="")
for name, help_text, vf0 in (
    ("receive_bytes", "Bytes the VF received (PF counters).", 1500),
    ("transmit_bytes", "Bytes the VF sent (PF counters).", 3000),
    ("receive_packets", "Packets the VF received.", 10),
    ("transmit_packets", "Packets the VF sent.", 20),
    ("receive_dropped", "Packets dropped on their way to the VF.", 1),
    ("transmit_dropped", "Packets the VF sent that were dropped.", 2),
):
    EXPECTED += (
        f"# HELP iovctl_vf_{name}_total {help_text}\n"
        f"# TYPE iovctl_vf_{name}_total counter\n"
        f"iovctl_vf_{name}_total{VF0} {vf0:.1f}\n"
        f"iovctl_vf_{name}_total{VF1} 0.0\n"
    )


@pytest.mark.anyio
async def test_the_exact_text_of_a_small_host(gateway: Gateway) -> None:
    text = await scrape(create_app(gateway))
    assert without_age(text) == without_age(EXPECTED)
    (age,) = [line for line in text.splitlines() if line.startswith("iovctl_hardware_sample_age")]
    assert 0 <= float(age.split()[1]) < 60


def samples(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # An empty label is no label (as Prometheus stores it).
            labels = frozenset((k, v) for k, v in s.labels.items() if v)
            out.setdefault(s.name, {})[labels] = s.value
    return out


def one(series: dict[frozenset[tuple[str, str]], float], **labels: str) -> float:
    wanted = {(k, v) for k, v in labels.items() if v}
    found = [v for k, v in series.items() if wanted <= k]
    assert len(found) == 1, (labels, series)
    return found[0]


def check_against_views(got: dict[str, dict[frozenset[tuple[str, str]], float]], g: Gateway) -> None:
    """Every value scraped (``samples``' shape) is what the services' views (the JSON
    API) say."""
    switches = read(g, api.switch_list)
    for s in switches:
        at = {"switch": s.name, "uplink": s.uplink}
        assert one(got["iovctl_switch_iov_enabled"], **at) == s.iov_enabled
        assert one(got["iovctl_switch_iov_supported"], **at) == s.iov_support
        assert one(got["iovctl_switch_vfs"], **at) == s.iov_virtual_function_count
        assert one(got["iovctl_switch_vfs_in_use"], **at) == s.iov_virtual_functions_in_use
        assert one(got["iovctl_switch_queue_pairs"], **at) == s.iov_queue_pair_count
        assert one(got["iovctl_switch_queue_pairs_in_use"], **at) == s.iov_queue_pairs_in_use
    assert len(got["iovctl_switch_vfs"]) == len(switches)
    for a in read(g, api.adapter_list):
        if a.sriov_capable:
            at = {"device": a.name, "pci_address": a.pci_address}
            assert one(got["iovctl_pf_sriov_numvfs"], **at) == a.num_vfs
            assert one(got["iovctl_pf_sriov_totalvfs"], **at) == a.total_vfs
    nics = read(g, api.nic_list)
    assert len(got["iovctl_nic_datapath_info"]) == len(nics)
    for n in nics:
        at = {"vm": n.vm, "nic": n.name, "switch": n.switch}
        assert one(got["iovctl_nic_iov_weight"], **at) == n.iov_weight
        path = "vf" if n.vf_data_path_active else "software"
        assert one(got["iovctl_nic_datapath_info"], **at, path=path, reason=n.status_reason) == 1
    counts: dict[tuple[str, str], int] = {}
    for e in read(g, api.events):
        counts[(e.code, e.level)] = counts.get((e.code, e.level), 0) + 1
    assert {
        (dict(k)["code"], dict(k)["level"]): v for k, v in got["iovctl_events_total"].items()
    } == counts
    vfs = read(g, lambda c: api.vf_list(c, "enp1s0"))
    stats = read(g, lambda c: c.hardware.vf_stats("enp1s0"))
    assert len(got["iovctl_vf_receive_bytes_total"]) == len(vfs)
    for vf in vfs:
        at = {
            "device": vf.adapter,
            "vf": str(vf.function_id),
            "pci_address": vf.pci_address,
            "vm": vf.vm_friendly_name or "",
            "nic": vf.vm_nic or "",
        }
        for attr in ("receive_bytes", "transmit_packets", "receive_dropped"):
            assert one(got[f"iovctl_vf_{attr}_total"], **at) == getattr(
                stats[vf.function_id], attr
            )


@pytest.mark.anyio
async def test_values_are_the_views_values(gateway: Gateway) -> None:
    check_against_views(samples(await scrape(create_app(gateway))), gateway)
    # The pool changes: db gets a VF too; a fresh app (cold) agrees again.
    gateway.call(lambda c: api.nic_set(c, "db", "eth0", iov_weight=10), writes=True)
    gateway.call(lambda c: api.vm_start(c, "db"), writes=True)
    text = await scrape(create_app(gateway))
    check_against_views(samples(text), gateway)
    assert 'reason="on-vf",switch="sw0",vm="db"' in text


@pytest.mark.anyio
async def test_events_of_other_writers_count(gateway: Gateway, tmp_path: Path) -> None:
    """A CLI process writes to the store, not to the daemon: its events are counted."""
    app = create_app(gateway)
    before = one(samples(await scrape(app))["iovctl_events_total"], code="vm-created")
    cli = Gateway(Options(state_dir=tmp_path / "state"))
    cli.call(lambda c: api.vm_create(c, "from-cli"), writes=True)
    after = one(samples(await scrape(app))["iovctl_events_total"], code="vm-created")
    assert after == before + 1


@pytest.mark.anyio
async def test_the_hardware_is_read_at_most_once_per_max_age(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real = api.metrics_sample

    def counted(ctx: Context) -> Any:
        reads.append(1)
        return real(ctx)

    monkeypatch.setattr(api, "metrics_sample", counted)
    monkeypatch.setenv(metrics_module.MAX_AGE_ENV, "3600")
    app = create_app(gateway)
    first = samples(await scrape(app))
    traffic(gateway, 0, VfStats(receive_packets=5))
    gateway.call(lambda c: api.vm_create(c, "late"), writes=True)
    for _ in range(4):
        later = samples(await scrape(app))
    assert reads == [1]
    # The counters are the sample's; the store is read at each scrape.
    at = {"vf": "0"}
    assert one(later["iovctl_vf_receive_packets_total"], **at) == one(
        first["iovctl_vf_receive_packets_total"], **at
    )
    assert one(later["iovctl_events_total"], code="vm-created") == 3
    # A VF changes hands within one sample: its series carry the new holder.
    gateway.call(lambda c: api.nic_set(c, "db", "eth0", iov_weight=10), writes=True)
    gateway.call(lambda c: api.vm_start(c, "db"), writes=True)
    moved = samples(await scrape(app))
    assert one(moved["iovctl_vf_receive_packets_total"], vf="1", vm="db", nic="eth0") == 0
    assert reads == [1]

    # With a bound of 0 a stale sample is served while a new one is read behind it.
    monkeypatch.setenv(metrics_module.MAX_AGE_ENV, "0")
    app = create_app(gateway)
    await scrape(app)
    traffic(gateway, 0, VfStats(receive_packets=7))
    await scrape(app)  # serves the old sample, starts a read
    with anyio.fail_after(10):
        while True:
            got = samples(await scrape(app))
            if one(got["iovctl_vf_receive_packets_total"], **at) == 10 + 5 + 7:
                break
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_scrape_does_not_wait_for_the_write_lock(
    gateway: Gateway, tmp_path: Path
) -> None:
    app = create_app(gateway)
    await scrape(app)  # warm: a hardware sample exists
    holder = sqlite3.connect(tmp_path / "state" / DB_NAME, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a command holding the write lock
        holder.execute(
            "INSERT INTO event (time, level, code, object_kind, object_name, message)"
            " VALUES (0, ?, 'uncommitted', 'host', 'h', 'not yet')",
            (EventLevel.INFO.value,),
        )
        with anyio.fail_after(5):
            text = await scrape(app)
        assert "uncommitted" not in text
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert 'code="uncommitted"' in await scrape(app)


def test_a_bad_max_age_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from iovctl.errors import InvalidInput

    monkeypatch.setenv(metrics_module.MAX_AGE_ENV, "soon")
    with pytest.raises(InvalidInput) as info:
        metrics_module.max_age_from_env()
    assert info.value.code == "invalid-metrics-max-age" and info.value.hint


@pytest.mark.anyio
async def test_a_failed_background_read_keeps_the_last_sample(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iovctl.errors import HardwareError

    real = api.metrics_sample
    calls: list[int] = []

    def flaky(ctx: Context) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise HardwareError("adapter-gone", "adapter enp1s0 disappeared")
        return real(ctx)

    monkeypatch.setattr(api, "metrics_sample", flaky)
    monkeypatch.setenv(metrics_module.MAX_AGE_ENV, "0")
    app = create_app(gateway)
    first = samples(await scrape(app))
    with anyio.fail_after(10):
        while True:
            got = samples(await scrape(app))
            if one(got["iovctl_hardware_sample_failures_total"]) >= 1:
                break
            await anyio.sleep(0.01)
    assert got["iovctl_vf_receive_bytes_total"] == first["iovctl_vf_receive_bytes_total"]
