"""SimulatedVmRuntime: VMs and their failover pairs, recorded in SQLite.

It keeps what a hypervisor would know (which VM runs, which NIC has which VF plugged)
so that ``vf_data_path_active`` answers from the runtime, not from the allocator's
own bookkeeping. Its tables live on the machine's own connection
(adapters/sim/machine.py): nothing rolls back with a command. Simulated guests
always carry a VF driver.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Iterable

from iovctl.adapters.own_vms import OwnVms
from iovctl.adapters.sim.machine import atomic
from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import NicConfig, NicTxBytes, VirtualFunction
from iovctl.domain.pvlan import UplinkTagging
from iovctl.errors import HardwareError

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


class SimulatedVmRuntime(OwnVms):
    """Implements ``VmRuntime`` (ports) without any hypervisor."""

    backend_name = "simulated"
    #: Simulated VMs are guests: their VFs go to vfio-pci, as QEMU's would.
    vf_driver = VfDriver.VFIO

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def ensure_schema(self) -> None:
        with atomic(self._conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)

    def start_vm(self, vm: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO sim_vm (name) VALUES (?)", (vm,))

    def stop_vm(self, vm: str) -> None:
        with atomic(self._conn):
            self._conn.execute("DELETE FROM sim_vm WHERE name = ?", (vm,))
            self._conn.execute("UPDATE sim_vm_nic SET vf_pci_address = NULL WHERE vm = ?", (vm,))

    def is_running(self, vm: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sim_vm WHERE name = ?", (vm,)).fetchone() is not None

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
        running VM, and for a VF another NIC has (its netdev is not in the host)."""
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
            "SELECT vm, nic FROM sim_vm_nic WHERE vf_pci_address = ?"
            " AND NOT (vm = ? AND nic = ?)",
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
        row = self._conn.execute(
            "SELECT 1 FROM sim_vm_nic JOIN sim_vm ON sim_vm.name = sim_vm_nic.vm"
            " WHERE vm = ? AND nic = ? AND vf_pci_address IS NOT NULL",
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

    def close(self) -> None:
        """Nothing held open."""
