"""Rendering: rich tables for people, JSON for programs. rich is imported lazily."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from iovctl.domain.text import shown


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


def _safe(value: Any) -> str:
    """A value as rich markup that shows it literally: brackets escaped (a path like
    ``[/x]`` is not a closing tag), control characters as ``\\x1b``."""
    from rich.markup import escape

    text = "" if value is None else str(value)
    return escape(shown(text, limit=len(text)))


@dataclass(frozen=True)
class Col:
    """A table column and how it gives way at narrow widths.

    ``priority``: higher stays longer when columns must be dropped. ``text``: free
    text that may wrap at spaces; otherwise every cell is one token (a name, a MAC,
    a PCI address) that is never split. ``short``: the header when space is tight.
    """

    header: str
    priority: int = 5
    text: bool = False
    short: str | None = None


#: A cell: plain data (shown literally) or ``Styled`` markup iovctl wrote itself.
Cell = Any


@dataclass(frozen=True)
class Styled:
    markup: str


def _cell_text(cell: Cell) -> Any:
    from rich.text import Text

    if isinstance(cell, Styled):
        return Text.from_markup(cell.markup)
    return Text(shown("" if cell is None else str(cell), limit=10**9))


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def _layout(
    cols: list[Col], rows: list[list[Any]], width: int
) -> tuple[list[int], list[str], list[int]]:
    """Which columns to show (indexes), their headers and widths, to fit ``width``.

    First text columns wrap at spaces (down to their longest word), then headers take
    their short forms, then columns go, lowest priority first. A token column keeps
    the width of its longest token: a MAC, a PCI address or a name is never split
    (one wider than the whole table is cut with an ellipsis: nothing else can hold it).
    """
    data = [max([0] + [r[i].cell_len for r in rows]) for i in range(len(cols))]
    # A word in free text longer than a third of the width (a 64-character VM name
    # in an event message) folds rather than push every other column out.
    cap = max(width // 3, 12)
    longest_word = [
        min(cap, max([0] + [_longest_word(r[i].plain) for r in rows])) for i in range(len(cols))
    ]
    keep = list(range(len(cols)))
    while keep:
        for short in (False, True):
            headers = [(cols[i].short or cols[i].header) if short else cols[i].header for i in keep]
            need = [
                max(longest_word[i], _longest_word(h)) if cols[i].text else max(data[i], len(h))
                for i, h in zip(keep, headers, strict=True)
            ]
            # rich's default box: a rule between columns and at both edges, and one
            # space of padding each side of a cell.
            spare = width - (3 * len(keep) + 1) - sum(need)
            if spare >= 0:
                for k, i in enumerate(keep):  # text columns take back what they can use
                    if cols[i].text:
                        extra = min(spare, max(data[i], len(headers[k])) - need[k])
                        need[k] += max(extra, 0)
                        spare -= max(extra, 0)
                return keep, headers, need
        if len(keep) == 1:  # narrower than one column: show it anyway, cut
            return keep, [cols[keep[0]].short or cols[keep[0]].header], [data[keep[0]]]
        keep.remove(min(keep, key=lambda i: (cols[i].priority, -i)))
    return [], [], []


def _table(title: str | None, columns: list[Col | str], rows: list[list[Cell]]) -> None:
    from rich.table import Table

    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [[_cell_text(v) for v in row] for row in rows]
    con = _console()
    keep, headers, widths = _layout(cols, cells, con.width)
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, header, w in zip(keep, headers, widths, strict=True):
        col = cols[i]
        table.add_column(
            header,
            width=w,
            no_wrap=not col.text,
            overflow="fold" if col.text else "ellipsis",
        )
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    con.print(table)
    dropped = [cols[i].header for i in range(len(cols)) if i not in keep]
    if dropped:
        con.print(
            f"[dim](not shown at {con.width} columns: {_safe(', '.join(dropped))};"
            " -o json has every field)[/]"
        )


def _yes(flag: bool) -> Styled:
    return Styled("[green]yes[/]" if flag else "[red]no[/]")


def note(message: str) -> None:
    _console().print(_safe(message))


def _yes_markup(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def _reasons(reasons: list[dict[str, str]]) -> None:
    con = _console()
    for r in reasons:
        con.print(f"  [yellow]- {_safe(r['code'])}[/]: {_safe(r['message'])}")
        con.print(f"    hint: {_safe(r['hint'])}", style="dim")


def host(view: dict[str, Any]) -> None:
    con = _console()
    con.print(f"[bold]Host[/] (backend: {_safe(view['backend'])})")
    con.print(f"iov_support: {_yes_markup(view['iov_support'])}")
    rt = view.get("runtime_facts")
    if rt:
        said = [rt["kind"] + (f" at {rt['location']}" if rt["location"] else "")]
        for key, label in (("manager_version", "libvirt"), ("hypervisor_version", "QEMU")):
            if rt[key] is not None:
                said.append(f"{label} {'.'.join(str(n) for n in rt[key])}")
        if rt["q35_machine"] is not None:
            said.append("q35" if rt["q35_machine"] else "no q35")
        con.print(f"VM runtime: {_safe(', '.join(said))}")
    if view["iov_support_reasons"]:
        con.print("iov_support_reasons:")
        _reasons(view["iov_support_reasons"])
    if view.get("unverified_facts"):
        con.print("unverified (could not be checked; not counted as missing):")
        _reasons(view["unverified_facts"])
    _table(
        "Adapters",
        [
            Col("name", 10),
            Col("sriov_support", 8, short="support"),
            Col("num_vfs", 6, short="VFs"),
            Col("total_vfs", 6, short="of"),
        ],
        [[a["name"], a["sriov_support"], a["num_vfs"], a["total_vfs"]] for a in view["adapters"]],
    )


def adapters(rows: list[dict[str, Any]]) -> None:
    _table(
        "SR-IOV adapters",
        [
            Col("name", 10),
            Col("pci", 9),
            Col("driver", 6),
            Col("model", 2, text=True),
            Col("speed", 4),
            Col("sriov_support", 8, short="support"),
            Col("vfs", 7),
            Col("in use", 5, short="used"),
            Col("switch", 6),
        ],
        [
            [
                a["name"],
                a["pci_address"],
                a["driver"] or "-",
                a["model"],
                "-" if a["link_speed_mbps"] is None else f"{a['link_speed_mbps']} Mb/s",
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
        f"[bold]{_safe(a['name'])}[/] {_safe(a['pci_address'])} {_safe(a['model'])}"
        f" (driver {_safe(a['driver'] or 'none')})"
    )
    con.print(
        f"sriov_support: {_safe(a['sriov_support'])}  enabled: {_yes_markup(a['enabled'])}  "
        f"num_vfs: {a['num_vfs']}/{a['total_vfs']}  in use: {a['num_allocated_vfs']}  "
        f"queue pairs: {a['queue_pairs_in_use']}/{a['queue_pairs']}"
    )
    if a["sriov_support_reason"]:
        _reasons([a["sriov_support_reason"]])
    if a["unsupported_vf_settings"]:
        con.print(
            f"VF settings the {_safe(a['driver'])} driver refuses: "
            f"{_safe(', '.join(a['unsupported_vf_settings']))}"
        )
    if a.get("virtual_functions"):
        vfs(a["virtual_functions"])


def vfs(rows: list[dict[str, Any]]) -> None:
    _table(
        "Virtual functions",
        [
            Col("adapter", 9),
            Col("vf", 10),
            Col("pci", 8),
            Col("iommu", 3),
            Col("mac", 9),
            Col("vlan", 6),
            Col("spoofchk", 4, short="spoof"),
            Col("trust", 4),
            Col("max_rate", 5, short="rate"),
            Col("vm", 8),
            Col("nic", 7),
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
                v["vm_friendly_name"] or ("held by the hypervisor" if v["held_elsewhere"] else ""),
                v["vm_nic"] or "",
            ]
            for v in rows
        ],
    )


def switches(rows: list[dict[str, Any]]) -> None:
    _table(
        "Virtual switches",
        [
            Col("name", 10),
            Col("uplink", 9),
            Col("iov_enabled", 8, short="iov"),
            Col("iov_support", 8, short="works"),
            Col("VFs in use", 6, text=True, short="VFs"),
            Col("queue pairs in use", 4, text=True, short="QPs"),
            Col("nics", 5),
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
        [Col("name", 10), Col("state", 9), Col("nics", 5), Col("VFs in use", 6, text=True)],
        [[v["name"], v["state"], v["nic_count"], v["vfs_in_use"]] for v in rows],
    )


def _when(stamp: float | None) -> str:
    import time

    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def vm(v: dict[str, Any]) -> None:
    _console().print(f"[bold]VM {_safe(v['name'])}[/]: {_safe(v['state'])}")
    if "created_at" in v:
        _console().print(f"created: {_when(v['created_at'])}  started: {_when(v['started_at'])}")
    if v.get("network_adapters"):
        nics(v["network_adapters"])


def _vf_cell(n: dict[str, Any]) -> str:
    vf = n["virtual_function"]
    return f"{vf['adapter']} vf{vf['index']}" if vf else "-"


_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "off": "dim"}


def nics(rows: list[dict[str, Any]]) -> None:
    _table(
        "VM network adapters",
        [
            Col("vm", 10),
            Col("nic", 10),
            Col("switch", 7),
            Col("mac", 9),
            Col("weight", 5, short="wt"),
            Col("vf", 8),
            Col("qp", 4),
            Col("status", 9),
            Col("status_description", 6, text=True, short="why"),
        ],
        [
            [
                n["vm"],
                n["name"],
                n["switch"],
                n["mac"],
                n["iov_weight"],
                _vf_cell(n),
                f"{n['iov_queue_pairs_assigned']}/{n['iov_queue_pairs_requested']}",
                Styled(f"[{_STATUS_STYLE.get(n['status'], '')}]{_safe(n['status'])}[/]"),
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
        elif c["action"] == "follow-hypervisor":
            how = "started" if c["running"] else "stopped"
            rows.append([c["action"], "", "", f"VM {c['vm']} ({how} outside iovctl)"])
        elif c["action"] == "set-vf-count":
            rows.append([c["action"], c["adapter"], "", f"{c['from']} -> {c['to']} VFs"])
        else:
            rows.append([c["action"], c["adapter"], c["index"], c["tenant"] or "free VF: scrub"])
    _table(
        f"apply: {verb} {report['changed']}",
        [Col("action", 10), Col("adapter", 9), Col("vf", 8), Col("what", 7, text=True)],
        rows,
    )


_LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "red"}


def events(rows: list[dict[str, Any]]) -> None:
    import time

    def level(name: str) -> Any:
        style = _LEVEL_STYLE.get(name, "")
        return Styled(f"[{style}]{_safe(name)}[/]") if style else name

    _table(
        "Events",
        [
            Col("#", 3),
            Col("time", 4),
            Col("level", 7),
            Col("code", 8),
            Col("object", 9),
            Col("message", 10, text=True),
        ],
        [
            [
                e["seq"],
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"])),
                level(e["level"]),
                e["code"],
                e["object_name"],
                e["message"],
            ]
            for e in rows
        ],
    )
