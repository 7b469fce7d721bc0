"""``iovctl bench datapath --adapter PF`` on the guest's real igb PF and its VFs.

Checks what the bench proves, never its timings (TCG): both paths carried the traffic
they were meant to (interface counters), the TCP connection lived through a real VF
being taken away and given back, and the PF is handed back as it was found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

IOMMU = os.environ.get("IOVCTL_TESTBED_IOMMU") == "1"
# A few minutes under TCG: once per guest configuration (boot 2 runs only reboot tests).
pytestmark = pytest.mark.testbed


def igb_pf() -> str:
    found = sorted(Path("/sys/bus/pci/drivers/igb").glob("0000:*/net/*"))
    assert len(found) == 1, found
    return found[0].name


def pf_state(pf: str) -> dict[str, Any]:
    link = json.loads(
        subprocess.run(["ip", "-j", "link", "show", pf], capture_output=True, check=True).stdout
    )[0]
    numvfs = Path(f"/sys/class/net/{pf}/device/sriov_numvfs").read_text().strip()
    return {"master": link.get("master"), "up": "UP" in link["flags"], "numvfs": numvfs}


def bench(tmp_path: Path, pf: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "bench.json"
    argv = ["bench", "datapath", "--quick", "--vms", "2", "--tool", "python"]
    done = subprocess.run(
        [sys.executable, "-m", "iovctl", *argv, "--adapter", pf, "--json", str(out)],
        capture_output=True, text=True, timeout=1200,
        env=dict(os.environ, IOVCTL_STATE_DIR=str(tmp_path / "unused")),
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done, out


@pytest.mark.skipif(not IOMMU, reason="without an IOMMU no VM gets a VF (tested below)")
def test_bench_on_real_vfs(tmp_path: Path) -> None:
    pf = igb_pf()
    before = pf_state(pf)
    done, out = bench(tmp_path, pf)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    print(json.dumps({k: doc[k] for k in ("ratios", "failover", "setup")}, indent=1))
    assert doc["backend"] == "linux" and doc["plan"]["adapter"] == pf
    for path in ("vf", "synthetic"):
        for direction in ("vm_to_world", "vm_to_vm"):
            measured = doc["paths"][path][direction]
            assert measured["throughput_mbps"] > 0
            assert measured["carried_by"] == path, (path, direction, measured)
    failover = doc["failover"]
    assert failover["tcp_survived"] is True, failover["tcp_error"]
    assert [s["kind"] for s in failover["switches"]] == ["removal", "return"]
    assert doc["cleanup"]["leftovers"] == {"namespaces": [], "links": [], "nft_chains": []}
    assert pf_state(pf) == before


@pytest.mark.skipif(IOMMU, reason="with an IOMMU the bench runs (above)")
def test_bench_without_iommu_refuses_and_gives_the_pf_back(tmp_path: Path) -> None:
    pf = igb_pf()
    before = pf_state(pf)
    done, _ = bench(tmp_path, pf)
    assert done.returncode != 0
    assert "error[bench-wrong-path]" in done.stderr, done.stderr[-2000:]
    assert pf_state(pf) == before
