"""Scrape time of ``GET /metrics`` on bench_core's host (apart from the tests).

16 PFs x 256 VFs (4,096 VFs, each with traffic counted), 2,500 VMs with 5,000 NICs,
state on disk. The app is called over ASGI in-process (no socket), as the daemon's
event loop would run it:
- cold: a new app each time, so the scrape reads the hardware (adapters, every VF,
  every VF's counters, the runtime's data paths) and then the store;
- warm: one app, the hardware sample cached (the default 5 s bound never expires
  here), so a scrape reads the store in one snapshot and renders.
Reports median and p99 (ms), the series count and the response size.

Usage: python benchmarks/bench_metrics.py [--vms 2500] [--cold 20] [--warm 50] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import PFS, VFS, build, pct

from iovctl.adapters.sim.host import SimulatedHost
from iovctl.domain.model import VfStats
from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.wiring import Options


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 1),
        "p99": round(pct(samples, 0.99), 1),
        "min": round(min(samples), 1),
        "max": round(max(samples), 1),
    }


async def scrape_ms(client: httpx.AsyncClient) -> tuple[float, str]:
    t = time.perf_counter()
    got = await client.get("/metrics")
    ms = (time.perf_counter() - t) * 1000
    got.raise_for_status()
    return ms, got.text


async def measure(gateway: Gateway, cold_runs: int, warm_runs: int) -> dict[str, object]:
    cold: list[float] = []
    text = ""
    for _ in range(cold_runs):
        app = create_app(gateway)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://iovctl"
        ) as client:
            ms, text = await scrape_ms(client)
            cold.append(ms)
    app = create_app(gateway)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://iovctl"
    ) as client:
        await scrape_ms(client)  # takes the sample
        warm = [(await scrape_ms(client))[0] for _ in range(warm_runs)]
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    return {
        "cold_ms": summary(cold),
        "warm_ms": summary(warm),
        "series": series,
        "response_kib": round(len(text.encode()) / 1024),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=2500)
    ap.add_argument("--cold", type=int, default=20)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--json", metavar="FILE")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iovctl-bench-") as tmp:
        state = Path(tmp)
        t0 = time.perf_counter()
        ctx = build(state, opts.vms)
        assert isinstance(ctx.hardware, SimulatedHost)
        for i in range(PFS):
            for vf in range(VFS):
                ctx.hardware.pass_traffic(
                    f"ens{i}f0", vf, VfStats(1500 * vf, vf, 0, 3000 * vf, 2 * vf, 0)
                )
        ctx.store.close()
        setup_s = time.perf_counter() - t0
        gateway = Gateway(Options(state_dir=state))
        result = {
            "host": f"{PFS} PFs x {VFS} VFs, {opts.vms} VMs",
            "setup_s": round(setup_s, 1),
            **asyncio.run(measure(gateway, opts.cold, opts.warm)),
        }
    print(json.dumps(result, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
