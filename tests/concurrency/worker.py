"""A separate OS process that drives iovctl on a shared state directory.

Run as ``python worker.py MODE STATE_DIR [ARGS...]``; it prints ``ready`` once
iovctl is imported and waits for a line on stdin, so the parent can release all
workers at the same moment (and time a kill from the start of the real work).

Modes:
- ``loop STATE_DIR WORKER ITERATIONS``: add NICs, start/stop its own VMs, read the
  lists; prints one JSON summary line (commands run, failures, NICs added).
- ``once STATE_DIR ARG...``: one ``iovctl ARG...`` (the parent kills it mid-way).
- ``hold STATE_DIR``: one long write transaction through the services, spilled to
  the WAL, then sleeps inside it until killed; prints ``holding`` when there.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any


def _iovctl(state_dir: str, *args: str) -> tuple[int, str, str]:
    from iovctl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--state-dir", state_dir, *args])
    return code, out.getvalue(), err.getvalue()


def _loop(state_dir: str, worker: int, iterations: int) -> dict[str, Any]:
    failures: list[dict[str, Any]] = []
    snapshot_problems: list[str] = []
    commands = 0
    added = 0

    def run(*args: str) -> str:
        nonlocal commands
        commands += 1
        code, out, err = _iovctl(state_dir, *args)
        if code != 0 or err:
            failures.append({"argv": list(args), "code": code, "stderr": err[-2000:]})
        return out

    vm_a, vm_b = f"w{worker}a", f"w{worker}b"
    run("vm", "create", vm_a, "-o", "json")
    run("vm", "create", vm_b, "-o", "json")
    for i in range(iterations):
        # w<k>a's NICs: weight 10..80 by worker; w<k>b's: every other one SR-IOV off.
        run(
            "nic",
            "add",
            vm_a,
            "--switch",
            "ext",
            "--iov-weight",
            str(10 + 10 * worker),
            "-o",
            "json",
        )
        added += 1
        run("vm", "start", vm_a, "-o", "json")
        run("nic", "add", vm_b, "--switch", "ext", "--iov-weight", str(50 * (i % 2)), "-o", "json")
        added += 1
        run(
            "nic",
            "add",
            vm_b,
            "--switch",
            "ext",
            "--name",
            f"tmp{i}",
            "--iov-weight",
            "90",
            "-o",
            "json",
        )
        run("vm", "start", vm_b, "-o", "json")
        nics = run("nic", "list", "-o", "json")
        vfs = run("vf", "list", "enp1s0", "-o", "json")
        run("nic", "remove", vm_b, f"tmp{i}", "-o", "json")
        run("nic", "set", vm_a, f"nic{i}", "--vlan", str(100 + worker), "-o", "json")
        run("vm", "stop", vm_a, "-o", "json")
        run("vm", "stop", vm_b, "-o", "json")
        snapshot_problems += _snapshot_problems(nics, vfs)
    run("vm", "start", vm_a, "-o", "json")
    return {
        "worker": worker,
        "commands": commands,
        "failures": failures,
        "added": added,
        "snapshot_problems": snapshot_problems,
    }


def _snapshot_problems(nics_json: str, vfs_json: str) -> list[str]:
    """Within one consistent read: no VF held by two NICs, no NIC on two VFs."""
    problems = []
    try:
        nics, vfs = json.loads(nics_json), json.loads(vfs_json)
    except ValueError as exc:
        return [f"unreadable JSON: {exc}"]
    held = [
        (n["virtual_function"]["adapter"], n["virtual_function"]["index"])
        for n in nics
        if n["virtual_function"]
    ]
    if len(held) != len(set(held)):
        problems.append(f"nic list shows a VF held twice: {held}")
    owners = [(v["vm_friendly_name"], v["vm_nic"]) for v in vfs if v["in_use"]]
    if len(owners) != len(set(owners)):
        problems.append(f"vf list shows a NIC on two VFs: {owners}")
    return problems


def _hold(state_dir: str) -> None:
    from iovctl.services import adapters, vms
    from iovctl.wiring import Options, open_context

    ctx = open_context(Options(state_dir=Path(state_dir)))
    # A tiny page cache makes SQLite spill uncommitted pages into the WAL: the kill
    # then lands in the middle of a write that has really reached the disk.
    ctx.store.conn.execute("PRAGMA cache_size = 2")  # type: ignore[attr-defined]
    with ctx.store.transaction():
        vms.stop_vm(ctx, "alpha")
        for i in range(200):
            vms.create_vm(ctx, f"ghost{i}")
        adapters.set_num_vfs(ctx, "ens2f0", 256)
        print("holding", flush=True)
        time.sleep(300)


def main() -> None:
    mode, state_dir, *rest = sys.argv[1:]
    import iovctl.cli.commands
    import iovctl.wiring  # noqa: F401

    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "loop":
        print(json.dumps(_loop(state_dir, int(rest[0]), int(rest[1]))), flush=True)
    elif mode == "once":
        code, _, err = _iovctl(state_dir, *rest)
        print(json.dumps({"code": code, "stderr": err}), flush=True)
    elif mode == "hold":
        _hold(state_dir)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
