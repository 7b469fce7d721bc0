"""The API under load, briefly: 50 clients mixing reads and writes for 3 seconds on a
simulated 16 PF x 256 VF host (the 30-second run with latencies is
benchmarks/bench_api_load.py, the same code)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from helpers import allocation_problems, run_in_process

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_api_load", ROOT / "benchmarks/bench_api_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_api_load"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_fifty_clients_are_all_answered_and_nothing_is_lost(short_dir: Path) -> None:
    report = _bench().run_load(short_dir, clients=50, seconds=3.0, vms_per_client=2)
    assert report["problems"] == [], report["problems"][:20]
    assert report["daemon_exit"] == 0
    assert report["reads"]["count"] > 50 and report["writes"]["count"] > 50, report
    state = ["--state-dir", str(short_dir / "state")]
    nics = run_in_process([*state, "nic", "list", "-o", "json"]).json()
    vfs = run_in_process([*state, "vf", "list", "-o", "json"]).json()
    assert len(nics) == 200 and len(vfs) == 8 * 256 + 8 * 4
    assert allocation_problems(vfs, nics) == []
    assert any(n["virtual_function"] is not None for n in nics)  # VMs ran on VFs
