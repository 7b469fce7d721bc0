"""Rendering: rich tables for people, JSON for programs. rich is imported lazily."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def as_json(data: Any) -> None:
    # Indented for a terminal; compact when piped (json's C encoder only runs
    # without indent: 5,000 NICs encode ~10x faster).
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent) + "\n")


def _console() -> Any:
    from rich.console import Console

    # Piped output has no terminal width; 160 columns keeps tables readable in logs.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(highlight=False, soft_wrap=False, width=width)


def _table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    _console().print(table)


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def note(message: str) -> None:
    _console().print(message)


def _reasons(reasons: list[dict[str, str]]) -> None:
    con = _console()
    for r in reasons:
        con.print(f"  [yellow]- {r['code']}[/]: {r['message']}")
        con.print(f"    hint: {r['hint']}", style="dim")


def host(view: dict[str, Any]) -> None:
    con = _console()
    con.print(f"[bold]Host[/] (backend: {view['backend']})")
    con.print(f"iov_support: {_yes(view['iov_support'])}")
    if view["iov_support_reasons"]:
        con.print("iov_support_reasons:")
        _reasons(view["iov_support_reasons"])
    _table(
        "Adapters",
        ["name", "sriov_support", "num_vfs", "total_vfs"],
        [[a["name"], a["sriov_support"], a["num_vfs"], a["total_vfs"]] for a in view["adapters"]],
    )


def adapters(rows: list[dict[str, Any]]) -> None:
    _table(
        "SR-IOV adapters",
        ["name", "pci", "driver", "model", "speed", "sriov_support", "vfs", "in use", "switch"],
        [
            [
                a["name"],
                a["pci_address"],
                a["driver"] or "-",
                a["model"],
                f"{a['link_speed_mbps']} Mb/s",
                a["sriov_support"],
                f"{a['num_vfs']}/{a['total_vfs']}" if a["sriov_capable"] else "-",
                a["num_allocated_vfs"],
                a["switch_name"] or "",
            ]
            for a in rows
        ],
    )


def adapter(a: dict[str, Any]) -> None:
    con = _console()
    con.print(
        f"[bold]{a['name']}[/] {a['pci_address']} {a['model']} (driver {a['driver'] or 'none'})"
    )
    con.print(
        f"sriov_support: {a['sriov_support']}  enabled: {_yes(a['enabled'])}  "
        f"num_vfs: {a['num_vfs']}/{a['total_vfs']}  in use: {a['num_allocated_vfs']}  "
        f"queue pairs: {a['queue_pairs_in_use']}/{a['queue_pairs']}"
    )
    if a["sriov_support_reason"]:
        _reasons([a["sriov_support_reason"]])
    if a["unsupported_vf_settings"]:
        con.print(
            f"VF settings the {a['driver']} driver refuses: {', '.join(a['unsupported_vf_settings'])}"
        )
    if a.get("virtual_functions"):
        vfs(a["virtual_functions"])


def vfs(rows: list[dict[str, Any]]) -> None:
    _table(
        "Virtual functions",
        [
            "adapter",
            "vf",
            "pci",
            "iommu",
            "mac",
            "vlan",
            "spoofchk",
            "trust",
            "max_rate",
            "vm",
            "nic",
        ],
        [
            [
                v["adapter"],
                v["function_id"],
                v["pci_address"],
                v["iommu_group"] if v["iommu_group"] is not None else "-",
                v["mac"],
                v["vlan"] or "",
                "on" if v["spoof_check"] else "off",
                "on" if v["trust"] else "off",
                v["max_rate"] or "",
                v["vm_friendly_name"] or "",
                v["vm_nic"] or "",
            ]
            for v in rows
        ],
    )


def switches(rows: list[dict[str, Any]]) -> None:
    _table(
        "Virtual switches",
        [
            "name",
            "uplink",
            "iov_enabled",
            "iov_support",
            "VFs in use",
            "queue pairs in use",
            "nics",
        ],
        [
            [
                s["name"],
                s["uplink"],
                _yes(s["iov_enabled"]),
                _yes(s["iov_support"]),
                f"{s['iov_virtual_functions_in_use']}/{s['iov_virtual_function_count']}",
                f"{s['iov_queue_pairs_in_use']}/{s['iov_queue_pair_count']}",
                s["nic_count"],
            ]
            for s in rows
        ],
    )


def switch(s: dict[str, Any]) -> None:
    switches([s])
    if s["iov_support_reasons"]:
        _console().print("iov_support_reasons:")
        _reasons(s["iov_support_reasons"])


def vms(rows: list[dict[str, Any]]) -> None:
    _table(
        "Virtual machines",
        ["name", "state", "nics", "VFs in use"],
        [[v["name"], v["state"], v["nic_count"], v["vfs_in_use"]] for v in rows],
    )


def vm(v: dict[str, Any]) -> None:
    _console().print(f"[bold]VM {v['name']}[/]: {v['state']}")
    if v.get("network_adapters"):
        nics(v["network_adapters"])


def _vf_cell(n: dict[str, Any]) -> str:
    vf = n["virtual_function"]
    return f"{vf['adapter']} vf{vf['index']}" if vf else "-"


def nics(rows: list[dict[str, Any]]) -> None:
    status_style = {"ok": "green", "degraded": "yellow", "off": "dim"}
    _table(
        "VM network adapters",
        ["vm", "nic", "switch", "mac", "weight", "vf", "qp", "status", "status_description"],
        [
            [
                n["vm"],
                n["name"],
                n["switch"],
                n["mac"],
                n["iov_weight"],
                _vf_cell(n),
                f"{n['iov_queue_pairs_assigned']}/{n['iov_queue_pairs_requested']}",
                f"[{status_style[n['status']]}]{n['status']}[/]",
                n["status_description"],
            ]
            for n in rows
        ],
    )


def nic(n: dict[str, Any]) -> None:
    nics([n])
    if n.get("pvlan"):
        _console().print(f"private VLAN: {n['pvlan']['description']}")


def apply_report(report: dict[str, Any]) -> None:
    verb = "would change" if report["dry_run"] else "changed"
    if not report["changes"]:
        note("apply: nothing drifted; no changes")
        return
    rows = []
    for c in report["changes"]:
        if c["action"] == "remove-leftover-vm":
            rows.append([c["action"], "", "", f"VM {c['vm']} (stopped)"])
        elif c["action"] == "set-vf-count":
            rows.append([c["action"], c["adapter"], "", f"{c['from']} -> {c['to']} VFs"])
        else:
            rows.append([c["action"], c["adapter"], c["index"], c["tenant"] or "free VF: scrub"])
    _table(f"apply: {verb} {report['changed']}", ["action", "adapter", "vf", "what"], rows)


def events(rows: list[dict[str, Any]]) -> None:
    import time

    style = {"info": "", "warning": "yellow", "error": "red"}
    _table(
        "Events",
        ["#", "time", "level", "code", "object", "message"],
        [
            [
                e["seq"],
                time.strftime("%H:%M:%S", time.localtime(e["time"])),
                f"[{style[e['level']]}]{e['level']}[/]" if style[e["level"]] else e["level"],
                e["code"],
                e["object_name"],
                e["message"],
            ]
            for e in rows
        ],
    )
