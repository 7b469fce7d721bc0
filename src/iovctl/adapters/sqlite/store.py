"""SqliteStore: desired and runtime state of switches, VMs, NICs, events.

One command = one ``transaction()`` (``BEGIN IMMEDIATE``): concurrent processes
serialize on SQLite's write lock (WAL, generous busy timeout), a killed process
leaves the last committed state, and a failed command changes nothing.
``synchronous=NORMAL`` in WAL mode: a power loss may lose the last commits, never
consistency; a process crash loses nothing committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iovctl.adapters.sqlite.lease import Leases
from iovctl.adapters.sqlite.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, TABLES
from iovctl.domain.model import (
    Event,
    EventLevel,
    NicConfig,
    PrivateVlan,
    PvlanMode,
    VfAssignment,
    VirtualMachine,
    VirtualSwitch,
    VmNetworkAdapter,
    VmState,
)
from iovctl.domain.nic_rules import required_mask
from iovctl.domain.steps import (
    JournalStep,
    OperationRecord,
    Step,
    keys_meet,
    step_from_json,
    step_to_json,
)
from iovctl.domain.text import shown
from iovctl.errors import Conflict, NotFound, StateError

DB_NAME = "iovctl.db"
BUSY_TIMEOUT_S = 120.0
WAL_AUTOCHECKPOINT_PAGES = 16384

_NIC_COLUMNS = (
    "id, vm, name, switch, mac, iov_weight, iov_queue_pairs_requested, vlan, pvlan_mode,"
    " pvlan_primary, pvlan_secondary, max_rate, allow_mac_spoofing, trust, vf_adapter,"
    " vf_index, iov_queue_pairs_assigned, claim_seq, wait_reason, vf_needs, vf_pci_address, grant_error"
)


def _nic_from_row(row: tuple[Any, ...]) -> VmNetworkAdapter:
    (nic_id, vm, name, switch, mac, weight, qpr, vlan, pmode, pprim, psec, rate, spoof,
     trust, vf_adapter, vf_index, qpa, claim_seq, wait_reason, vf_needs, vf_pci,
     grant_error) = row  # fmt: skip
    pvlan = PrivateVlan(PvlanMode(pmode), pprim, psec) if pmode else None
    config = NicConfig(
        switch=switch,
        mac=mac,
        iov_weight=weight,
        iov_queue_pairs_requested=qpr,
        vlan=vlan,
        pvlan=pvlan,
        max_rate=rate,
        allow_mac_spoofing=bool(spoof),
        trust=bool(trust),
    )
    assignment = (
        VfAssignment(vf_adapter, vf_index, qpa, vf_pci or "") if vf_adapter is not None else None
    )
    return VmNetworkAdapter(
        nic_id, vm, name, config, assignment, claim_seq, wait_reason, vf_needs, grant_error
    )


def _config_values(c: NicConfig) -> tuple[Any, ...]:
    p = c.pvlan
    return (
        c.switch,
        c.mac,
        c.iov_weight,
        c.iov_queue_pairs_requested,
        c.vlan,
        p.mode.value if p else None,
        p.primary_vlan if p else None,
        p.secondary_vlan if p else None,
        c.max_rate,
        int(c.allow_mac_spoofing),
        int(c.trust),
        required_mask(c),
    )


def default_state_dir() -> Path:
    """Root: /var/lib/iovctl; others: $XDG_STATE_HOME/iovctl (~/.local/state/iovctl)."""
    if os.geteuid() == 0:
        return Path("/var/lib/iovctl")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "iovctl"


class SqliteStore:
    """The state store. ``conn`` is shared with the simulated host's tables."""

    def __init__(self, conn: sqlite3.Connection, state_dir: Path | None = None) -> None:
        self.conn = conn
        self.state_dir = state_dir
        self._depth = 0
        self._leases = Leases(state_dir)

    # -- lifecycle ----------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path | None) -> SqliteStore:
        """Open (creating and migrating) the store in ``state_dir``; None = in memory."""
        if state_dir is None:
            conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            if not str(state_dir).strip() or "\0" in str(state_dir):
                raise StateError(
                    "state-unusable",
                    f"the state directory {shown(repr(str(state_dir)))} is no path",
                    "pass a directory path as --state-dir or IOVCTL_STATE_DIR",
                )
            try:
                state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StateError(
                    "state-dir-unusable",
                    f"cannot create state directory {shown(str(state_dir))}: {exc.strerror}",
                    "pass a writable --state-dir or set IOVCTL_STATE_DIR",
                ) from exc
            db = state_dir / DB_NAME
            try:
                exists = db.is_file()
            except OSError as exc:  # a directory we may not search (EACCES)
                raise StateError(
                    "state-unusable",
                    f"cannot look into state directory {shown(str(state_dir))}: {exc.strerror}",
                    "check its permissions, or pass another --state-dir",
                ) from exc
            if exists:
                _refuse_foreign(_peek(db), state_dir)
            try:
                conn = sqlite3.connect(str(db), timeout=BUSY_TIMEOUT_S, isolation_level=None)
                try:
                    _refuse_foreign(_identity(conn), state_dir)
                    _enable_wal(conn)
                except BaseException:
                    conn.close()
                    raise
            except sqlite3.Error as exc:
                raise _state_error(exc, state_dir) from exc
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # A checkpoint inside COMMIT made every ~100th command 5x slower (p99 6.7 ms
        # vs 1.6 ms for the work itself). Checkpoint when a command is done instead
        # (close), keeping the automatic one only as a bound on the WAL (64 MiB).
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        store = cls(conn, state_dir)
        store._migrate()
        return store

    def close(self) -> None:
        """Checkpoint the WAL (off the command's critical path) and close."""
        # Busy readers or an in-memory store: the next close does it.
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.conn.close()
        self._leases.close()

    # -- leases: who runs an operation (adapters/sqlite/lease.py) ------------

    def lease(self) -> str:
        return self._leases.own()

    def lease_alive(self, token: str) -> bool:
        return self._leases.alive(token)

    def wait_lease(self, token: str, timeout: float) -> bool:
        return self._leases.wait(token, timeout)

    def forget_lease(self, token: str) -> None:
        self._leases.forget(token)

    def _migrate(self) -> None:
        (version,) = self.conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            (version,) = self.conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise StateError(
                    "state-too-new",
                    f"the state store has schema {version}; this iovctl knows up to {SCHEMA_VERSION}",
                    "upgrade iovctl, or use another --state-dir",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target].split(";\n"):
                    if statement.strip():
                        self.conn.execute(statement)
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _state_error(exc, None) from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.conn.execute("ROLLBACK")
            raise _state_error(exc, None) from exc

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: changes an exception undoes alone, the rest kept."""
        assert self._depth, "a savepoint needs a transaction"
        self.conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO part")
            self.conn.execute("RELEASE part")
            raise
        self.conn.execute("RELEASE part")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read (deferred transaction): never blocks writers in WAL mode."""
        if self._depth:
            yield
            return
        self.conn.execute("BEGIN")
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self.conn.execute("COMMIT")

    # -- meta and counters ------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def next_seq(self, counter: str) -> int:
        """A monotonic counter (claim order, MAC addresses): 1, 2, 3..."""
        row = self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1')"
            " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            " RETURNING value",
            (f"seq:{counter}",),
        ).fetchone()
        return int(row[0])

    # -- switches -----------------------------------------------------------

    def add_switch(self, switch: VirtualSwitch) -> None:
        self.conn.execute(
            "INSERT INTO switch (name, uplink, iov_enabled, created_at) VALUES (?, ?, ?, ?)",
            (switch.name, switch.uplink, int(switch.iov_enabled), time.time()),
        )

    def find_switch(self, name: str) -> VirtualSwitch | None:
        row = self.conn.execute(
            "SELECT name, uplink, iov_enabled FROM switch WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else VirtualSwitch(row[0], row[1], bool(row[2]))

    def get_switch(self, name: str) -> VirtualSwitch:
        switch = self.find_switch(name)
        if switch is None:
            names = [s.name for s in self.list_switches()]
            raise NotFound(
                "unknown-switch",
                f"virtual switch {name!r} does not exist",
                f"switches: {', '.join(names)}"
                if names
                else "create one: iovctl switch create NAME --uplink ADAPTER --iov",
            )
        return switch

    def find_switch_by_uplink(self, adapter: str) -> VirtualSwitch | None:
        row = self.conn.execute(
            "SELECT name, uplink, iov_enabled FROM switch WHERE uplink = ?", (adapter,)
        ).fetchone()
        return None if row is None else VirtualSwitch(row[0], row[1], bool(row[2]))

    def list_switches(self) -> list[VirtualSwitch]:
        rows = self.conn.execute("SELECT name, uplink, iov_enabled FROM switch ORDER BY name")
        return [VirtualSwitch(r[0], r[1], bool(r[2])) for r in rows]

    def delete_switch(self, name: str) -> None:
        self.conn.execute("DELETE FROM switch WHERE name = ?", (name,))

    # -- VMs ------------------------------------------------------------------

    def add_vm(self, vm: VirtualMachine) -> None:
        self.conn.execute(
            "INSERT INTO vm (name, state, created_at) VALUES (?, ?, ?)",
            (vm.name, vm.state.value, time.time()),
        )

    def find_vm(self, name: str) -> VirtualMachine | None:
        row = self.conn.execute("SELECT name, state FROM vm WHERE name = ?", (name,)).fetchone()
        return None if row is None else VirtualMachine(row[0], VmState(row[1]))

    def get_vm(self, name: str) -> VirtualMachine:
        vm = self.find_vm(name)
        if vm is None:
            raise NotFound(
                "unknown-vm", f"VM {name!r} does not exist", "list VMs with: iovctl vm list"
            )
        return vm

    def list_vms(self) -> list[VirtualMachine]:
        rows = self.conn.execute("SELECT name, state FROM vm ORDER BY name")
        return [VirtualMachine(r[0], VmState(r[1])) for r in rows]

    def vm_times(self, name: str) -> tuple[float, float | None]:
        # The start time is the VM's newest "vm-started" event since its creation (a
        # deleted VM's namesake does not count): the event is written in the start's
        # own transaction, so it is as exact as a column, without a schema change.
        self.get_vm(name)  # unknown-vm
        row = self.conn.execute(
            "SELECT created_at, (SELECT max(e.time) FROM event e WHERE e.object_kind = 'vm'"
            " AND e.object_name = vm.name AND e.code = 'vm-started'"
            " AND e.time >= vm.created_at) FROM vm WHERE name = ?",
            (name,),
        ).fetchone()
        return float(row[0]), None if row[1] is None else float(row[1])

    def set_vm_state(self, name: str, state: VmState) -> None:
        self.conn.execute("UPDATE vm SET state = ? WHERE name = ?", (state.value, name))

    def delete_vm(self, name: str) -> None:
        self.conn.execute("DELETE FROM vm WHERE name = ?", (name,))

    # -- NICs -----------------------------------------------------------------

    def add_nic(self, vm: str, name: str, config: NicConfig) -> int:
        try:
            cur = self.conn.execute(
                "INSERT INTO nic (vm, name, switch, mac, iov_weight, iov_queue_pairs_requested,"
                " vlan, pvlan_mode, pvlan_primary, pvlan_secondary, max_rate,"
                " allow_mac_spoofing, trust, vf_needs) VALUES (?, ?, ?,?,?,?,?,?,?,?,?,?,?,?)",
                (vm, name, *_config_values(config)),
            )
        except sqlite3.IntegrityError as exc:
            raise _nic_conflict(exc, vm, name, config) from exc
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_nic_config(self, nic: VmNetworkAdapter, config: NicConfig) -> None:
        try:
            self.conn.execute(
                "UPDATE nic SET switch = ?, mac = ?, iov_weight = ?, iov_queue_pairs_requested = ?,"
                " vlan = ?, pvlan_mode = ?, pvlan_primary = ?, pvlan_secondary = ?, max_rate = ?,"
                " allow_mac_spoofing = ?, trust = ?, vf_needs = ? WHERE id = ?",
                (*_config_values(config), nic.id),
            )
        except sqlite3.IntegrityError as exc:
            raise _nic_conflict(exc, nic.vm, nic.name, config) from exc

    def find_nic(self, vm: str, name: str) -> VmNetworkAdapter | None:
        row = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE vm = ? AND name = ?", (vm, name)
        ).fetchone()
        return None if row is None else _nic_from_row(row)

    def get_nic(self, vm: str, name: str) -> VmNetworkAdapter:
        nic = self.find_nic(vm, name)
        if nic is None:
            self.get_vm(vm)
            raise NotFound(
                "unknown-nic",
                f"VM {vm} has no network adapter {name!r}",
                f"list its adapters with: iovctl nic list {vm}",
            )
        return nic

    def nic_by_id(self, nic_id: int) -> VmNetworkAdapter:
        row = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE id = ?", (nic_id,)
        ).fetchone()
        return _nic_from_row(row)

    def list_nics(self, vm: str | None = None) -> list[VmNetworkAdapter]:
        if vm is None:
            rows = self.conn.execute(f"SELECT {_NIC_COLUMNS} FROM nic ORDER BY vm, name")
        else:
            rows = self.conn.execute(
                f"SELECT {_NIC_COLUMNS} FROM nic WHERE vm = ? ORDER BY name", (vm,)
            )
        return [_nic_from_row(r) for r in rows]

    def nics_on_switch(self, switch: str) -> list[VmNetworkAdapter]:
        rows = self.conn.execute(f"SELECT {_NIC_COLUMNS} FROM nic WHERE switch = ?", (switch,))
        return [_nic_from_row(r) for r in rows]

    def unclaimed_nics(self, switch: str) -> list[VmNetworkAdapter]:
        """NICs of running VMs on the switch with weight > 0 but no claim yet."""
        rows = self.conn.execute(
            f"SELECT {', '.join('nic.' + c.strip() for c in _NIC_COLUMNS.split(','))}"
            " FROM nic JOIN vm ON vm.name = nic.vm"
            " WHERE nic.switch = ? AND nic.claim_seq IS NULL AND vm.state = 'running'"
            " AND nic.iov_weight > 0 ORDER BY nic.id",
            (switch,),
        )
        return [_nic_from_row(r) for r in rows]

    def waiting_claims(
        self, switch: str, unsupported_mask: int, limit: int
    ) -> list[VmNetworkAdapter]:
        """Best waiting claimants first (weight desc, then first come) that a VF can serve."""
        rows = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE switch = ? AND claim_seq IS NOT NULL"
            " AND vf_adapter IS NULL AND grant_error IS NULL AND (vf_needs & ?) = 0"
            " ORDER BY iov_weight DESC, claim_seq ASC LIMIT ?",
            (switch, unsupported_mask, limit),
        )
        return [_nic_from_row(r) for r in rows]

    def weakest_holders(self, adapter: str, limit: int) -> list[VmNetworkAdapter]:
        """Holders in preemption order: lowest weight, then the latest comer."""
        rows = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE vf_adapter = ?"
            " ORDER BY iov_weight ASC, claim_seq DESC LIMIT ?",
            (adapter, limit),
        )
        return [_nic_from_row(r) for r in rows]

    def free_vf_indexes(self, adapter: str, num_vfs: int) -> list[int]:
        """In SQL, from the holders' index: a pool of 256 VFs is not loaded to find
        the few that are free."""
        rows = self.conn.execute(
            "WITH RECURSIVE vf(i) AS (SELECT 0 WHERE ? > 0"
            " UNION ALL SELECT i + 1 FROM vf WHERE i + 1 < ?)"
            " SELECT i FROM vf EXCEPT SELECT vf_index FROM nic WHERE vf_adapter = ?"
            " EXCEPT SELECT idx FROM vf_release WHERE adapter = ? ORDER BY 1",
            (num_vfs, num_vfs, adapter, adapter),
        ).fetchall()
        return [r[0] for r in rows]

    def vf_holder_exists(self, adapter: str, index: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM nic WHERE vf_adapter = ? AND vf_index = ?", (adapter, index)
        ).fetchone()
        return row is not None

    def holders_needing(self, adapter: str, mask: int) -> list[VmNetworkAdapter]:
        """From the holders' index: a full pool of 256 is not loaded to find none."""
        rows = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE vf_adapter = ? AND (vf_needs & ?) != 0"
            " ORDER BY vf_index",
            (adapter, mask),
        )
        return [_nic_from_row(r) for r in rows]

    def nics_holding_vfs(self, adapter: str) -> list[VmNetworkAdapter]:
        rows = self.conn.execute(
            f"SELECT {_NIC_COLUMNS} FROM nic WHERE vf_adapter = ? ORDER BY vf_index", (adapter,)
        )
        return [_nic_from_row(r) for r in rows]

    def count_nics_on_switch(self, switch: str) -> int:
        (n,) = self.conn.execute("SELECT COUNT(*) FROM nic WHERE switch = ?", (switch,)).fetchone()
        return int(n)

    def usage_on_adapter(self, adapter: str) -> tuple[int, int]:
        """(VFs in use, queue pairs in use) on an uplink."""
        row = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(iov_queue_pairs_assigned), 0) FROM nic"
            " WHERE vf_adapter = ?",
            (adapter,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def set_assignment(self, nic_id: int, assignment: VfAssignment | None) -> None:
        a = assignment
        self.conn.execute(
            "UPDATE nic SET vf_adapter = ?, vf_index = ?, iov_queue_pairs_assigned = ?,"
            " vf_pci_address = ?, wait_reason = NULL WHERE id = ?",
            (
                a.adapter if a else None,
                a.index if a else None,
                a.queue_pairs if a else 0,
                a.pci_address if a else None,
                nic_id,
            ),
        )

    def set_claim(self, nic_id: int, claim_seq: int | None, wait_reason: str | None) -> None:
        self.conn.execute(
            "UPDATE nic SET claim_seq = ?, wait_reason = ? WHERE id = ?",
            (claim_seq, wait_reason, nic_id),
        )

    def set_wait_reason(self, nic_id: int, wait_reason: str | None) -> None:
        self.conn.execute("UPDATE nic SET wait_reason = ? WHERE id = ?", (wait_reason, nic_id))

    def set_grant_error(self, nic_id: int, error: str | None) -> None:
        self.conn.execute("UPDATE nic SET grant_error = ? WHERE id = ?", (error, nic_id))

    def clear_grant_errors(self) -> int:
        return self.conn.execute(
            "UPDATE nic SET grant_error = NULL WHERE grant_error IS NOT NULL"
        ).rowcount

    # -- VFs on their way back ----------------------------------------------------

    def hold_released_vf(self, adapter: str, index: int, reason: str | None = None) -> None:
        self.conn.execute(
            "INSERT INTO vf_release (adapter, idx, reason) VALUES (?, ?, ?)"
            " ON CONFLICT (adapter, idx) DO UPDATE SET reason = excluded.reason",
            (adapter, index, reason),
        )

    def free_released_vf(self, adapter: str, index: int) -> None:
        self.conn.execute("DELETE FROM vf_release WHERE adapter = ? AND idx = ?", (adapter, index))

    def released_vfs(self, adapter: str | None = None) -> list[tuple[str, int, str | None]]:
        sql = "SELECT adapter, idx, reason FROM vf_release"
        rows = (
            self.conn.execute(sql + " WHERE adapter = ? ORDER BY idx", (adapter,))
            if adapter is not None
            else self.conn.execute(sql + " ORDER BY adapter, idx")
        )
        return [(str(r[0]), int(r[1]), r[2]) for r in rows]

    def mark_rebalance_due(self, switch: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO rebalance_due (switch) VALUES (?)", (switch,))

    def rebalances_due(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT switch FROM rebalance_due ORDER BY 1")]

    def clear_rebalance_due(self, switch: str) -> None:
        self.conn.execute("DELETE FROM rebalance_due WHERE switch = ?", (switch,))

    # -- the operation journal ---------------------------------------------------

    def begin_operation(
        self, command: str, owner: str, steps: list[Step]
    ) -> tuple[int, list[JournalStep]]:
        keys = sorted({k for step in steps for k in step.touches()})
        cur = self.conn.execute(
            "INSERT INTO operation (command, owner, created_at, keys) VALUES (?, ?, ?, ?)",
            (command, owner, time.time(), json.dumps(keys)),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid, self._insert_steps(cur.lastrowid, 0, steps)

    def append_steps(self, op: int, steps: list[Step]) -> list[JournalStep]:
        keys, last = self.conn.execute(
            "SELECT keys, (SELECT COALESCE(MAX(seq), 0) FROM op_step WHERE op = ?)"
            " FROM operation WHERE id = ?",
            (op, op),
        ).fetchone()
        known = set(json.loads(keys))
        wanted = known | {k for step in steps for k in step.touches()}
        if wanted != known:
            self.conn.execute(
                "UPDATE operation SET keys = ? WHERE id = ?", (json.dumps(sorted(wanted)), op)
            )
        return self._insert_steps(op, last, steps)

    def _insert_steps(self, op: int, last: int, steps: list[Step]) -> list[JournalStep]:
        recorded = [JournalStep(op, last + i, step) for i, step in enumerate(steps, 1)]
        self.conn.executemany(
            "INSERT INTO op_step (op, seq, body) VALUES (?, ?, ?)",
            [(op, js.seq, step_to_json(js.step)) for js in recorded],
        )
        return recorded

    def operation_steps(self, op: int, state: str | None = "pending") -> list[JournalStep]:
        sql = "SELECT seq, body, state, error FROM op_step WHERE op = ?"
        params: tuple[Any, ...] = (op,)
        if state is not None:
            sql += " AND state = ?"
            params = (op, state)
        rows = self.conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [JournalStep(op, r[0], step_from_json(r[1]), r[2], r[3]) for r in rows]

    def set_step_state(self, op: int, seq: int, state: str, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE op_step SET state = ?, error = ? WHERE op = ? AND seq = ?",
            (state, error, op, seq),
        )

    def set_steps_done(self, op: int, seqs: list[int]) -> None:
        if seqs:
            self.conn.execute(
                "UPDATE op_step SET state = 'done', error = NULL WHERE op = ?"
                f" AND seq IN ({','.join('?' * len(seqs))})",
                (op, *seqs),
            )

    def set_operation_state(
        self, op: int, state: str, error: str | None = None, owner: str | None = None
    ) -> None:
        self.conn.execute(
            "UPDATE operation SET state = ?, error = ?, owner = COALESCE(?, owner) WHERE id = ?",
            (state, error, owner, op),
        )

    def finish_operation(self, op: int) -> None:
        self.conn.execute("DELETE FROM operation WHERE id = ?", (op,))

    def operations(self, keys: Iterable[str] | None = None) -> list[OperationRecord]:
        """Unfinished operations; with ``keys``, those touching any of them."""
        rows = self.conn.execute(
            "SELECT id, command, owner, state, error, keys FROM operation ORDER BY id"
        ).fetchall()
        if keys is not None and rows:
            wanted = set(keys)
            rows = [r for r in rows if any(keys_meet(a, b) for a in wanted for b in json.loads(r[5]))]
        return [OperationRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def delete_nic(self, nic_id: int) -> None:
        self.conn.execute("DELETE FROM nic WHERE id = ?", (nic_id,))

    def mac_in_use(self, mac: str) -> bool:
        return self.conn.execute("SELECT 1 FROM nic WHERE mac = ?", (mac,)).fetchone() is not None

    # -- adapters (desired state) --------------------------------------------------

    def set_desired_num_vfs(self, adapter: str, count: int) -> None:
        self.conn.execute(
            "INSERT INTO adapter_config (name, num_vfs) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET num_vfs = excluded.num_vfs",
            (adapter, count),
        )

    def desired_num_vfs(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, num_vfs FROM adapter_config").fetchall())

    # -- events -------------------------------------------------------------

    def add_event(
        self, level: EventLevel, code: str, object_kind: str, object_name: str, message: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO event (time, level, code, object_kind, object_name, message)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), level.value, code, object_kind, object_name, message),
        )

    def event_counts(self) -> dict[tuple[str, str], int]:
        rows = self.conn.execute("SELECT code, level, count(*) FROM event GROUP BY code, level")
        return {(str(code), str(level)): int(n) for code, level, n in rows}

    def list_events(self, limit: int | None = None, since: int = 0) -> list[Event]:
        sql = (
            "SELECT seq, time, level, code, object_kind, object_name, message FROM event"
            " WHERE seq > ? ORDER BY seq"
        )
        params: tuple[Any, ...] = (since,)
        if limit is not None:
            sql = f"SELECT * FROM ({sql[: -len(' ORDER BY seq')]} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params = (since, limit)
        return [
            Event(r[0], r[1], EventLevel(r[2]), r[3], r[4], r[5], r[6])
            for r in self.conn.execute(sql, params)
        ]


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for other openers.

    SQLite does not apply the busy timeout to this pragma: on a fresh file that
    another process is initialising it fails at once with "database is locked".
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _nic_conflict(exc: sqlite3.IntegrityError, vm: str, name: str, config: NicConfig) -> Conflict:
    text = str(exc)
    if "nic.mac" in text:
        return Conflict(
            "duplicate-mac",
            f"MAC address {config.mac} is already used by another network adapter",
            "omit --mac to get a generated one, or pick another",
        )
    if "nic.vm, nic.name" in text:
        return Conflict(
            "duplicate-name",
            f"VM {vm} already has a network adapter named {name!r}",
            "pick another --name, or change it with: iovctl nic set",
        )
    return Conflict("state-conflict", f"network adapter {vm}/{name}: {text}", "")


#: (application_id, user_version, table names) of a database file.
_Identity = tuple[int, int, frozenset[str]]


def _identity(conn: sqlite3.Connection) -> _Identity:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return int(app_id), int(version), frozenset(str(r[0]) for r in rows)


def _peek(db: Path) -> _Identity | None:
    """The identity of ``db`` read without writing anything (``immutable``: no lock,
    no -wal/-shm files, which a foreign WAL database would otherwise get); None when
    it cannot be read that way (the normal open then says why)."""
    uri = f"file:{urllib.parse.quote(str(db))}?immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return None
    try:
        return _identity(conn)
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _refuse_foreign(identity: _Identity | None, state_dir: Path) -> None:
    """StateError(``state-unusable``) when the database is not iovctl's.

    iovctl's: empty (fresh), stamped with :data:`APPLICATION_ID`, or, written before
    the stamp, unstamped with every table of schema 1.
    """
    if identity is None:
        return
    app_id, _, tables = identity
    if app_id == APPLICATION_ID or (app_id == 0 and (not tables or tables >= TABLES)):
        return
    raise StateError(
        "state-unusable",
        f"{shown(str(state_dir / DB_NAME))} is an SQLite database iovctl did not create"
        f" (tables: {shown(', '.join(sorted(tables)) or 'none')})",
        "iovctl leaves it untouched: pass another --state-dir (or IOVCTL_STATE_DIR)",
    )


def _state_error(exc: sqlite3.Error, state_dir: Path | None) -> StateError:
    text = str(exc)
    where = f" in {state_dir}" if state_dir else ""
    if "locked" in text or "busy" in text:
        return StateError(
            "state-busy",
            f"the state store{where} stayed locked by another iovctl for {BUSY_TIMEOUT_S:.0f} s",
            "wait for the other iovctl command to finish, then retry",
        )
    return StateError(
        "state-unusable",
        f"the state store{where} cannot be used: {text}",
        "check the permissions and free space of the state directory",
    )
