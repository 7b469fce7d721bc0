"""SimulatedVmRuntime: VMs and their failover pairs, recorded in SQLite.

It keeps what a hypervisor would know (which VM runs, which NIC has which VF plugged)
so that ``vf_data_path_active`` answers from the runtime, not from the allocator's
own bookkeeping. Its tables live on the machine's own connection
(adapters/sim/machine.py): nothing rolls back with a command.

It is a simulated hypervisor too (``follows_hypervisor``), as libvirt is: it may
have *domains* that exist outside iovctl (:func:`define_domain`), that start and
stop behind iovctl's back (:func:`start_domain`, :func:`stop_domain`: ``virsh
start``, ``virsh destroy``, a crash), that ``vm import`` adopts with libvirt's
refusals (not q35, no free hot-plug slot), whose guests may lack failover support
(the VF is plugged but never carries traffic, as QEMU holds it back), that are
undefined behind iovctl's back (:func:`undefine_domain`: a running one stays,
transient, until it stops), and a VF pool of its own (:func:`hold_pool_vf`:
libvirt's hostdev networks). VMs made by ``vm
create`` stay iovctl's own records: only adopted domains are reported by
``power_states`` and ``watch``. The module functions are the outside world's
hands (tests); iovctl never calls them.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
from collections.abc import Callable, Iterable

from iovctl.adapters.sim.machine import atomic
from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import (
    NicConfig,
    NicTxBytes,
    RuntimeFacts,
    VirtualFunction,
    VmPowerChange,
    VmTemplate,
)
from iovctl.domain.pvlan import UplinkTagging
from iovctl.errors import Conflict, HardwareError, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_vm (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sim_vm_nic (
    vm TEXT NOT NULL,
    nic TEXT NOT NULL,
    mac TEXT NOT NULL,
    vf_pci_address TEXT,
    PRIMARY KEY (vm, nic)
) WITHOUT ROWID;
-- attach_vf asks who else holds a VF: one lookup, not a scan of every NIC
CREATE INDEX IF NOT EXISTS sim_vm_nic_vf ON sim_vm_nic (vf_pci_address);
"""

#: The simulated hypervisor's own tables (a machine from before them gets them at
#: its next open: :meth:`SimulatedVmRuntime.ensure_hypervisor`).
_HYPERVISOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_domain (
    name TEXT PRIMARY KEY,
    machine TEXT NOT NULL,
    hotplug_slots INTEGER NOT NULL,
    failover INTEGER NOT NULL,
    -- 1: adopted by iovctl (vm import), its power state reported
    managed INTEGER NOT NULL DEFAULT 0,
    -- 1: undefined while it ran: gone when it stops
    transient INTEGER NOT NULL DEFAULT 0,
    -- 1: its guest powers off at the ACPI power button (virsh shutdown)
    acpi INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
-- adopted domains undefined behind iovctl's back (lost_vms), until defined again
CREATE TABLE IF NOT EXISTS sim_lost (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sim_power_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    running INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_pool_vf (
    pci_address TEXT PRIMARY KEY,
    holder TEXT NOT NULL
) WITHOUT ROWID;
"""

#: The simulated hypervisor's versions: Debian 12's libvirt and QEMU.
SIM_LIBVIRT_VERSION = (9, 0, 0)
SIM_QEMU_VERSION = (7, 2, 0)
#: Seconds between two looks at the power event log (``watch``).
WATCH_POLL_S = 0.1


class SimulatedVmRuntime:
    """Implements ``VmRuntime`` (ports) with a simulated hypervisor."""

    backend_name = "simulated"
    #: Simulated VMs are guests: their VFs go to vfio-pci, as QEMU's would.
    vf_driver = VfDriver.VFIO
    #: Adopted domains start and stop outside iovctl; iovctl's own VMs do not.
    follows_hypervisor = True

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def machine(self) -> sqlite3.Connection:
        """The simulated machine's database (for the outside world's hands below)."""
        return self._conn

    def ensure_schema(self) -> None:
        with atomic(self._conn):
            for statement in (_SCHEMA + _HYPERVISOR_SCHEMA).split(";"):
                if statement.strip():
                    self._conn.execute(statement)

    def ensure_hypervisor(self) -> None:
        """Give a machine from before the simulated hypervisor its tables (one read
        when they exist)."""
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sim_lost'"
        ).fetchone()
        if found is None:
            self.ensure_schema()
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(sim_domain)")}
            for column in (
                "transient INTEGER NOT NULL DEFAULT 0",
                "acpi INTEGER NOT NULL DEFAULT 1",
            ):
                if column.split()[0] not in columns:  # a machine from before undefine
                    self._conn.execute(f"ALTER TABLE sim_domain ADD COLUMN {column}")

    def start_vm(self, vm: str) -> None:
        """One statement, as before domains (VM start is benchmarked): iovctl's own
        starts are not logged for ``watch``, which the port allows (callers compare
        with the store; the store already says it runs). A lost domain does not
        start: libvirt has no such domain."""
        if not _start(self._conn, vm) and not self.is_running(vm):
            raise _unknown_domain(vm)

    def stop_vm(self, vm: str) -> None:
        with atomic(self._conn):
            if _stop(self._conn, vm):
                _power_event(self._conn, vm, False, "stopped by iovctl")
                drop_stopped_transients(self._conn)

    def shut_down_guest(self, vm: str, timeout: float) -> bool:
        """A domain's guest powers off at once, or ignores the request (defined with
        ``acpi=False``: False without waiting out ``timeout``, simulated time). iovctl's
        own VMs have no guest OS to ask."""
        row = self._conn.execute("SELECT acpi FROM sim_domain WHERE name = ?", (vm,)).fetchone()
        if row is None or not self.is_running(vm):
            return True
        if not row[0]:
            return False
        with atomic(self._conn):
            _stop(self._conn, vm)
            _power_event(self._conn, vm, False, "shut down")
            drop_stopped_transients(self._conn)
        return True

    def is_running(self, vm: str) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM sim_vm WHERE name = ?", (vm,)).fetchone() is not None
        )

    def plug_software_nic(self, vm: str, nic: str, config: NicConfig) -> None:
        self._conn.execute(
            "INSERT INTO sim_vm_nic (vm, nic, mac) VALUES (?, ?, ?)"
            " ON CONFLICT (vm, nic) DO UPDATE SET mac = excluded.mac",
            (vm, nic, config.mac),
        )

    def unplug_nic(self, vm: str, nic: str) -> None:
        self._conn.execute("DELETE FROM sim_vm_nic WHERE vm = ? AND nic = ?", (vm, nic))

    def remove_switch(self, switch: str) -> None:
        """Nothing to tear down: the simulated software path is the switch row itself."""

    def attach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        """Refused, as by the namespace runtime, without the NIC's software half in a
        running VM, and for a VF another NIC has (its netdev is not in the host), or
        one the hypervisor gave out by its own means (libvirt: "in use by")."""
        pool = self._conn.execute(
            "SELECT holder FROM sim_pool_vf WHERE pci_address = ?", (vf.pci_address,)
        ).fetchone()
        if pool is not None:
            raise HardwareError(
                "vf-held-elsewhere",
                f"VF {vf.index} of {vf.adapter} ({vf.pci_address}) is in use by {pool[0]}",
                "the hypervisor gave it out by its own means; iovctl vf list shows why",
            )
        done = self._conn.execute(
            "UPDATE sim_vm_nic SET vf_pci_address = ? WHERE vm = ? AND nic = ?"
            " AND EXISTS (SELECT 1 FROM sim_vm WHERE name = ?)"
            " AND NOT EXISTS (SELECT 1 FROM sim_vm_nic AS other WHERE"
            " other.vf_pci_address = ? AND NOT (other.vm = ? AND other.nic = ?))",
            (vf.pci_address, vm, nic, vm, vf.pci_address, vm, nic),
        ).rowcount
        if done:
            return
        other = self._conn.execute(
            "SELECT vm, nic FROM sim_vm_nic WHERE vf_pci_address = ? AND NOT (vm = ? AND nic = ?)",
            (vf.pci_address, vm, nic),
        ).fetchone()
        if other is not None:
            raise HardwareError(
                "vf-netdev-missing",
                f"VF {vf.index} of {vf.adapter} is in use by {other[0]}/{other[1]}",
                "the VF may belong to another VM; check: iovctl vf list",
            )
        raise HardwareError(
            "nic-not-plugged",
            f"network adapter {vm}/{nic} has no software half to pair VF {vf.index} with",
            "start the VM first (iovctl vm start); its NICs get their software path then",
        )

    def detach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        self._conn.execute(
            "UPDATE sim_vm_nic SET vf_pci_address = NULL WHERE vm = ? AND nic = ?", (vm, nic)
        )

    def vf_data_path_active(self, vm: str, nic: str) -> bool:
        """Attached in a running VM whose guest negotiated failover (QEMU holds the
        VF back from a guest without it: plugged, yet it carries nothing)."""
        row = self._conn.execute(
            "SELECT 1 FROM sim_vm_nic JOIN sim_vm ON sim_vm.name = sim_vm_nic.vm"
            " WHERE vm = ? AND nic = ? AND vf_pci_address IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM sim_domain WHERE sim_domain.name = sim_vm_nic.vm"
            " AND failover = 0)",
            (vm, nic),
        ).fetchone()
        return row is not None

    def uplink_tagging(self, vm: str, nic: str) -> UplinkTagging:
        """The simulated switch's bridge filters VLANs, as a distribution kernel's does
        (it carries NICs' VLANs on the software path too): tagged while plugged."""
        row = self._conn.execute(
            "SELECT 1 FROM sim_vm_nic WHERE vm = ? AND nic = ?", (vm, nic)
        ).fetchone()
        return UplinkTagging.OFF if row is None else UplinkTagging.TAGGED

    def guest_address(self, vm: str, nic: str, config: NicConfig) -> ipaddress.IPv4Interface | None:
        """Simulated guests have no addresses iovctl knows of."""
        return None

    def nic_tx_bytes(self, vm: str, nic: str) -> NicTxBytes:
        """Simulated NICs move no packets: nothing sent on either half."""
        return NicTxBytes()

    def guest_command(self, vm: str) -> list[str] | None:
        """Simulated guests run no programs."""
        return None

    def wait_released(self, vm: str, nics: Iterable[str], timeout: float) -> bool:
        """A simulated stop is complete when ``stop_vm`` returns: released unless it runs."""
        return not self.is_running(vm)

    # -- VMs the simulated hypervisor owns -------------------------------------

    def define_vm(self, vm: str, template: VmTemplate) -> None:
        """iovctl's VMs stay records of its own; a domain of that name that exists
        outside iovctl is refused, as libvirt refuses a second definition."""
        row = self._domain(vm)
        if row is not None and not row[3]:
            raise Conflict(
                "domain-exists",
                f"the hypervisor already has a VM named {vm!r} that iovctl did not define",
                f"take it over instead: iovctl vm import {vm}",
            )

    def adopt_vm(self, vm: str) -> None:
        row = self._domain(vm)
        if row is None:
            raise _unknown_domain(vm)
        machine, slots, _, managed = row
        if managed:
            return
        if not machine.startswith("pc-q35") and machine != "q35":
            raise Conflict(
                "not-q35",
                f"VM {vm} has machine type {machine}: a VF cannot be hot-plugged beside its "
                "virtio NIC there",
                f"change it to q35 (virsh edit {vm}: <type machine='q35'>), then import again",
            )
        if slots < 1:
            raise Conflict(
                "no-hotplug-slot",
                f"VM {vm} has no free PCIe root port to hot-plug a VF into",
                f"add a <controller type='pci' model='pcie-root-port'/> (virsh edit {vm}), "
                "then import again",
            )
        self._conn.execute("UPDATE sim_domain SET managed = 1 WHERE name = ?", (vm,))

    def forget_vm(self, vm: str) -> None:
        """An adopted domain keeps its definition and loses iovctl's pairs."""
        with atomic(self._conn):
            if self._conn.execute(
                "UPDATE sim_domain SET managed = 0 WHERE name = ? AND managed = 1", (vm,)
            ).rowcount:
                self._conn.execute("DELETE FROM sim_vm_nic WHERE vm = ?", (vm,))

    def power_states(self) -> dict[str, bool]:
        rows = self._conn.execute(
            "SELECT d.name, EXISTS (SELECT 1 FROM sim_vm WHERE sim_vm.name = d.name)"
            " FROM sim_domain AS d WHERE managed = 1"
        )
        return {name: bool(running) for name, running in rows}

    def lost_vms(self, vms: Iterable[str]) -> frozenset[str]:
        lost = {r[0] for r in self._conn.execute("SELECT name FROM sim_lost")}
        return frozenset(vm for vm in vms if vm in lost)

    def watch(self, on_change: Callable[[VmPowerChange], None], stop: threading.Event) -> None:
        """Polls the machine's power event log (the simulated hypervisor's event
        stream); reports adopted domains' changes after the moment it began, and
        the stops of those gone with them (transient)."""
        (last,) = self._conn.execute("SELECT coalesce(max(seq), 0) FROM sim_power_event").fetchone()
        while not stop.is_set():
            rows = self._conn.execute(
                "SELECT e.seq, e.vm, e.running, e.detail FROM sim_power_event AS e"
                " LEFT JOIN sim_domain AS d ON d.name = e.vm"
                " WHERE e.seq > ? AND (d.managed = 1 OR e.vm IN (SELECT name FROM sim_lost))"
                " ORDER BY e.seq",
                (last,),
            ).fetchall()
            (last,) = self._conn.execute(
                "SELECT coalesce(max(seq), ?) FROM sim_power_event", (last,)
            ).fetchone()
            for _, vm, running, detail in rows:
                if stop.is_set():
                    return
                on_change(VmPowerChange(vm, bool(running), detail))
            stop.wait(WATCH_POLL_S)

    def vfs_held_elsewhere(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._conn.execute("SELECT pci_address FROM sim_pool_vf"))

    def facts(self) -> RuntimeFacts:
        return RuntimeFacts(
            kind="simulated",
            manager_version=SIM_LIBVIRT_VERSION,
            hypervisor_version=SIM_QEMU_VERSION,
            q35_machine=True,
        )

    def _domain(self, vm: str) -> tuple[str, int, int, int] | None:
        row = self._conn.execute(
            "SELECT machine, hotplug_slots, failover, managed FROM sim_domain WHERE name = ?",
            (vm,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def close(self) -> None:
        """Nothing held open."""


# -- the simulated hypervisor's own state changes (the outside world's hands) --------


def _start(conn: sqlite3.Connection, vm: str) -> bool:
    """False when it runs already, or its domain is lost."""
    return bool(
        conn.execute(
            "INSERT OR IGNORE INTO sim_vm (name)"
            " SELECT ? WHERE NOT EXISTS (SELECT 1 FROM sim_lost WHERE name = ?)",
            (vm, vm),
        ).rowcount
    )


def _unknown_domain(vm: str) -> NotFound:
    return NotFound(
        "unknown-domain",
        f"the hypervisor has no VM named {vm!r}",
        "list its VMs (virsh list --all) and give one of their names",
    )


def drop_stopped_transients(conn: sqlite3.Connection) -> None:
    """Transient domains that stopped are gone; iovctl's adopted ones are lost."""
    gone = "transient = 1 AND name NOT IN (SELECT name FROM sim_vm)"
    conn.execute(
        f"INSERT OR IGNORE INTO sim_lost SELECT name FROM sim_domain WHERE {gone} AND managed = 1"
    )
    conn.execute(f"DELETE FROM sim_domain WHERE {gone}")


def _stop(conn: sqlite3.Connection, vm: str) -> bool:
    """QEMU exits: the VM's hot-plugged VFs go with it (the pairs' software halves,
    persistent, stay defined)."""
    conn.execute("UPDATE sim_vm_nic SET vf_pci_address = NULL WHERE vm = ?", (vm,))
    return bool(conn.execute("DELETE FROM sim_vm WHERE name = ?", (vm,)).rowcount)


def _power_event(conn: sqlite3.Connection, vm: str, running: bool, detail: str) -> None:
    """Logged for domains only: iovctl's own VMs change only by its commands."""
    conn.execute(
        "INSERT INTO sim_power_event (vm, running, detail)"
        " SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM sim_domain WHERE name = ?)",
        (vm, int(running), detail, vm),
    )


def power_off_domains(conn: sqlite3.Connection, detail: str) -> None:
    """Every running domain stops at once (the host rebooted): logged before the
    caller empties ``sim_vm``, in its transaction."""
    conn.execute(
        "INSERT INTO sim_power_event (vm, running, detail)"
        " SELECT name, 0, ? FROM sim_vm WHERE name IN (SELECT name FROM sim_domain)",
        (detail,),
    )


def define_domain(
    conn: sqlite3.Connection,
    name: str,
    *,
    machine: str = "pc-q35-7.2",
    hotplug_slots: int = 4,
    failover: bool = True,
    acpi: bool = True,
) -> None:
    """``virsh define``: a VM the hypervisor has and iovctl does not (yet). ``failover``
    False: its guest's virtio_net lacks failover (Linux < 4.18, or built without);
    ``acpi`` False: its guest ignores the power button (``virsh shutdown``)."""
    if conn.execute("SELECT 1 FROM sim_domain WHERE name = ?", (name,)).fetchone():
        raise ValueError(f"domain {name} exists")
    with atomic(conn):
        conn.execute(
            "INSERT INTO sim_domain (name, machine, hotplug_slots, failover, acpi)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, machine, hotplug_slots, int(failover), int(acpi)),
        )
        conn.execute("DELETE FROM sim_lost WHERE name = ?", (name,))  # a new definition


def undefine_domain(conn: sqlite3.Connection, name: str) -> None:
    """``virsh undefine`` behind iovctl's back: a domain that runs stays, transient,
    until it stops; one that does not is gone now. Either way iovctl's record in it
    goes with it: an adopted domain is lost (``lost_vms``) once it is gone."""
    if conn.execute("SELECT 1 FROM sim_domain WHERE name = ?", (name,)).fetchone() is None:
        raise ValueError(f"no domain {name}")
    with atomic(conn):
        conn.execute("UPDATE sim_domain SET transient = 1 WHERE name = ?", (name,))
        drop_stopped_transients(conn)


def start_domain(conn: sqlite3.Connection, name: str, detail: str = "virsh start") -> None:
    """Start a domain behind iovctl's back; libvirt refuses a running one."""
    if conn.execute("SELECT 1 FROM sim_domain WHERE name = ?", (name,)).fetchone() is None:
        raise ValueError(f"no domain {name}")
    with atomic(conn):
        if not _start(conn, name):
            raise ValueError(f"domain {name} is already active")
        _power_event(conn, name, True, detail)


def stop_domain(conn: sqlite3.Connection, name: str, detail: str = "virsh destroy") -> None:
    """Stop a domain behind iovctl's back (``virsh destroy``, "crashed", "shut down")."""
    with atomic(conn):
        if not _stop(conn, name):
            raise ValueError(f"domain {name} is not running")
        _power_event(conn, name, False, detail)
        drop_stopped_transients(conn)


def hold_pool_vf(conn: sqlite3.Connection, pci_address: str, holder: str) -> None:
    """The hypervisor gives a VF out by its own means (a hostdev network pool)."""
    conn.execute(
        "INSERT OR REPLACE INTO sim_pool_vf (pci_address, holder) VALUES (?, ?)",
        (pci_address, holder),
    )


def release_pool_vf(conn: sqlite3.Connection, pci_address: str) -> None:
    conn.execute("DELETE FROM sim_pool_vf WHERE pci_address = ?", (pci_address,))
