"""Helpers shared by tests/cli and tests/concurrency: run iovctl, read its state, check it.

Everything here drives the real CLI (in-process through ``iovctl.cli.main.main`` or
as a ``python -m iovctl`` subprocess) against a real state directory; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iovctl.cli.main import main

#: What a VF looks like after a scrub: nothing of any tenant left on it.
SCRUBBED_VF = {
    "mac": "00:00:00:00:00:00",
    "vlan": 0,
    "qos": 0,
    "vlan_protocol": "802.1Q",
    "spoof_check": True,
    "trust": False,
    "max_rate": 0,
    "min_rate": 0,
    "link_state": "auto",
}

#: Locale and terminal size pinned for every iovctl run in the tests.
QUICK_ENV = {"LANGUAGE": "C", "COLUMNS": "200", "LINES": "50"}

#: The read commands whose ``-o json`` output together are "the state" a user sees.
STATE_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("nic", "list"),
    ("switch", "list"),
    ("vm", "list"),
    ("vf", "list"),
    ("events",),
)


@dataclass(frozen=True)
class Result:
    """One iovctl run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_in_process(argv: list[str]) -> Result:
    """``main(argv)`` with stdout/stderr captured (usable outside pytest's capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an iovctl subprocess: no inherited IOVCTL_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOVCTL_")}
    env.update(QUICK_ENV)
    env.update(extra)
    return env


def run_subprocess(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """``python -m iovctl ARGS`` as a real OS process."""
    proc = subprocess.run(
        [sys.executable, "-m", "iovctl", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def fresh_python(script: str, *args: str) -> Any:
    """Run ``script`` in a fresh interpreter (for what this one imported already);
    returns the JSON of its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def assert_clean_error(result: Result, code: str, exit_code: int) -> None:
    """The error contract: ``error[code]: msg`` + ``hint:`` on stderr, family exit code,
    nothing on stdout, never a traceback."""
    assert "Traceback" not in result.err + result.out, result.err
    assert result.code == exit_code, (result.code, result.err)
    assert result.err.startswith(f"error[{code}]: "), result.err
    first = result.err.splitlines()[0]
    assert len(first) > len(f"error[{code}]: "), "the message is empty"
    hints = [line for line in result.err.splitlines() if line.startswith("hint: ")]
    assert hints and all(len(h) > len("hint: ") for h in hints), result.err
    assert result.out == "", result.out


def state_dump(state_dir: Path, sim: str | None = None) -> dict[str, str]:
    """The state as the user sees it (JSON of the list commands) plus the raw database.

    Two dumps are equal only if nothing at all changed: the SQL dump covers counters
    and rows no command shows.
    """
    base = ["--state-dir", str(state_dir)] + (["--sim", sim] if sim else [])
    dump: dict[str, str] = {}
    for command in STATE_COMMANDS:
        result = run_in_process([*base, *command, "-o", "json"])
        assert result.code == 0, result.err
        dump[" ".join(command)] = result.out
    dump["sql"] = sql_dump(state_dir)
    return dump


def sql_dump(state_dir: Path) -> str:
    conn = sqlite3.connect(state_dir / "iovctl.db")
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def allocation_problems(vfs: list[dict[str, Any]], nics: list[dict[str, Any]]) -> list[str]:
    """Every way ``vf list`` and ``nic list`` (JSON) disagree with the VF invariants.

    No VF held twice (by either view), both views agree on who holds what, a held VF
    carries its holder's MAC, a free VF is scrubbed.
    """
    problems: list[str] = []
    holders = Counter(
        (n["virtual_function"]["adapter"], n["virtual_function"]["index"])
        for n in nics
        if n["virtual_function"] is not None
    )
    problems += [f"VF {vf} held by {count} NICs" for vf, count in holders.items() if count > 1]
    by_vf = {
        (n["virtual_function"]["adapter"], n["virtual_function"]["index"]): n
        for n in nics
        if n["virtual_function"] is not None
    }
    owners = Counter((v["vm_friendly_name"], v["vm_nic"]) for v in vfs if v["in_use"])
    problems += [f"NIC {o} holds {c} VFs" for o, c in owners.items() if c > 1]
    for vf in vfs:
        key = (vf["adapter"], vf["function_id"])
        nic = by_vf.get(key)
        if vf["in_use"]:
            if nic is None or (nic["vm"], nic["name"]) != (vf["vm_friendly_name"], vf["vm_nic"]):
                problems.append(f"VF {key}: vf list says {vf['vm_friendly_name']}, nic list not")
            elif vf["mac"] != nic["mac"]:
                problems.append(f"VF {key} carries {vf['mac']}, its NIC has {nic['mac']}")
        else:
            if nic is not None:
                problems.append(f"VF {key}: free in vf list, held by {nic['vm']}/{nic['name']}")
            dirty = {k: vf[k] for k, v in SCRUBBED_VF.items() if vf[k] != v}
            if dirty:
                problems.append(f"free VF {key} is not scrubbed: {dirty}")
    addresses = {(v["adapter"], v["function_id"]): v["pci_address"] for v in vfs}
    for nic in nics:
        label = f"{nic['vm']}/{nic['name']}"
        vf = nic["virtual_function"]
        if vf is not None:
            address = addresses.get((vf["adapter"], vf["index"]))
            if address is None:
                problems.append(f"{label} holds VF {vf}, which does not exist")
            elif vf["pci_address"] != address:
                problems.append(f"{label} shows VF {vf}, vf list says {address}")
            if nic["iov_queue_pairs_assigned"] < 1:
                problems.append(f"{label} holds a VF without a queue pair")
        elif nic["iov_queue_pairs_assigned"] != 0:
            problems.append(f"{label} has queue pairs but no VF")
        if (vf is not None) != nic["iov_usage"]:
            problems.append(f"{label}: iov_usage disagrees with its VF")
        # Simulated guests always carry the VF driver: the data path follows the VF.
        if nic["vf_data_path_active"] != (vf is not None):
            problems.append(f"{label}: vf_data_path_active is {nic['vf_data_path_active']}")
    return problems


def back_to_schema_3(conn: sqlite3.Connection) -> None:
    """Undo schema 4 on a state store (operation keys in a table of their own, no
    index of needs), so a
    test can make it look like one an older iovctl wrote."""
    keys = conn.execute("SELECT id, keys FROM operation").fetchall()
    conn.execute("DROP INDEX nic_needs")
    conn.execute("ALTER TABLE operation DROP COLUMN keys")
    conn.execute(
        "CREATE TABLE op_key (key TEXT NOT NULL, op INTEGER NOT NULL"
        " REFERENCES operation(id) ON DELETE CASCADE, PRIMARY KEY (key, op)) WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO op_key (key, op) VALUES (?, ?)",
        [(k, op) for op, ks in keys for k in json.loads(ks)],
    )
