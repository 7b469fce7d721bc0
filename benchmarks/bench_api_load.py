"""API load benchmark (apart from the tests): 50 clients against one ``iovctl daemon``.

A simulated host of 16 PFs x 256 VFs (the even PFs with all 256 enabled, the odd
ones with 4, so that there the NICs outnumber the VFs and compete for them by
weight), a virtual switch with IOV on each, and per client a few VMs with two NICs each. Every client then loops for the
run's length over its own objects, over the admin unix socket: reads (a VM, its
NICs, the switches, one PF's VFs, the host, the last events) and writes (VM start
and stop, a NIC's IOV weight), about 60 / 40. Reports p50/p99 latency of reads and
writes as the client sees them, and checks at the end, on the store itself once the
daemon is stopped:

- every client was answered (no transport error, no 5xx);
- no lost update: each NIC's weight and each VM's state is the last one its client
  was told was done;
- no VF held twice, and ``vf list`` agrees with ``nic list`` on who holds what.

Usage: python benchmarks/bench_api_load.py [--clients 50] [--seconds 30] [--json FILE]
The tests run a 3-second version (tests/daemon/test_load.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PFS, VFS = 16, 256
#: VFs enabled on the odd PFs: fewer than the NICs on their switches.
CONTENDED_VFS = 4


def spec_yaml() -> str:
    lines = ["name: load-16x256", "adapters:"]
    for i in range(PFS):
        lines.append(
            f'  - {{name: ens{i}f0, pci_address: "0000:{0x10 + i:02x}:00.0", driver: ice,'
            f" sriov: {{total_vfs: {VFS}, queue_pairs: 1024, max_queue_pairs_per_vf: 4}}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Tally:
    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)


@dataclass
class Expected:
    weights: dict[tuple[str, str], int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _iovctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iovctl", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=600,
    )


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    spec = root / "spec.yaml"
    spec.write_text(spec_yaml())
    state, sock = root / "state", root / "a.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOVCTL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "iovctl", "--sim", str(spec), "--state-dir", str(state),
         "daemon", "--socket", str(sock), "--read-socket", ""],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(sock))
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start: {proc.stderr}") from None
            time.sleep(0.05)
        finally:
            probe.close()
    return proc, state, sock


def _client(sock: Path) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(sock)), base_url="http://iovctl", timeout=120
    )


async def setup(sock: Path, clients: int, vms_per_client: int) -> Expected:
    expected = Expected()
    async with _client(sock) as c:
        for i in range(PFS):
            # Even PFs at 256 VFs (reads at scale), odd ones at a few: there NICs
            # outnumber VFs, so starts, stops and weights fight over the pool.
            vfs = VFS if i % 2 == 0 else CONTENDED_VFS
            r = await c.post(f"/api/v1/adapters/ens{i}f0/enable", json={"num_vfs": vfs})
            r.raise_for_status()
            r = await c.post("/api/v1/switches", json={"name": f"sw{i}", "uplink": f"ens{i}f0", "iov": True})
            r.raise_for_status()

        async def one(k: int) -> None:
            for v in range(vms_per_client):
                vm = f"c{k}v{v}"
                (await c.post("/api/v1/vms", json={"name": vm})).raise_for_status()
                expected.states[vm] = "off"
                for n in range(2):
                    switch = f"sw{(k * vms_per_client * 2 + v * 2 + n) % PFS}"
                    r = await c.post(f"/api/v1/vms/{vm}/nics", json={"switch": switch, "iov_weight": 50})
                    r.raise_for_status()
                    expected.weights[(vm, f"nic{n}")] = 50

        await asyncio.gather(*(one(k) for k in range(clients)))
    return expected


async def client_loop(
    sock: Path, k: int, vms_per_client: int, until: float, tally: Tally, expected: Expected
) -> int:
    rng = random.Random(k)
    done = 0
    async with _client(sock) as c:
        while time.monotonic() < until:
            vm = f"c{k}v{rng.randrange(vms_per_client)}"
            roll = rng.random()
            write = roll < 0.4
            if roll < 0.15:
                action = "stop" if expected.states[vm] == "running" else "start"
                method, path, body = "POST", f"/api/v1/vms/{vm}/{action}", None
            elif roll < 0.4:
                nic, weight = f"nic{rng.randrange(2)}", rng.randrange(0, 101)
                method, path, body = "PATCH", f"/api/v1/vms/{vm}/nics/{nic}", {"iov_weight": weight}
            else:
                method, body = "GET", None
                path = rng.choice(
                    [f"/api/v1/vms/{vm}", f"/api/v1/vms/{vm}/nics", "/api/v1/switches",
                     f"/api/v1/adapters/ens{rng.randrange(PFS)}f0/vfs", "/api/v1/host",
                     "/api/v1/events?limit=20"]
                )
            start = time.perf_counter()
            try:
                got = await c.request(method, path, json=body)
            except httpx.HTTPError as exc:
                tally.failures.append(f"client {k}: {method} {path}: {type(exc).__name__} {exc}")
                continue
            elapsed = (time.perf_counter() - start) * 1000
            done += 1
            (tally.writes if write else tally.reads).append(elapsed)
            if got.status_code >= 500:
                tally.failures.append(f"client {k}: {method} {path}: {got.status_code} {got.text}")
            elif got.status_code >= 400:
                tally.refused[got.json()["error"]["code"]] += 1
            elif method == "POST":
                expected.states[vm] = got.json()["state"]
            elif method == "PATCH":
                assert body is not None
                expected.weights[(vm, path.rsplit("/", 1)[1])] = body["iov_weight"]
    return done


def check_store(state: Path, expected: Expected) -> list[str]:
    """What the store says once the daemon is gone, against what clients were told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOVCTL_")}
    nics = json.loads(_iovctl("--state-dir", str(state), "nic", "list", "-o", "json", env=env).stdout)
    vms = json.loads(_iovctl("--state-dir", str(state), "vm", "list", "-o", "json", env=env).stdout)
    vfs = json.loads(_iovctl("--state-dir", str(state), "vf", "list", "-o", "json", env=env).stdout)
    problems: list[str] = []
    for n in nics:
        want = expected.weights.get((n["vm"], n["name"]))
        if want is not None and n["iov_weight"] != want:
            problems.append(f"lost update: {n['vm']}/{n['name']} weight {n['iov_weight']}, told {want}")
    for v in vms:
        want_state = expected.states.get(v["name"])
        if want_state is not None and v["state"] != want_state:
            problems.append(f"lost update: VM {v['name']} is {v['state']}, told {want_state}")
    held = Counter(
        (n["virtual_function"]["adapter"], n["virtual_function"]["index"])
        for n in nics
        if n["virtual_function"] is not None
    )
    problems += [f"VF {vf} held by {count} NICs" for vf, count in held.items() if count > 1]
    in_use = {(v["adapter"], v["function_id"]) for v in vfs if v["in_use"]}
    if in_use != set(held):
        problems.append(f"vf list and nic list disagree on {len(in_use ^ set(held))} VFs")
    return problems


def run_load(root: Path, clients: int, seconds: float, vms_per_client: int) -> dict[str, Any]:
    proc, state, sock = start_daemon(root)
    try:
        t0 = time.monotonic()
        expected = asyncio.run(setup(sock, clients, vms_per_client))
        setup_s = time.monotonic() - t0
        tally = Tally()

        async def run_all() -> list[int]:
            until = time.monotonic() + seconds
            return await asyncio.gather(
                *(client_loop(sock, k, vms_per_client, until, tally, expected) for k in range(clients))
            )

        t1 = time.monotonic()
        per_client = asyncio.run(run_all())
        wall = time.monotonic() - t1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    problems = tally.failures + check_store(state, expected)
    problems += [f"client {k} was never answered" for k, n in enumerate(per_client) if n == 0]
    if proc.returncode != 0:
        problems.append(f"the daemon exited {proc.returncode}: {err.decode()[-2000:]}")
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "setup_seconds": round(setup_s, 1),
        "host": f"{PFS} PFs x {VFS} VFs",
        "vms": len(expected.states),
        "nics": len(expected.weights),
        "requests": sum(per_client),
        "requests_per_second": round(sum(per_client) / wall, 1),
        "reads": {"count": len(tally.reads), "p50_ms": round(pct(tally.reads, 0.5), 2),
                  "p99_ms": round(pct(tally.reads, 0.99), 2)},
        "writes": {"count": len(tally.writes), "p50_ms": round(pct(tally.writes, 0.5), 2),
                   "p99_ms": round(pct(tally.writes, 0.99), 2)},
        "refused": dict(tally.refused),
        "daemon_exit": proc.returncode,
        "problems": problems,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--vms-per-client", type=int, default=4)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="iovload-") as tmp:
        report = run_load(Path(tmp), args.clients, args.seconds, args.vms_per_client)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["problems"] or report["daemon_exit"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
