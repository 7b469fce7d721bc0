"""Schema of the state store, versioned with ``PRAGMA user_version``.

A migration is a list of statements run inside the opening transaction; a database
written by a newer iovctl (higher version) is refused instead of guessed at.
"""

from __future__ import annotations

from iovctl.domain.model import VfSetting
from iovctl.domain.nic_rules import settings_mask

SCHEMA_VERSION = 4

#: ``PRAGMA application_id`` of a state store ("iovc"): a database without it (and
#: without schema 1's tables, which stores written before the stamp have) is not
#: iovctl's and is left alone.
APPLICATION_ID = 0x696F7663

#: The tables schema 1 creates.
TABLES = frozenset({"meta", "switch", "vm", "nic", "event", "adapter_config"})

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE switch (
    name TEXT PRIMARY KEY,
    uplink TEXT NOT NULL UNIQUE,
    iov_enabled INTEGER NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE vm (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'off',
    created_at REAL NOT NULL
);

CREATE TABLE nic (
    id INTEGER PRIMARY KEY,
    vm TEXT NOT NULL REFERENCES vm(name),
    name TEXT NOT NULL,
    switch TEXT NOT NULL REFERENCES switch(name),
    mac TEXT NOT NULL UNIQUE,
    iov_weight INTEGER NOT NULL CHECK (iov_weight BETWEEN 0 AND 100),
    iov_queue_pairs_requested INTEGER NOT NULL CHECK (iov_queue_pairs_requested >= 1),
    vlan INTEGER CHECK (vlan BETWEEN 1 AND 4094),
    pvlan_mode TEXT,
    pvlan_primary INTEGER,
    pvlan_secondary INTEGER,
    max_rate INTEGER,
    allow_mac_spoofing INTEGER NOT NULL DEFAULT 0,
    trust INTEGER NOT NULL DEFAULT 0,
    -- runtime: the VF held (a VF is never held twice: UNIQUE), queue pairs granted,
    -- when the NIC became eligible (FCFS) and why it waits.
    -- VF settings this NIC needs (domain.nic_rules.required_mask), matched in SQL
    -- against the uplink driver's unsupported mask.
    vf_needs INTEGER NOT NULL DEFAULT 0,
    vf_adapter TEXT,
    vf_index INTEGER,
    vf_pci_address TEXT,
    iov_queue_pairs_assigned INTEGER NOT NULL DEFAULT 0,
    claim_seq INTEGER,
    wait_reason TEXT,
    UNIQUE (vm, name),
    UNIQUE (vf_adapter, vf_index),
    CHECK ((vf_adapter IS NULL) = (vf_index IS NULL))
);
CREATE INDEX nic_switch ON nic (switch, claim_seq);
-- The allocator's three questions, each answered from one index:
-- who waits best first, who holds weakest first, which VFs and queue pairs are used.
CREATE INDEX nic_waiting ON nic (switch, iov_weight DESC, claim_seq ASC)
    WHERE vf_adapter IS NULL AND claim_seq IS NOT NULL;
CREATE INDEX nic_holders ON nic (vf_adapter, iov_weight ASC, claim_seq DESC)
    WHERE vf_adapter IS NOT NULL;
CREATE INDEX nic_usage ON nic (vf_adapter, vf_index, iov_queue_pairs_assigned)
    WHERE vf_adapter IS NOT NULL;

CREATE TABLE event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_name TEXT NOT NULL,
    message TEXT NOT NULL
);

-- Desired VF count per adapter: what `iovctl apply` restores after a reboot.
CREATE TABLE adapter_config (
    name TEXT PRIMARY KEY,
    num_vfs INTEGER NOT NULL
);
""",
    2: """
-- The operation journal (services.journal): a command's side effects, recorded
-- before the first one runs; a row goes when all its steps are done.
CREATE TABLE operation (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    -- The lease of the process running it; a free lease = the process died.
    owner TEXT NOT NULL,
    -- running | stalled (a release step was refused: retried later)
    state TEXT NOT NULL DEFAULT 'running',
    error TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE op_step (
    op INTEGER NOT NULL REFERENCES operation(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    -- pending | done | failed (a refused grant, compensated) | cancelled
    state TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    PRIMARY KEY (op, seq)
) WITHOUT ROWID;
-- Objects an operation touches (domain.steps keys): operations that meet wait.
CREATE TABLE op_key (
    key TEXT NOT NULL,
    op INTEGER NOT NULL REFERENCES operation(id) ON DELETE CASCADE,
    PRIMARY KEY (key, op)
) WITHOUT ROWID;
CREATE INDEX op_key_op ON op_key (op);
-- VFs taken from a NIC that are not free yet: free once scrubbed.
CREATE TABLE vf_release (
    adapter TEXT NOT NULL,
    idx INTEGER NOT NULL,
    -- Why it is still held (a refused detach or scrub), NULL while on its way.
    reason TEXT,
    PRIMARY KEY (adapter, idx)
) WITHOUT ROWID;
-- Switches whose VF pool changed (a VF scrubbed, a VF count written) and wait
-- for the allocator: the operation that changed it, or the next one, runs it.
CREATE TABLE rebalance_due (
    switch TEXT PRIMARY KEY
) WITHOUT ROWID;
-- Why the machine refused this NIC a VF: it waits on the software path until
-- its VM restarts, its settings change or `iovctl apply` runs.
ALTER TABLE nic ADD COLUMN grant_error TEXT;
""",
    # A private VLAN is a VF setting of its own in every mode (nic_rules.vf_settings_for),
    # no longer the primary VLAN on the VF: NICs stored before need the new mask.
    3: f"""
UPDATE nic SET vf_needs = (vf_needs & ~{settings_mask({VfSetting.VLAN})})
    | {settings_mask({VfSetting.PVLAN})}
    WHERE pvlan_mode IS NOT NULL
""",
    # The objects an operation touches, as one JSON array on it: one row written per
    # operation instead of one per object, and read with it.
    4: """
ALTER TABLE operation ADD COLUMN keys TEXT NOT NULL DEFAULT '[]';
UPDATE operation SET keys = COALESCE(
    (SELECT json_group_array(key) FROM op_key WHERE op_key.op = operation.id), '[]');
DROP TABLE op_key;
-- Holders whose needs a driver cannot meet (allocation.revoke_unsupported, every
-- rebalance): found in the index, not by reading each holder's row.
CREATE INDEX nic_needs ON nic (vf_adapter, vf_needs)
""",
}
