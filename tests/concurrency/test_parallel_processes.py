"""Many OS processes on one state directory (issue 2, item 4 and "Done when").

- 8 processes at once add NICs and start/stop their own VMs on one small VF pool:
  every command succeeds (no "database is locked", no traceback), nothing is lost,
  no VF is held twice, the pool is used as the rules say, freed VFs are scrubbed.
- A process killed with SIGKILL in the middle of a write leaves the previous
  consistent state: the next command sees exactly what was committed before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    SCRUBBED_VF,
    allocation_problems,
    clean_env,
    run_in_process,
    state_dump,
)

WORKER = Path(__file__).with_name("worker.py")
PROCESSES = 8
ITERATIONS = 3
POOL_VFS = 3


def iovctl(state_dir: Path, *args: str) -> Any:
    result = run_in_process(["--state-dir", str(state_dir), *args, "-o", "json"])
    assert result.code == 0, result.err
    assert result.err == ""
    return result.json()


def spawn_all(mode: str, state_dir: Path, args: list[list[str]]) -> list[subprocess.Popen[str]]:
    """Start one worker per argument list; return once all of them have imported iovctl."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(state_dir), *a],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for a in args
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.stderr.read() if proc.stderr else "")
    return procs


def spawn(mode: str, state_dir: Path, *args: str) -> subprocess.Popen[str]:
    (proc,) = spawn_all(mode, state_dir, [list(args)])
    return proc


def release(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def demo_pool(state_dir: Path, num_vfs: int = POOL_VFS) -> None:
    for args in (
        ("--sim", "demo", "adapter", "enable", "enp1s0", "--num-vfs", str(num_vfs)),
        ("switch", "create", "ext", "--uplink", "enp1s0", "--iov"),
    ):
        iovctl(state_dir, *args)


# -- 8 writers at once ---------------------------------------------------------------------


def test_eight_processes_on_one_small_pool_end_consistent(tmp_path):
    state_dir = tmp_path / "state"
    demo_pool(state_dir)
    workers = spawn_all("loop", state_dir, [[str(k), str(ITERATIONS)] for k in range(PROCESSES)])
    release(workers)
    reports = [finish(w) for w in workers]

    # Every command of every process succeeded, cleanly.
    failures = [f for r in reports for f in r["failures"]]
    assert failures == []
    assert [p for r in reports for p in r["snapshot_problems"]] == []
    assert sum(r["commands"] for r in reports) == PROCESSES * (3 + 11 * ITERATIONS)

    nics = iovctl(state_dir, "nic", "list")
    vfs = iovctl(state_dir, "vf", "list", "enp1s0")
    # Nothing lost: every NIC added is there, the temporary ones are gone.
    assert len(nics) == sum(r["added"] for r in reports) == PROCESSES * ITERATIONS * 2
    per_vm = Counter(n["vm"] for n in nics)
    assert per_vm == {f"w{k}{x}": ITERATIONS for k in range(PROCESSES) for x in "ab"}
    assert not any(n["name"].startswith("tmp") for n in nics)
    # Every `nic set` landed.
    assert {n["vlan"] for n in nics if n["vm"] == "w3a"} == {103}
    # No VF held twice; both views agree; held VFs carry their NIC's MAC.
    assert allocation_problems(vfs, nics) == []

    # VFs in use == min(VFs, eligible NICs), and held by the heaviest NICs.
    vms = {vm["name"]: vm["state"] for vm in iovctl(state_dir, "vm", "list")}
    assert vms == {
        f"w{k}{x}": "running" if x == "a" else "off" for k in range(PROCESSES) for x in "ab"
    }
    eligible = [n for n in nics if vms[n["vm"]] == "running" and n["iov_weight"] > 0]
    holders = [n for n in nics if n["iov_usage"]]
    assert len(holders) == min(POOL_VFS, len(eligible))
    switch = iovctl(state_dir, "switch", "show", "ext")
    assert switch["iov_virtual_functions_in_use"] == len(holders)
    assert switch["iov_queue_pairs_in_use"] == len(holders)
    waiting = [n for n in eligible if not n["iov_usage"]]
    assert min(n["iov_weight"] for n in holders) >= max(n["iov_weight"] for n in waiting)
    assert {n["vm"] for n in holders} == {f"w{PROCESSES - 1}a"}  # weight 80 beats the rest

    # Second wave, all at once again: every process stops its VM. All VFs come back
    # scrubbed, nobody is left holding one.
    stoppers = spawn_all("once", state_dir, [["vm", "stop", f"w{k}a"] for k in range(PROCESSES)])
    release(stoppers)
    assert [finish(s) for s in stoppers] == [{"code": 0, "stderr": ""}] * PROCESSES
    nics = iovctl(state_dir, "nic", "list")
    vfs = iovctl(state_dir, "vf", "list", "enp1s0")
    assert not any(n["iov_usage"] for n in nics)
    assert len(vfs) == POOL_VFS
    for vf in vfs:
        assert {k: vf[k] for k in SCRUBBED_VF} == SCRUBBED_VF
        assert vf["in_use"] is False
    assert allocation_problems(vfs, nics) == []
    codes = Counter(e["code"] for e in iovctl(state_dir, "events"))
    # Every VF handed out came back exactly once (released, preempted or revoked).
    assert (
        codes["vf-assigned"] == codes["vf-released"] + codes["vf-preempted"] + codes["vf-revoked"]
    )
    assert codes["nic-added"] == PROCESSES * ITERATIONS * 3


def test_eight_processes_initialise_a_fresh_state_dir_at_once(tmp_path):
    """The very first commands race to create, migrate and bind the state directory."""
    state_dir = tmp_path / "fresh"
    procs = spawn_all(
        "once", state_dir, [["--sim", "demo", "vm", "create", f"vm{k}"] for k in range(PROCESSES)]
    )
    release(procs)
    assert [finish(p) for p in procs] == [{"code": 0, "stderr": ""}] * PROCESSES
    vms = iovctl(state_dir, "vm", "list")
    assert sorted(vm["name"] for vm in vms) == sorted(f"vm{k}" for k in range(PROCESSES))
    assert iovctl(state_dir, "host")["backend"] == "simulated:demo"
    assert len(iovctl(state_dir, "adapter", "list")) == 4  # one host, powered on once


# -- killed mid-write ----------------------------------------------------------------------


def populated(state_dir: Path) -> None:
    demo_pool(state_dir)
    iovctl(state_dir, "vm", "create", "alpha")
    iovctl(state_dir, "nic", "add", "alpha", "--switch", "ext", "--iov-weight", "50", "--vlan", "7")
    iovctl(state_dir, "vm", "start", "alpha")
    iovctl(state_dir, "vm", "create", "beta")


def wal_size(state_dir: Path) -> int:
    wal = state_dir / "iovctl.db-wal"
    return wal.stat().st_size if wal.exists() else 0


def test_sigkill_inside_a_long_write_transaction_keeps_the_previous_state(tmp_path):
    state_dir = tmp_path / "state"
    populated(state_dir)
    before = state_dump(state_dir)
    wal_before = wal_size(state_dir)

    holder = spawn("hold", state_dir)
    release([holder])
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line == "holding\n", holder.stderr.read() if holder.stderr else ""
    try:
        # Uncommitted pages really reached the WAL file: this is a mid-write kill.
        assert wal_size(state_dir) > wal_before
        # Readers are not blocked by the writer and see only committed state.
        assert iovctl(state_dir, "nic", "list") == json.loads(before["nic list"])
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL

    assert state_dump(state_dir) == before
    conn = sqlite3.connect(state_dir / "iovctl.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    # The write lock died with the process: the next writer goes straight through.
    assert iovctl(state_dir, "vm", "create", "gamma")["name"] == "gamma"
    assert iovctl(state_dir, "nic", "show", "alpha", "nic0")["virtual_function"]["index"] == 0


def _normalised(dump: dict[str, str]) -> dict[str, str]:
    """A state dump without event timestamps (the only thing two runs legitimately differ in)."""
    out = dict(dump)
    events = json.loads(out["events"])
    for e in events:
        e.pop("time")
    out["events"] = json.dumps(events)
    out["sql"] = re.sub(r'(INSERT INTO "event" VALUES\(\d+,)[^,]+,', r"\1T,", out["sql"])
    return out


#: When to kill, as a fraction of the time the undisturbed command needs to reach its
#: COMMIT on this machine: before BEGIN, inside the transaction, around COMMIT, after
#: (among the journaled steps).
KILL_AT = [0.0, 0.3, 0.6, 0.75, 0.9, 1.0, 1.1, 3.0, 10.0, 30.0]


@pytest.fixture(scope="module")
def heavy_start(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A VM with 48 NICs on the E810 (64 VFs): starting it is one big transaction.
    Gives the state dir before, its dump, the dump after an undisturbed start in a
    worker process, and how long that took from "go" to its COMMIT (the WAL grows)."""
    base = tmp_path_factory.mktemp("heavy")
    state_dir = base / "before"
    iovctl(state_dir, "--sim", "demo", "adapter", "enable", "ens2f0", "--num-vfs", "64")
    iovctl(state_dir, "switch", "create", "fast", "--uplink", "ens2f0", "--iov")
    iovctl(state_dir, "vm", "create", "big")
    for i in range(48):
        iovctl(
            state_dir,
            "nic",
            "add",
            "big",
            "--switch",
            "fast",
            "--iov-weight",
            str(1 + i),
            "--vlan",
            str(1 + i),
        )
    before = state_dump(state_dir)
    after_dir = base / "after"
    shutil.copytree(state_dir, after_dir)
    proc = spawn("once", after_dir, "vm", "start", "big")
    wal_at_start = wal_size(after_dir)
    started = time.monotonic()
    release([proc])
    while wal_size(after_dir) == wal_at_start and proc.poll() is None:
        time.sleep(0.0005)
    duration = time.monotonic() - started
    assert finish(proc) == {"code": 0, "stderr": ""}
    return {
        "dir": state_dir,
        "before": before,
        "after": state_dump(after_dir),
        "duration": duration,
    }


def _journal(state_dir: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(state_dir / "iovctl.db")
    try:
        return conn.execute("SELECT id, command, state FROM operation").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("fraction", KILL_AT)
def test_sigkill_at_any_point_is_finished_by_the_next_command(tmp_path, heavy_start, fraction):
    """Killed before its plan commits: nothing happened. Killed later: the journal
    holds the rest, and the next command finishes it. Never a store and a machine
    that disagree once that command is done."""
    state_dir = tmp_path / "state"
    shutil.copytree(heavy_start["dir"], state_dir)
    proc = spawn("once", state_dir, "vm", "start", "big")
    release([proc])
    time.sleep(fraction * heavy_start["duration"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)

    seen = _normalised(state_dump(state_dir))
    if not _journal(state_dir):
        assert seen in (_normalised(heavy_start["before"]), _normalised(heavy_start["after"]))
    # The next write command finishes what the killed one left, then does its own.
    report = iovctl(state_dir, "apply")
    assert _journal(state_dir) == []
    if iovctl(state_dir, "vm", "show", "big")["state"] == "off":
        assert seen == _normalised(heavy_start["before"])
        iovctl(state_dir, "vm", "start", "big")
    nics = iovctl(state_dir, "nic", "list")
    vfs = iovctl(state_dir, "vf", "list", "ens2f0")
    assert allocation_problems(vfs, nics) == [], report
    assert sum(n["iov_usage"] for n in nics) == 48
    assert all(n["vf_data_path_active"] for n in nics)


def _has_open(pid: int, path: Path) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir())
    except OSError:
        return False


def test_two_hosts_racing_for_a_fresh_state_dir_one_wins_the_other_is_refused(tmp_path):
    """Both processes read "no host yet", then queue for the write lock: the second
    must not run its command against its own host spec on a dir bound to the other."""
    state_dir = tmp_path / "fresh"
    from iovctl.adapters.sqlite.store import SqliteStore

    SqliteStore.open(state_dir).close()  # created and migrated, bound to no host yet
    db = state_dir / "iovctl.db"
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        procs = spawn_all(
            "once",
            state_dir,
            [
                ["--sim", "demo", "vm", "create", "on-demo"],
                ["--sim", "igb", "vm", "create", "on-igb"],
            ],
        )
        release(procs)
        deadline = time.monotonic() + 30
        while not all(_has_open(p.pid, db) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)  # both have read the (empty) binding and wait for the lock
    finally:
        lock.execute("COMMIT")
        lock.close()
    results = [finish(p) for p in procs]
    codes = sorted(r["code"] for r in results)
    assert codes == [0, 6], results
    loser = next(r for r in results if r["code"] == 6)
    assert loser["stderr"].startswith("error[state-backend-mismatch]:")
    winner = "demo" if results[0]["code"] == 0 else "igb"
    assert iovctl(state_dir, "host")["backend"] == f"simulated:{winner}"
    assert [vm["name"] for vm in iovctl(state_dir, "vm", "list")] == [f"on-{winner}"]
