"""``iovctl demo``: the whole SR-IOV story, narrated, on throwaway simulated hosts.

Every step is a real ``iovctl`` command run in-process against a fresh state
directory, printed as the admin would type it.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STEPS: list[tuple[str, list[str]]] = [
    ("A host that is not ready says why, with the Linux fix for each reason.", []),
    ("", ["--sim", "no-iommu", "--state-dir", "{tmp}/no-iommu", "host"]),
    ("", ["--sim", "bios-off", "--state-dir", "{tmp}/bios-off", "host"]),
    (
        "The demo host is ready: CPU virtualization, IOMMU with DMA and interrupt remapping, ACS.",
        [],
    ),
    ("", ["host"]),
    ("Its adapters: igb, ice and mlx5 PFs can do SR-IOV, the on-board Realtek cannot.", []),
    ("", ["adapter", "list"]),
    ("Enable SR-IOV on the 82576 with only 3 VFs, so they will run out.", []),
    ("", ["adapter", "enable", "enp1s0", "--num-vfs", "3"]),
    ("An external switch with IOV on it. IOV is fixed at creation.", []),
    ("", ["switch", "create", "external", "--uplink", "enp1s0", "--iov"]),
    (
        "IOV asked on an adapter that cannot do it: created anyway, iov_support false, a warning.",
        [],
    ),
    ("", ["switch", "create", "office", "--uplink", "eno1", "--iov"]),
    ("Four VMs, one NIC each, with IOV weights 50, 50, 10 and 80.", []),
    ("", ["vm", "create", "web1"]),
    ("", ["nic", "add", "web1", "--switch", "external", "--iov-weight", "50", "--vlan", "10"]),
    ("", ["vm", "create", "web2"]),
    ("", ["nic", "add", "web2", "--switch", "external", "--iov-weight", "50", "--vlan", "10"]),
    ("", ["vm", "create", "batch"]),
    (
        "",
        ["nic", "add", "batch", "--switch", "external", "--iov-weight", "10", "--max-rate", "500"],
    ),
    ("", ["vm", "create", "db"]),
    ("", ["nic", "add", "db", "--switch", "external", "--iov-weight", "80", "--trust"]),
    ("VFs are assigned when VMs start: three VMs, three VFs.", []),
    ("", ["vm", "start", "web1"]),
    ("", ["vm", "start", "web2"]),
    ("", ["vm", "start", "batch"]),
    ("db (weight 80) starts with no VF free: it preempts batch (weight 10), which falls back.", []),
    ("", ["vm", "start", "db"]),
    (
        "A fifth VM with weight 50 waits: equal weights never preempt (first come, first served).",
        [],
    ),
    ("", ["vm", "create", "app"]),
    ("", ["nic", "add", "app", "--switch", "external", "--iov-weight", "50"]),
    ("", ["vm", "start", "app"]),
    ("", ["nic", "list"]),
    ("The switch counters show capacity and use.", []),
    ("", ["switch", "list"]),
    ("web1 stops: its VF is scrubbed, then handed to the best waiter (app, weight 50 > 10).", []),
    ("", ["vm", "stop", "web1"]),
    ("", ["nic", "list"]),
    ("The VF web1 had carries nothing of it now; VF settings follow their new tenant.", []),
    ("", ["vf", "list", "enp1s0"]),
    ("Turning IOV off on the switch is refused: delete and recreate instead.", []),
    ("", ["switch", "set", "external", "--no-iov"]),
    ("Changing the VF count under running VMs is refused, naming them...", []),
    ("", ["adapter", "set", "enp1s0", "--num-vfs", "7"]),
    ("...unless forced: NICs fall back, the count changes (0 first), VFs come back.", []),
    ("", ["adapter", "set", "enp1s0", "--num-vfs", "7", "--force"]),
    ("", ["nic", "list"]),
    ("Bad input is a clear error that changes nothing.", []),
    ("", ["nic", "add", "app", "--switch", "external", "--mac", "01:02:03:04:05:06"]),
    ("", ["nic", "set", "app", "nic0", "--vlan", "4095"]),
    ("What happened, and why:", []),
    ("", ["events"]),
]


def run_demo(run: Callable[[Sequence[str]], int], keep: str | None = None) -> int:
    """Run every step through ``run`` (the CLI's in-process entry point)."""
    from rich.console import Console

    if keep is not None:
        from iovctl.adapters.output_file import check_unused_directory

        # The tour's commands assume a fresh host: a used directory makes them fail.
        check_unused_directory(keep, "the demo's state")
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="iovctl-demo-") as scratch:
        tmp = Path(keep) if keep else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        base = ["--sim", "demo", "--state-dir", str(tmp / "demo")]
        for narration, argv in STEPS:
            if narration:
                console.print(f"\n[bold cyan]# {narration}[/]")
                continue
            args = [a.replace("{tmp}", str(tmp)) for a in argv]
            full = args if "--sim" in args else [*base, *args]
            shown = [a for a in args if not a.startswith(str(tmp))]
            shown = [a for a in shown if a not in ("--state-dir",)]
            console.print(f"[bold]$ iovctl {shlex.join(shown)}[/]")
            sys.stdout.flush()
            # Errors are part of the story: show them in order, on stdout.
            with contextlib.redirect_stderr(sys.stdout):
                code = run(full)
            if code:
                console.print(f"[dim](exit code {code})[/]")
    console.print(f"\n[dim]demo finished in {time.perf_counter() - started:.1f} s[/]")
    return 0
