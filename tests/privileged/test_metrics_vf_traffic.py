"""Per-VF traffic in ``/metrics`` on the emulated NIC: a VM (a network namespace) on a
VF pings the world, and that VF's counters move, labelled with the VM and its NIC,
while the VF netdev lives in the VM's namespace (read from the NIC's side)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from netns_lab import Lab, probe
from prometheus_client.parser import text_string_to_metric_families

from iovctl.adapters.netns.spec import emulation_to_json
from iovctl.http import metrics as metrics_module
from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.wiring import Options

pytestmark = pytest.mark.privileged

#: netprobe's echo as a veth counts it: Ethernet 14 + IPv4 20 + ICMP 8 + 12 payload.
ECHO_FRAME = 54


def vf_series(text: str, vm: str) -> dict[str, float]:
    """The VF counters of ``vm``'s NIC nic0, by metric name."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("iovctl_vf_") and s.labels.get("vm") == vm:
                assert s.labels["nic"] == "nic0"
                out[s.name] = s.value
    return out


def test_vf_counters_move_with_the_vms_traffic(
    make_lab: Callable[..., Lab], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = make_lab("veb", num_vfs=2)
    vm = lab.add_vm("m", weight=100)
    nic = lab.nic(vm)
    assert nic["vf_data_path_active"] is True
    index = nic["virtual_function"]["index"]
    # The daemon's view of the lab's state directory: the same emulated host.
    spec = tmp_path / "emulation.json"
    spec.write_text(emulation_to_json(lab.hardware.spec))
    gateway = Gateway(Options(state_dir=tmp_path / lab.tag, emulate=str(spec)))
    monkeypatch.setenv(metrics_module.MAX_AGE_ENV, "0")
    app = create_app(gateway)

    async def scrape(client: httpx.AsyncClient) -> str:
        got = await client.get("/metrics")
        assert got.status_code == 200
        return got.text

    async def run() -> tuple[dict[str, float], dict[str, float], str]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://iovctl"
        ) as client:
            before = vf_series(await scrape(client), vm)
            sent = probe(lab.ns(vm), "ping", lab.world_ip, "40")
            assert sent["received"] == 40
            after: dict[str, float] = {}
            for _ in range(100):  # the sample renews behind the scrapes
                text = await scrape(client)
                after = vf_series(text, vm)
                if after["iovctl_vf_receive_packets_total"] >= before[
                    "iovctl_vf_receive_packets_total"
                ] + 40:
                    break
                await asyncio.sleep(0.05)
            return before, after, text

    before, after, text = asyncio.run(run())
    for direction in ("receive", "transmit"):
        assert (
            after[f"iovctl_vf_{direction}_packets_total"]
            >= before[f"iovctl_vf_{direction}_packets_total"] + 40
        )
        assert (
            after[f"iovctl_vf_{direction}_bytes_total"]
            >= before[f"iovctl_vf_{direction}_bytes_total"] + 40 * ECHO_FRAME
        )
    assert f'vf="{index}"' in text
    path = f'nic="nic0",path="vf",reason="on-vf",switch="{lab.switch}",vm="{vm}"'
    assert f"iovctl_nic_datapath_info{{{path}}} 1.0" in text
