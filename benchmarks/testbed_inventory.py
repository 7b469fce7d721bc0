"""Inventory read benchmark, run inside the QEMU igb guest (not part of the tests).

    bash tests/testbed/run -- -s -k test_inventory_read /mnt/host/benchmarks/testbed_inventory.py

Compares a full SR-IOV inventory read (every PF, its VFs and their settings):
iovctl's Linux backend in-process, the ``iovctl vf list -o json`` command, and
what an admin script does: ``ip -d -j link show`` plus a sysfs walk in shell.
Medians of repeated runs; prints one JSON line tagged IOVCTL-BENCH.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.testbed

SHELL_WALK = r"""
ip -d -j link show >/dev/null
for d in /sys/bus/pci/devices/*; do
  [ -e "$d/sriov_totalvfs" ] || continue
  read -r total <"$d/sriov_totalvfs"; read -r num <"$d/sriov_numvfs"
  for v in "$d"/virtfn*; do
    [ -e "$v" ] || continue
    addr=$(basename "$(readlink "$v")"); read -r ven <"$v/vendor"; read -r dev <"$v/device"
    grp=$(basename "$(readlink "$v/iommu_group" 2>/dev/null)" 2>/dev/null)
    net=$(ls "$v/net" 2>/dev/null)
  done
done
"""


def median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 2)


def test_inventory_read(tmp_path: object) -> None:
    from iovctl.adapters.linux.host import LinuxHost

    host = LinuxHost()
    pf = next(a for a in host.adapters() if a.driver == "igb")
    host.set_num_vfs(pf.name, 0)
    host.set_num_vfs(pf.name, 7)
    try:

        def in_process() -> None:
            fresh = LinuxHost()
            for a in fresh.adapters():
                if a.sriov is not None:
                    fresh.virtual_functions(a.name)

        env_dir = f"--state-dir={tmp_path}/state"
        cli = [sys.executable, "-m", "iovctl", env_dir, "vf", "list", "-o", "json"]
        subprocess.run(cli, check=True, capture_output=True)
        result = {
            "vfs": 7,
            "iovctl_in_process_ms": median_ms(in_process, 30),
            "iovctl_cli_ms": median_ms(
                lambda: subprocess.run(cli, check=True, capture_output=True), 7
            ),
            "ip_plus_sysfs_shell_ms": median_ms(
                lambda: subprocess.run(["bash", "-c", SHELL_WALK], check=True), 15
            ),
            "python_startup_ms": median_ms(
                lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 7
            ),
        }
        print("IOVCTL-BENCH " + json.dumps(result))
    finally:
        host.set_num_vfs(pf.name, 0)
