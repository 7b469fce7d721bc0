"""``iovctl bench datapath``: the JSON it writes, and that it leaves nothing behind,
also when interrupted. Checks structure and sanity only, never timings (a loaded CI
machine must not fail these)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iovctl.adapters.netns.kernel import Links, list_netns

pytestmark = pytest.mark.privileged

IOVCTL = [sys.executable, "-m", "iovctl"]


def _leftovers(tag: str) -> list[str]:
    """Namespaces and host links the bench run with ``tag`` made that still exist."""
    spaces = [
        n
        for n in list_netns("iov-")
        if n.startswith((f"iov-vm-b{tag}-", f"iov-nic-iovb{tag}", f"iov-bw{tag}"))
    ]
    links = Links()
    try:
        host = [n for n in links.names() if n.startswith(f"iovb{tag}")]
    finally:
        links.close()
    return spaces + host


def _check_path(measured: dict[str, Any], path: str) -> None:
    for direction in ("vm_to_world", "vm_to_vm"):
        m = measured[direction]
        assert m["throughput_mbps"] > 0, (path, direction)
        lat = m["latency"]
        assert lat["round_trips"] > 0
        assert 0 < lat["p50_us"] <= lat["p99_us"]
        # The interface counters agree with the allocator about which half carried it.
        assert m["carried_by"] == path, (path, direction, m["tx_bytes_by_half"])


def test_quick_run_writes_sane_json_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            *IOVCTL,
            "bench",
            "datapath",
            "--quick",
            "--vms",
            "2",
            "--tool",
            "python",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "iovctl-bench-datapath/1"
    assert doc["backend"].startswith("emulated:")
    assert doc["plan"]["quick"] is True

    for path in ("vf", "synthetic"):
        _check_path(doc["paths"][path], path)
        scaling = doc["scaling"][path]
        assert [s["vms"] for s in scaling] == [1, 2]
        for step in scaling:
            assert len(step["per_vm_mbps"]) == step["vms"]
            assert all(v > 0 for v in step["per_vm_mbps"])
    for direction in ("vm_to_world", "vm_to_vm"):
        assert set(doc["ratios"][direction]) == {"throughput", "latency_p50", "latency_p99"}
        assert doc["ratios"][direction]["throughput"] > 0

    failover = doc["failover"]
    assert failover["sent"] > 0
    assert [s["kind"] for s in failover["switches"]] == ["removal", "return"]
    for kind in ("removal", "return"):
        # A gap is measured: at least one interval, since echoes come every 10 ms.
        assert failover[kind]["max_gap_ms"] >= failover["interval_ms"] / 2
        assert failover[kind]["lost"] >= 0
    assert failover["tcp_survived"] is True, failover["tcp_error"]

    assert [s["vms"] for s in doc["setup"]] == [1, 4, 8]
    for step in doc["setup"]:
        assert step["setup_s"] > 0
        assert step["on_vf"] == step["vms"]  # 8 VFs: everyone gets one

    assert doc["cleanup"]["leftovers"] == {"namespaces": [], "links": [], "nft_chains": []}
    assert _leftovers(doc["plan"]["tag"]) == []
    # The table went to stdout.
    assert "VF path vs synthetic path" in done.stdout


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_cleans_up(signum: signal.Signals) -> None:
    proc = subprocess.Popen(
        [*IOVCTL, "bench", "datapath", "--quick", "--vms", "2", "--tool", "python"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and
        # Python keeps an ignored SIGINT ignored: the bench is to see the default.
        preexec_fn=_default_sigint,
    )
    assert proc.stderr is not None
    tag, seen = None, []
    try:
        for line in proc.stderr:  # bounded: the run ends by itself within minutes
            seen.append(line)
            found = re.search(r"\(tag ([0-9a-f]+)\)", line)
            tag = tag or (found.group(1) if found else None)
            if "vf path: VM to world" in line:  # VMs, probes and servers are alive now
                break
        assert tag is not None, "".join(seen)
        assert _leftovers(tag)  # there is something to clean up
        proc.send_signal(signum)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert _leftovers(tag) == []


def test_real_adapter_that_is_missing_is_refused_and_nothing_is_left() -> None:
    """``--adapter`` takes a real PF (tested on igb in the testbed); a wrong name is
    refused by name before anything is built."""
    done = subprocess.run(
        [*IOVCTL, "bench", "datapath", "--quick", "--adapter", "nosuch0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "error[adapter-not-found]: network adapter nosuch0" in done.stderr
    assert "Traceback" not in done.stderr
    tag = re.search(r"\(tag ([0-9a-f]+)\)", done.stderr)
    assert tag is not None and _leftovers(tag.group(1)) == []
