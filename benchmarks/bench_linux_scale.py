"""The Linux backend at scale against the simulator (apart from the tests).

One host shape, two backends, side by side in one run: 16 PFs (ice) x 256 VFs, VMs
with two NICs each, every VM running. The simulated host is bench_core's; the Linux
backend (``LinuxHost``) runs over a fake sysfs tree of the same shape
(tests/unit/linux/sysfs_tree.py, kernel-like writes from kernel_seams.py) and a fake
rtnetlink kernel behind pyroute2's real codec (tests/unit/linux/fake_rtnl.py). Both use
the simulated VM runtime: what differs is the hardware backend only.

Each operation is one command: a fresh Context (so host facts are read again) and,
on the Linux side, a fresh ``LinuxHost`` over the same tree, as every iovctl process
builds one. Measured per backend, in process:
- ``adapter list`` (services.adapters.list_adapters)
- ``vf list <adapter>`` (256 VFs with their settings) and ``vf list`` (all 4,096)
- ``vm start`` / ``vm stop`` (one journaled operation, as the CLI runs it), random VMs
Each repeat measures every operation on both backends; the table shows the median
over repeats of each p50 / p99, and the Linux / simulator ratio. Goal (issue 8):
the Linux backend within 2x of the simulator.

Usage: python benchmarks/bench_linux_scale.py [--vms 600] [--samples 100]
       [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from iovctl.adapters.linux.host import LinuxHost
from iovctl.adapters.linux.netlink import NetlinkVfs
from iovctl.adapters.sim import simulated_machine
from iovctl.adapters.sim.host import SimulatedHost
from iovctl.adapters.sim.machine import open_machine
from iovctl.adapters.sim.runtime import SimulatedVmRuntime
from iovctl.adapters.sim.spec import parse_spec, spec_to_json
from iovctl.adapters.sqlite.store import SqliteStore
from iovctl.ports import HostHardware
from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))
from linux.fake_rtnl import FakeRtnl, IceRules
from linux.kernel_seams import KernelSysfs
from linux.sysfs_tree import HostSpec, PfSpec, Tree, build, port_config

PFS, VFS = 16, 256


def pf_name(i: int) -> str:
    return f"ens{i}f0"


def pf_bus(i: int) -> int:
    # 256 VFs at offset 8, stride 1 take the PF's bus and one more.
    return 0x10 + 2 * i


def sim_spec() -> dict[str, object]:
    return {
        "name": "bench",
        "adapters": [
            {
                "name": pf_name(i),
                "pci_address": f"0000:{pf_bus(i):02x}:00.0",
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


def tree_spec() -> HostSpec:
    pfs = [
        PfSpec(
            address=f"0000:{pf_bus(i):02x}:00.0",
            netdev=pf_name(i),
            ifindex=10 + i,
            driver="ice",
            device="0x1592",
            vf_device="0x1889",
            speed="100000",
            mac=f"b4:96:91:00:00:{i:02x}",
            total_vfs=VFS,
            offset=8,
            stride=1,
            bridge=f"0000:00:{2 + i:02x}.0",
            iommu_group=10 + i,
        )
        for i in range(PFS)
    ]
    configs = {pf.bridge: port_config(subordinate_bus=pf_bus(i) + 1) for i, pf in enumerate(pfs)}
    return HostSpec(pfs=pfs, bridge_configs=configs, loaded_modules=("vfio_pci", "ice"))  # type: ignore[misc]


class LinuxSide:
    """The fake tree and fake rtnetlink, and a fresh LinuxHost per command."""

    def __init__(self, root: Path) -> None:
        self.tree: Tree = build(root, tree_spec())
        self.rtnl = FakeRtnl(0, ifindex=10, ifname=pf_name(0), rules=IceRules())
        for i in range(1, PFS):
            self.rtnl.add_pf(10 + i, pf_name(i))

    def host(self) -> LinuxHost:
        def numvfs(pf: PfSpec, count: int) -> None:
            self.rtnl.set_num_vfs(pf.ifindex, count)

        rtnl = self.rtnl
        return LinuxHost(
            self.tree.root,
            sysfs=KernelSysfs(
                self.tree,
                vf_driver="iavf",
                on_num_vfs=numvfs,
                vf_create_timeout=5,
                poll_interval=0.001,
            ),
            netlink=NetlinkVfs(lambda: IPRoute(use_socket=rtnl)),
            kernel_release=self.tree.spec.kernel_release,
        )


def populate(ctx: Context, n_vms: int) -> None:
    """bench_core's host: every PF at 256 VFs with an IOV switch, two NICs per VM."""
    rng = random.Random(7)
    for i in range(PFS):
        journal.run(ctx, adapters.set_num_vfs, pf_name(i), VFS)
        journal.run(ctx, switches.create, f"sw{i}", pf_name(i), True)

    def vms_and_nics(ctx: Context) -> None:
        for v in range(n_vms):
            name = f"vm{v:05d}"
            vms.create_vm(ctx, name)
            for k in range(2):
                nic = NicChanges(iov_weight=rng.randint(1, 100))
                vms.add_nic(ctx, name, f"sw{(v + k * 7) % PFS}", None, nic)

    journal.run(ctx, vms_and_nics)
    for v in range(n_vms):
        journal.run(ctx, vms.start_vm, f"vm{v:05d}")


class Backend:
    """One backend's store and a way to build a Context per command."""

    def __init__(
        self,
        name: str,
        store: SqliteStore,
        hardware: Callable[[], HostHardware],
        runtime: SimulatedVmRuntime,
    ):
        self.name = name
        self.store = store
        self.hardware = hardware
        self.runtime = runtime

    def context(self) -> Context:
        return Context(self.store, self.hardware(), self.runtime)


def sim_backend(state: Path) -> Backend:
    store = SqliteStore.open(state)
    spec = parse_spec(sim_spec())
    host, runtime = simulated_machine(spec, state)
    with store.transaction():
        store.set_meta("backend", "sim")
        store.set_meta("sim_spec", spec_to_json(spec))
    return Backend("sim", store, lambda: SimulatedHost(host.machine, spec), runtime)


def linux_backend(state: Path, root: Path) -> Backend:
    store = SqliteStore.open(state)
    side = LinuxSide(root)
    with store.transaction():
        store.set_meta("backend", "linux")
    runtime = SimulatedVmRuntime(open_machine(state))
    runtime.ensure_schema()
    return Backend("linux", store, side.host, runtime)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def measure(backend: Backend, n_vms: int, samples: int, seed: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    reads = max(5, samples // 10)
    out["adapter list"] = [
        timed(lambda: adapters.list_adapters(backend.context())) for _ in range(reads)
    ]
    out["vf list <adapter>"] = [
        timed(lambda: adapters.list_vfs(backend.context(), pf_name(3))) for _ in range(reads)
    ]
    out["vf list"] = [timed(lambda: adapters.list_vfs(backend.context())) for _ in range(3)]
    rng = random.Random(seed)
    starts, stops = [], []
    for _ in range(samples):
        name = f"vm{rng.randrange(n_vms):05d}"

        def stop(vm: str = name) -> None:
            journal.run(backend.context(), vms.stop_vm, vm)

        def start(vm: str = name) -> None:
            journal.run(backend.context(), vms.start_vm, vm)

        stops.append(timed(stop))
        starts.append(timed(start))
    out["vm start"], out["vm stop"] = starts, stops
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(runs: list[dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per operation: the median over repeats of each repeat's p50 and p99 (ms)."""
    return {
        op: {
            q: round(statistics.median(pct(run[op], value) for run in runs), 3)
            for q, value in (("p50", 0.5), ("p99", 0.99))
        }
        for op in runs[0]
    }


def table(sim: dict[str, dict[str, float]], linux: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'operation':<18} {'sim p50':>9} {'sim p99':>9} {'linux p50':>10} {'linux p99':>10}"
        f" {'x p50':>6} {'x p99':>6}"
    ]
    for op in sim:
        s, lx = sim[op], linux[op]
        lines.append(
            f"{op:<18} {s['p50']:>9.3f} {s['p99']:>9.3f} {lx['p50']:>10.3f} {lx['p99']:>10.3f}"
            f" {lx['p50'] / s['p50']:>6.2f} {lx['p99'] / s['p99']:>6.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=600)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iovctl-bench-linux-") as tmp:
        base = Path(tmp)
        setup: dict[str, float] = {}
        backends = []
        for name in ("sim", "linux"):
            (base / name).mkdir()
            t0 = time.perf_counter()
            if name == "sim":
                backend = sim_backend(base / name / "state")
            else:
                backend = linux_backend(base / name / "state", base / name / "root")
            populate(backend.context(), opts.vms)
            setup[name] = round(time.perf_counter() - t0, 1)
            backends.append(backend)
        runs: dict[str, list[dict[str, list[float]]]] = {b.name: [] for b in backends}
        for repeat in range(opts.repeats):
            for backend in backends:
                runs[backend.name].append(measure(backend, opts.vms, opts.samples, 11 + repeat))
        in_use = {
            b.name: sum(b.store.usage_on_adapter(pf_name(i))[0] for i in range(PFS))
            for b in backends
        }
        for backend in backends:
            backend.store.close()
    sim, linux = summary(runs["sim"]), summary(runs["linux"])
    result: dict[str, Any] = {
        "host": f"{PFS} PFs x {VFS} VFs, {opts.vms} VMs, {2 * opts.vms} NICs",
        "vfs_in_use": in_use,
        "setup_s": setup,
        "repeats": opts.repeats,
        "sim_ms": sim,
        "linux_ms": linux,
        "ratio": {
            op: {q: round(linux[op][q] / sim[op][q], 2) for q in ("p50", "p99")} for op in sim
        },
    }
    print(table(sim, linux))
    print(json.dumps(result, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
