"""The tables of ``iovctl bench datapath``, and the command's glue (run, print, save).

Renders the JSON document of :mod:`iovctl.bench.datapath` with rich; the document is
the contract (``--json FILE`` writes it as is), the tables are for people.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from iovctl.bench.datapath import BenchPlan, DatapathBench, Tool


def run_datapath(
    vms: int,
    quick: bool,
    tool: str,
    save: Callable[[str], None] | None,
    output: str = "table",
    adapter: str | None = None,
) -> int:
    """``iovctl bench datapath``: measure, print, and hand the JSON document to
    ``save`` if given (the front end checked its file before the run: a bad path is
    refused before minutes of measuring, not after). ``adapter``: a real PF to
    measure instead of an emulated one."""
    plan = BenchPlan(vms=vms, quick=quick, tool=Tool(tool))

    def progress(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    doc = DatapathBench(plan, progress, adapter=adapter).run()
    if save is not None:
        save(json.dumps(doc, indent=2) + "\n")
    if output == "json":
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        render(doc)
    return 0


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render(doc: dict[str, Any]) -> None:
    """Print the bench document as tables."""
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    plan, host = doc["plan"], doc["host"]
    con.print(
        f"[bold]iovctl bench datapath[/] on {doc.get('backend', '?')}: {host['cpus']} CPUs, "
        f"kernel {host['kernel']}, throughput by {plan['tool']}"
        f"{' (' + host['iperf3'] + ')' if plan['tool'] == 'iperf3' and host['iperf3'] else ''}"
        f"{', quick' if plan['quick'] else ''}"
    )

    paths, ratios = doc["paths"], doc["ratios"]

    def table_of(title: str) -> Table:
        return Table(
            title=title, title_justify="left", header_style="bold", min_width=len(title) + 2
        )

    table = table_of("VF path vs synthetic path")
    for col in ("", "VF", "synthetic", "VF / synthetic"):
        table.add_column(col, justify="right" if col else "left")
    # On a real PF the "world" is a peer VM on the switch's software path.
    world = "peer" if plan.get("adapter") else "world"
    for direction, label in (("vm_to_world", f"VM → {world}"), ("vm_to_vm", "VM → VM")):
        vf, syn, r = paths["vf"][direction], paths["synthetic"][direction], ratios[direction]
        table.add_row(
            f"{label} TCP Mbit/s",
            _fmt(vf["throughput_mbps"]),
            _fmt(syn["throughput_mbps"]),
            _ratio(r["throughput"]),
        )
        for q in ("p50", "p99"):
            table.add_row(
                f"{label} UDP RR {q} µs",
                _fmt(vf["latency"][f"{q}_us"]),
                _fmt(syn["latency"][f"{q}_us"]),
                _ratio(r[f"latency_{q}"]),
            )
    con.print(table)

    table = table_of(f"Aggregate TCP Mbit/s, N VMs sending to the {world} at once")
    for col in ("VMs", "VF", "synthetic"):
        table.add_column(col, justify="right")
    for vf, syn in zip(doc["scaling"]["vf"], doc["scaling"]["synthetic"], strict=True):
        table.add_row(str(vf["vms"]), _fmt(vf["aggregate_mbps"]), _fmt(syn["aggregate_mbps"]))
    con.print(table)

    f = doc["failover"]
    table = table_of(
        f"Failover gap: UDP every {f['interval_ms']:g} ms, {plan['failover_cycles']} cycles"
    )
    for col in ("switch", "max gap ms", "median gap ms", "lost", "iovctl call ms"):
        table.add_column(col, justify="left" if col == "switch" else "right")
    table.add_row("no switch (baseline)", _fmt(f["baseline_max_gap_ms"], 1), "", "", "")
    for kind, label in (("removal", "VF removed (weight 0)"), ("return", "VF returned")):
        k = f[kind]
        table.add_row(
            label,
            _fmt(k["max_gap_ms"], 1),
            _fmt(k["median_gap_ms"], 1),
            str(k["lost"]),
            _fmt(k["median_call_ms"], 1),
        )
    con.print(table)
    con.print(
        f"TCP connection across all switches: "
        f"{'[green]survived[/]' if f['tcp_survived'] else '[red]broken[/]: ' + str(f['tcp_error'])}"
        f", longest TCP silence {_fmt(f['tcp_max_gap_ms'], 1)} ms"
    )

    table = table_of("Setup: VM create + NIC add + start, one command each (medians per VM)")
    for col in (
        "VMs",
        "setup s",
        "per VM ms",
        "on VF",
        "VM with VF ms",
        "VM without ms",
        "last VM ms",
        "teardown s",
    ):
        table.add_column(col, justify="right")
    for s in doc["setup"]:
        table.add_row(
            str(s["vms"]),
            _fmt(s["setup_s"], 2),
            _fmt(s["per_vm_ms"], 1),
            str(s["on_vf"]),
            _fmt(s["median_vm_ms_with_vf"], 1),
            _fmt(s["median_vm_ms_software"], 1),
            _fmt(s["last_vm_ms"], 1),
            _fmt(s["teardown_s"], 2),
        )
    con.print(table)
    left = doc["cleanup"]["leftovers"]
    con.print(
        f"cleanup: {doc['cleanup']['namespaces_removed']} namespaces, "
        f"{doc['cleanup']['links_removed']} links and "
        f"{doc['cleanup'].get('nft_chains_removed', 0)} nftables chains removed, "
        f"{sum(len(v) for v in left.values())} left behind; "
        f"run took {doc['duration_s']} s"
    )
