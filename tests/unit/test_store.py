"""adapters.sqlite.store: transactions, schema versioning, snapshots, on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from helpers import back_to_schema_3
from iovctl.adapters.sqlite import store as store_module
from iovctl.adapters.sqlite.schema import SCHEMA_VERSION
from iovctl.adapters.sqlite.store import DB_NAME, SqliteStore, default_state_dir
from iovctl.domain.model import (
    EventLevel,
    NicConfig,
    PrivateVlan,
    PvlanMode,
    VfAssignment,
    VfSetting,
    VirtualMachine,
    VirtualSwitch,
    VmState,
)
from iovctl.domain.nic_rules import required_mask, settings_from_mask, settings_mask
from iovctl.errors import Conflict, NotFound, StateError


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def store(state_dir):
    s = SqliteStore.open(state_dir)
    yield s
    s.close()


def vm_names(store: SqliteStore) -> list[str]:
    return [vm.name for vm in store.list_vms()]


class Boom(Exception):
    pass


# -- opening and schema versioning ---------------------------------------------------------


def test_open_creates_the_directory_and_migrates(state_dir):
    s = SqliteStore.open(state_dir / "deeper")
    try:
        assert (state_dir / "deeper" / DB_NAME).is_file()
        (version,) = s.conn.execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION >= 1
        (mode,) = s.conn.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
        assert s.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        s.close()


def test_reopening_keeps_the_data_and_the_version(state_dir):
    s = SqliteStore.open(state_dir)
    with s.transaction():
        s.add_vm(VirtualMachine("alpha"))
    s.close()
    again = SqliteStore.open(state_dir)
    try:
        assert vm_names(again) == ["alpha"]
        assert again.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        again.close()


def test_a_newer_schema_is_refused_and_left_alone(state_dir):
    SqliteStore.open(state_dir).close()
    conn = sqlite3.connect(state_dir / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StateError) as exc_info:
        SqliteStore.open(state_dir)
    err = exc_info.value
    assert err.code == "state-too-new" and err.exit_code == 6
    assert str(SCHEMA_VERSION + 1) in err.message and err.hint
    conn = sqlite3.connect(state_dir / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
    conn.close()


def test_a_file_that_is_not_a_database_is_a_state_error(state_dir):
    state_dir.mkdir()
    (state_dir / DB_NAME).write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StateError) as exc_info:
        SqliteStore.open(state_dir)
    assert exc_info.value.code == "state-unusable"


def test_a_state_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError) as exc_info:
        SqliteStore.open(blocker / "state")
    assert exc_info.value.code == "state-dir-unusable"
    assert str(blocker / "state") in exc_info.value.message


def test_in_memory_store_is_migrated():
    s = SqliteStore.open(None)
    try:
        assert s.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        s.close()


def test_default_state_dir_follows_xdg_for_non_root(monkeypatch, tmp_path):
    monkeypatch.setattr(store_module.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "iovctl"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "iovctl"
    monkeypatch.setattr(store_module.os, "geteuid", lambda: 0)
    assert str(default_state_dir()) == "/var/lib/iovctl"


# -- transactions ---------------------------------------------------------------------


def test_a_transaction_commits(store, state_dir):
    with store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        store.add_event(EventLevel.INFO, "vm-created", "vm", "alpha", "VM alpha created")
    other = SqliteStore.open(state_dir)
    try:
        assert vm_names(other) == ["alpha"]
        assert [e.code for e in other.list_events()] == ["vm-created"]
    finally:
        other.close()


def test_an_exception_rolls_everything_back(store):
    with store.transaction():
        store.add_vm(VirtualMachine("keep"))
    with pytest.raises(Boom), store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        store.set_meta("k", "v")
        store.next_seq("mac")
        store.add_event(EventLevel.INFO, "vm-created", "vm", "alpha", "created")
        store.delete_vm("keep")
        raise Boom
    assert vm_names(store) == ["keep"]
    assert store.get_meta("k") is None
    assert store.list_events() == []
    assert store.next_seq("mac") == 1  # the counter bump was rolled back too
    # The store is usable afterwards.
    with store.transaction():
        store.add_vm(VirtualMachine("beta"))
    assert vm_names(store) == ["beta", "keep"]


def test_an_iovctl_error_rolls_back_too(store):
    with pytest.raises(NotFound), store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        store.get_vm("nosuch")
    assert vm_names(store) == []


def test_keyboard_interrupt_rolls_back(store):
    with pytest.raises(KeyboardInterrupt), store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        raise KeyboardInterrupt
    assert vm_names(store) == []


def test_nested_transactions_join_the_outer_one(store, state_dir):
    other = SqliteStore.open(state_dir)
    try:
        with store.transaction():
            store.add_vm(VirtualMachine("outer"))
            with store.transaction():
                store.add_vm(VirtualMachine("inner"))
            # Nothing is committed until the outer block ends.
            assert vm_names(other) == []
        assert vm_names(other) == ["inner", "outer"]
    finally:
        other.close()


def test_an_error_in_a_nested_block_rolls_back_the_whole_transaction(store):
    with pytest.raises(Boom), store.transaction():
        store.add_vm(VirtualMachine("outer"))
        with store.transaction():
            store.add_vm(VirtualMachine("inner"))
            raise Boom
    assert vm_names(store) == []
    with store.transaction():  # depth is back to 0: a fresh transaction works
        store.add_vm(VirtualMachine("after"))
    assert vm_names(store) == ["after"]


def test_a_busy_store_is_a_state_error_not_a_sqlite_traceback(state_dir, monkeypatch):
    holder = SqliteStore.open(state_dir)
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    waiter = SqliteStore.open(state_dir)
    try:
        with holder.transaction():
            holder.add_vm(VirtualMachine("alpha"))
            with pytest.raises(StateError) as exc_info, waiter.transaction():
                pass
            assert exc_info.value.code == "state-busy"
        # Once the holder commits, the waiter gets through.
        with waiter.transaction():
            waiter.add_vm(VirtualMachine("beta"))
        assert vm_names(waiter) == ["alpha", "beta"]
    finally:
        holder.close()
        waiter.close()


def test_writers_serialize_instead_of_failing(state_dir):
    """A second writer waits for the first (busy timeout), then runs."""
    first = SqliteStore.open(state_dir)
    order: list[str] = []
    errors: list[BaseException] = []
    started = threading.Event()

    def write_second() -> None:
        second = SqliteStore.open(state_dir)  # sqlite3 connections stay in their thread
        try:
            started.set()
            with second.transaction():
                order.append("second")
                second.add_vm(VirtualMachine("second"))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            second.close()

    try:
        with first.transaction():
            first.add_vm(VirtualMachine("first"))
            thread = threading.Thread(target=write_second)
            thread.start()
            started.wait(10)
            thread.join(0.3)
            assert thread.is_alive()  # blocked on the write lock
            order.append("first")
        thread.join(10)
        assert errors == []
        assert order == ["first", "second"]
        assert vm_names(first) == ["first", "second"]
    finally:
        first.close()


def test_opening_a_fresh_store_waits_for_another_writer(state_dir):
    """The first commands on a new state dir race: one may hold the write lock while
    another opens the file and switches it to WAL. Opening must wait like any writer,
    not fail at once with "database is locked" (8 processes at once hit this)."""
    state_dir.mkdir()
    other = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE scratch (x)")
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        store = SqliteStore.open(state_dir)
        store.close()
    finally:
        timer.join()
        other.close()
    again = SqliteStore.open(state_dir)
    try:
        assert again.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert again.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        again.close()


# -- snapshots ------------------------------------------------------------------------


def test_a_snapshot_reads_one_consistent_state(store, state_dir):
    with store.transaction():
        store.add_vm(VirtualMachine("alpha"))
    writer = SqliteStore.open(state_dir)
    try:
        with store.snapshot():
            assert vm_names(store) == ["alpha"]
            with writer.transaction():  # a writer is not blocked by the reader
                writer.add_vm(VirtualMachine("beta"))
            assert vm_names(store) == ["alpha"]  # still the snapshot's view
        assert vm_names(store) == ["alpha", "beta"]
    finally:
        writer.close()


def test_a_snapshot_inside_a_transaction_joins_it(store):
    with store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        with store.snapshot():
            assert vm_names(store) == ["alpha"]
        store.add_vm(VirtualMachine("beta"))
    assert vm_names(store) == ["alpha", "beta"]


def test_a_snapshot_ends_even_when_the_read_fails(store):
    with pytest.raises(NotFound), store.snapshot():
        store.get_vm("nosuch")
    with store.transaction():
        store.add_vm(VirtualMachine("alpha"))
    assert vm_names(store) == ["alpha"]


# -- rows -----------------------------------------------------------------------------


def _config(**changes: object) -> NicConfig:
    base = {"switch": "ext", "mac": "52:54:00:00:00:01", "iov_weight": 50}
    base.update(changes)
    return NicConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def with_switch_and_vm(store):
    with store.transaction():
        store.add_switch(VirtualSwitch("ext", "enp1s0", True))
        store.add_vm(VirtualMachine("alpha"))
    return store


def test_schema_4_keeps_the_keys_of_unfinished_operations(state_dir):
    """An operation a schema-3 iovctl left unfinished still blocks what it touches."""
    from iovctl.domain.steps import StopVm

    s = SqliteStore.open(state_dir)
    with s.transaction():
        op, _ = s.begin_operation("vm-stop", "lease-x", [StopVm("alpha")])
    s.close()
    conn = sqlite3.connect(state_dir / DB_NAME)
    back_to_schema_3(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    s = SqliteStore.open(state_dir)
    try:
        assert [o.id for o in s.operations({"vm:alpha"})] == [op]
        assert s.operations({"vm:beta"}) == []
        tables = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master")}
        assert "op_key" not in tables
    finally:
        s.close()


def test_schema_3_gives_private_vlan_nics_their_new_vf_needs(state_dir):
    """Before schema 3 a private VLAN asked the VF for its primary VLAN (and for
    nothing more when promiscuous); now it asks for the private VLAN setting."""
    promiscuous = _config(pvlan=PrivateVlan(PvlanMode.PROMISCUOUS, 100))
    plain = _config(mac="52:54:00:00:00:99", vlan=7)
    s = SqliteStore.open(state_dir)
    with s.transaction():
        s.add_switch(VirtualSwitch("ext", "enp1s0", True))
        s.add_vm(VirtualMachine("alpha"))
        s.add_nic("alpha", "nic0", promiscuous)
        s.add_nic("alpha", "nic1", plain)
    s.close()
    old = settings_mask({VfSetting.MAC, VfSetting.VLAN})
    conn = sqlite3.connect(state_dir / DB_NAME)
    conn.execute("UPDATE nic SET vf_needs = ?", (old,))
    back_to_schema_3(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    s = SqliteStore.open(state_dir)
    try:
        assert s.get_nic("alpha", "nic0").vf_needs == required_mask(promiscuous)
        assert VfSetting.PVLAN in settings_from_mask(s.get_nic("alpha", "nic0").vf_needs)
        assert s.get_nic("alpha", "nic1").vf_needs == old == required_mask(plain)
    finally:
        s.close()


def test_nic_round_trip_keeps_every_field(with_switch_and_vm):
    store = with_switch_and_vm
    config = _config(
        iov_queue_pairs_requested=4,
        pvlan=PrivateVlan(PvlanMode.COMMUNITY, 100, 102),
        max_rate=500,
        allow_mac_spoofing=True,
        trust=True,
    )
    with store.transaction():
        nic_id = store.add_nic("alpha", "nic0", config)
    nic = store.get_nic("alpha", "nic0")
    assert (nic.id, nic.vm, nic.name, nic.config) == (nic_id, "alpha", "nic0", config)
    assert nic.assignment is None
    with store.transaction():
        store.set_assignment(nic_id, VfAssignment("enp1s0", 2, 4))
    assert store.nic_by_id(nic_id).assignment == VfAssignment("enp1s0", 2, 4)
    assert store.usage_on_adapter("enp1s0") == (1, 4)


def test_duplicate_mac_and_name_are_conflicts(with_switch_and_vm):
    store = with_switch_and_vm
    with store.transaction():
        store.add_nic("alpha", "nic0", _config())
    with pytest.raises(Conflict) as exc_info, store.transaction():
        store.add_nic("alpha", "nic1", _config())
    assert exc_info.value.code == "duplicate-mac"
    with pytest.raises(Conflict) as exc_info, store.transaction():
        store.add_nic("alpha", "nic0", _config(mac="52:54:00:00:00:02"))
    assert exc_info.value.code == "duplicate-name"
    assert [n.name for n in store.list_nics()] == ["nic0"]


def test_a_vf_cannot_be_held_twice_even_by_a_buggy_caller(with_switch_and_vm):
    store = with_switch_and_vm
    with store.transaction():
        a = store.add_nic("alpha", "nic0", _config())
        b = store.add_nic("alpha", "nic1", _config(mac="52:54:00:00:00:02"))
        store.set_assignment(a, VfAssignment("enp1s0", 0, 1))
    with pytest.raises(sqlite3.IntegrityError), store.transaction():
        store.set_assignment(b, VfAssignment("enp1s0", 0, 1))
    assert store.nic_by_id(b).assignment is None


def test_get_raises_not_found_naming_the_object_and_find_returns_none(store):
    assert store.find_vm("ghost") is None and store.find_switch("ghost") is None
    for call, code in (
        (lambda: store.get_vm("ghost"), "unknown-vm"),
        (lambda: store.get_switch("ghost"), "unknown-switch"),
    ):
        with pytest.raises(NotFound) as exc_info:
            call()
        assert exc_info.value.code == code and "ghost" in exc_info.value.message


def test_vm_state_and_counters(store):
    with store.transaction():
        store.add_vm(VirtualMachine("alpha"))
        store.set_vm_state("alpha", VmState.RUNNING)
        assert [store.next_seq("claim") for _ in range(3)] == [1, 2, 3]
        assert store.next_seq("mac") == 1
    assert store.get_vm("alpha").state is VmState.RUNNING


def test_events_limit_and_since(store):
    with store.transaction():
        for i in range(5):
            store.add_event(EventLevel.INFO, f"e{i}", "vm", "alpha", f"event {i}")
    assert [e.code for e in store.list_events()] == ["e0", "e1", "e2", "e3", "e4"]
    assert [e.code for e in store.list_events(limit=2)] == ["e3", "e4"]
    seqs = [e.seq for e in store.list_events()]
    assert [e.code for e in store.list_events(since=seqs[2])] == ["e3", "e4"]
    assert [e.code for e in store.list_events(limit=1, since=seqs[0])] == ["e4"]


def test_free_vf_indexes_leave_out_holders_and_released_vfs(with_switch_and_vm):
    store = with_switch_and_vm
    with store.transaction():
        nic_id = store.add_nic("alpha", "nic0", _config())
        store.set_assignment(nic_id, VfAssignment("enp1s0", 1, 1))
        store.hold_released_vf("enp1s0", 3)
        store.hold_released_vf("other", 0)  # another adapter's
    assert store.free_vf_indexes("enp1s0", 5) == [0, 2, 4]
    assert store.free_vf_indexes("enp1s0", 2) == [0]
    assert store.free_vf_indexes("enp1s0", 0) == []
    assert store.free_vf_indexes("other", 2) == [1]


def test_event_counts_count_every_writer(store, state_dir):
    with store.transaction():
        store.add_event(EventLevel.INFO, "vm-started", "vm", "alpha", "started")
        store.add_event(EventLevel.INFO, "vm-started", "vm", "beta", "started")
        store.add_event(EventLevel.WARNING, "vf-lost", "nic", "alpha/nic0", "lost")
    other = SqliteStore.open(state_dir)  # another process's store: a CLI command
    try:
        with other.transaction():
            other.add_event(EventLevel.INFO, "vm-started", "vm", "gamma", "started")
    finally:
        other.close()
    with store.snapshot():
        assert store.event_counts() == {
            ("vm-started", "info"): 3,
            ("vf-lost", "warning"): 1,
        }
