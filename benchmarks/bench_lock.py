"""Lock benchmark (apart from the tests): no write lock held across a kernel wait.

Two PFs on a simulated host. One command changes the VF count of PF 0, and its VFs
take ``--delay`` seconds to appear (a simulated driver, as a real PF takes seconds
to create VFs). Meanwhile another command starts and stops a VM on the switch of
PF 1, again and again. Reports that VM's start / stop latency:

- ``idle``: nothing else running;
- ``during-wait``: while the VF count change waits for its VFs (journaled: the
  wait runs without the store's lock);
- ``lock-held``: while another command holds the write lock for the same time, as
  every command did before the operation journal (its kernel work ran inside its
  transaction). The first start waits for the whole delay.

Usage: python benchmarks/bench_lock.py [--delay 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.services.vms import NicChanges
from iovctl.wiring import Options, open_context

SPEC = """\
name: lock-bench
adapters:
  - {name: ens0f0, pci_address: "0000:3b:00.0", driver: ice, sriov: {total_vfs: 64}}
  - {name: ens1f0, pci_address: "0000:5e:00.0", driver: ice, sriov: {total_vfs: 64}}
"""


class SlowVfs:
    """The hardware port, with VFs that take ``delay`` seconds to appear."""

    def __init__(self, hardware: Any, delay: float, waiting: threading.Event) -> None:
        self._hardware = hardware
        self._delay = delay
        self._waiting = waiting

    def set_num_vfs(self, adapter: str, count: int) -> None:
        self._hardware.set_num_vfs(adapter, count)
        if count:
            self._waiting.set()
            time.sleep(self._delay)  # the driver creating VFs; sysfs polled meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hardware, name)


def open_ctx(state: Path, spec: Path) -> Context:
    return open_context(Options(state_dir=state, sim=str(spec)))


def cycle(ctx: Context, until: float, first_only: bool = False) -> tuple[list[float], list[float]]:
    """Start and stop VM ``other`` until ``until``; latencies in ms."""
    starts: list[float] = []
    stops: list[float] = []
    while True:
        t = time.perf_counter()
        journal.run(ctx, vms.start_vm, "other")
        starts.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        journal.run(ctx, vms.stop_vm, "other")
        stops.append((time.perf_counter() - t) * 1000)
        if first_only or time.monotonic() >= until:
            return starts, stops


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "first_ms": round(samples[0], 2),
        "median_ms": round(statistics.median(samples), 2),
        "max_ms": round(max(samples), 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=5.0)
    ap.add_argument("--json", metavar="FILE")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="iovctl-lock-bench-") as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(SPEC)
        state = Path(tmp) / "state"
        ctx = open_ctx(state, spec)
        journal.run(ctx, adapters.set_num_vfs, "ens1f0", 8)
        journal.run(ctx, switches.create, "sw0", "ens0f0", True)
        journal.run(ctx, switches.create, "sw1", "ens1f0", True)
        journal.run(ctx, vms.create_vm, "other")
        journal.run(ctx, vms.add_nic, "other", "sw1", None, NicChanges(iov_weight=50))

        idle = cycle(ctx, time.monotonic() + opts.delay)

        # The VF count change on PF 0, in its own thread with its own connections.
        waiting = threading.Event()
        elapsed: list[float] = []

        def change_count() -> None:
            mine = open_ctx(state, spec)
            mine.hardware = SlowVfs(mine.hardware, opts.delay, waiting)  # type: ignore[assignment]
            t = time.perf_counter()
            journal.run(mine, adapters.set_num_vfs, "ens0f0", 16)
            elapsed.append(time.perf_counter() - t)
            mine.store.close()

        worker = threading.Thread(target=change_count)
        worker.start()
        waiting.wait(30)
        during = cycle(ctx, time.monotonic() + opts.delay * 0.8)
        worker.join()

        # What every command did before the journal: the wait inside the transaction.
        held = threading.Event()

        def hold_lock() -> None:
            mine = open_ctx(state, spec)
            with mine.store.transaction():
                held.set()
                time.sleep(opts.delay)
            mine.store.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        held.wait(30)
        locked = cycle(ctx, 0, first_only=True)
        holder.join()
        ctx.store.close()

    result = {
        "delay_s": opts.delay,
        "vf_count_change_s": round(elapsed[0], 2),
        "vm_start": {
            "idle": summary(idle[0]),
            "during-wait": summary(during[0]),
            "lock-held": summary(locked[0]),
        },
        "vm_stop": {"idle": summary(idle[1]), "during-wait": summary(during[1])},
    }
    print(json.dumps(result, indent=2))
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
