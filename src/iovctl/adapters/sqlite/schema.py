"""Schema of the state store, versioned with ``PRAGMA user_version``.

A migration is a list of statements run inside the opening transaction; a database
written by a newer iovctl (higher version) is refused instead of guessed at.
"""

from __future__ import annotations

from iovctl.domain.model import VfSetting
from iovctl.domain.nic_rules import settings_mask

SCHEMA_VERSION = 2

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
    # A private VLAN is a VF setting of its own in every mode (nic_rules.vf_settings_for),
    # no longer the primary VLAN on the VF: NICs stored before need the new mask.
    2: f"""
UPDATE nic SET vf_needs = (vf_needs & ~{settings_mask({VfSetting.VLAN})})
    | {settings_mask({VfSetting.PVLAN})}
    WHERE pvlan_mode IS NOT NULL
""",
}
