"""The simulated machine's own database: state that does not roll back with a command.

A kernel write or a hot-plug is not undone when a command's store transaction
rolls back, and the simulator must fail the way a kernel fails. So the simulated
host (VF counts, VF settings) and runtime (VMs, plugged NICs, attached VFs) keep
their tables in ``sim-machine.db`` beside the state store, on a connection of
their own: each write commits at once, as a sysfs write or a netlink request
does. An in-memory store gets an in-memory machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MACHINE_DB = "sim-machine.db"
BUSY_TIMEOUT_S = 120.0


def open_machine(state_dir: Path | None) -> sqlite3.Connection:
    """The machine's database in ``state_dir`` (None: in memory), autocommit."""
    if state_dir is None:
        return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn = sqlite3.connect(
        str(state_dir / MACHINE_DB), timeout=BUSY_TIMEOUT_S, isolation_level=None
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # As the store does (adapters/sqlite/store.py): no checkpoint inside a write.
    conn.execute("PRAGMA wal_autocheckpoint=16384")
    return conn


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """Several writes that the machine does as one (a VF count change)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def powered_on(conn: sqlite3.Connection) -> bool:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return bool(version)


def mark_powered_on(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA user_version = 1")
