"""Core benchmark (apart from the tests): a big simulated host, measured.

16 PFs x 256 VFs, 2,500 VMs with 5,000 NICs, state on disk (WAL), as a real
state directory would be. Reports:
- VM start / stop in-process (one journaled operation, as the CLI runs it: plan,
  side effects, confirmations, the freed VFs handed on): p50 / p99
- ``iovctl nic list -o json`` wall time for all NICs (subprocess)
- ``iovctl --version`` cold start (subprocess)
Goals (issue 2): p99 < 2 ms, nic list < 300 ms, --version < 200 ms.

Usage: python benchmarks/bench_core.py [--vms 2500] [--samples 400] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iovctl.adapters.sim import simulated_machine
from iovctl.adapters.sim.spec import parse_spec, spec_to_json
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges

PFS, VFS = 16, 256


def big_spec() -> dict[str, object]:
    return {
        "name": "bench",
        "adapters": [
            {
                "name": f"ens{i}f0",
                "pci_address": f"0000:{0x10 + i:02x}:00.0",
                "driver": "ice",
                "link_speed_mbps": 100000,
                "sriov": {
                    "total_vfs": VFS,
                    "queue_pairs": 1024,
                    "max_queue_pairs_per_vf": 4,
                    "vf_offset": 8,
                    "vf_stride": 1,
                },
            }
            for i in range(PFS)
        ],
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99, plus p99.9 and max: a WAL checkpoint (every ~64 MiB) shows there."""
    return {
        "p50": round(pct(samples, 0.5), 3),
        "p99": round(pct(samples, 0.99), 3),
        "p999": round(pct(samples, 0.999), 3),
        "max": round(max(samples), 3),
    }


def build(state_dir: Path, n_vms: int) -> Context:
    store = SqliteStore.open(state_dir)
    spec = parse_spec(big_spec())
    hw, rt = simulated_machine(spec, state_dir)
    with store.transaction():
        store.set_meta("backend", "sim")
        store.set_meta("sim_spec", spec_to_json(spec))
    ctx = Context(store, hw, rt)
    rng = random.Random(7)
    for i in range(PFS):
        journal.run(ctx, adapters.set_num_vfs, f"ens{i}f0", VFS)
        journal.run(ctx, switches.create, f"sw{i}", f"ens{i}f0", True)

    def populate(ctx: Context) -> None:
        for v in range(n_vms):
            name = f"vm{v:05d}"
            vms.create_vm(ctx, name)
            for k in range(2):
                vms.add_nic(
                    ctx,
                    name,
                    f"sw{(v + k * 7) % PFS}",
                    None,
                    NicChanges(iov_weight=rng.randint(1, 100)),
                )

    journal.run(ctx, populate)  # no side effects: one transaction
    for v in range(n_vms):
        journal.run(ctx, vms.start_vm, f"vm{v:05d}")
    return ctx


def timed_cli(args: list[str], runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "iovctl", *args], check=True, stdout=subprocess.DEVNULL, env=env
        )
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=2500)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--json", metavar="FILE")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iovctl-bench-") as tmp:
        state = Path(tmp)
        t0 = time.perf_counter()
        ctx = build(state, opts.vms)
        setup_s = time.perf_counter() - t0
        rng = random.Random(11)
        starts, stops = [], []
        for _ in range(opts.samples):
            name = f"vm{rng.randrange(opts.vms):05d}"
            t = time.perf_counter()
            # vm stop as the CLI runs it: the guest asked first (a simulated VM has
            # none), then the VM's operation.
            vms.shut_down(ctx, name, vms.SHUTDOWN_TIMEOUT_S)
            journal.run(ctx, vms.shut_down_done, name)
            stops.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            journal.run(ctx, vms.start_vm, name)
            starts.append((time.perf_counter() - t) * 1000)
        in_use = sum(ctx.store.usage_on_adapter(f"ens{i}f0")[0] for i in range(PFS))
        n_nics = len(ctx.store.list_nics())
        ctx.store.close()
        env = dict(os.environ, IOVCTL_STATE_DIR=str(state))
        # Time what an installed iovctl does: with bytecode compiled (pip compiles
        # on install; PYTHONDONTWRITEBYTECODE would make every run recompile).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        src = Path(__file__).resolve().parent.parent / "src"
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True, env=env)
        timed_cli(["nic", "list", "-o", "json"], 1, env)  # warm the page cache
        nic_list = timed_cli(["nic", "list", "-o", "json"], 7, env)
        version = timed_cli(["--version"], 21, env)
    result = {
        "host": f"{PFS} PFs x {VFS} VFs, {opts.vms} VMs, {n_nics} NICs, {in_use} VFs in use",
        "setup_s": round(setup_s, 1),
        "vm_start_ms": percentiles(starts),
        "vm_stop_ms": percentiles(stops),
        "nic_list_json_ms": {
            "median": round(statistics.median(nic_list), 1),
            "min": round(min(nic_list), 1),
        },
        "version_cold_ms": {
            "median": round(statistics.median(version), 1),
            "min": round(min(version), 1),
        },
    }
    print(json.dumps(result, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
