"""SimulatedHost: the PCI bus and VF configuration of a host spec, with kernel rules.

Hardware state (VF counts, VF settings) lives in SQLite tables on the machine's own
connection (adapters/sim/machine.py): each write commits at once, like a kernel's,
and does not roll back with a command's store transaction; separate commands see
one consistent host. Errors carry the errno the real kernel returns
(drivers/pci/iov.c for sriov_numvfs; the driver's ndo_set_vf_* for settings).
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import replace
from typing import Any

from iovctl.adapters.sim.machine import atomic
from iovctl.adapters.sim.spec import AdapterSpec, HostSpec
from iovctl.domain.drivers import VF_DRIVER, VF_RESET_NEEDS_PF_UP, VfDriver
from iovctl.domain.model import (
    Adapter,
    HostFacts,
    LinkState,
    VfSetting,
    VfSettings,
    VfStats,
    VirtualFunction,
    VlanProtocol,
)
from iovctl.domain.pvlan import as_text as pvlan_text
from iovctl.domain.pvlan import from_text as pvlan_from_text
from iovctl.domain.readiness import iommu_usable
from iovctl.errors import HardwareError, NotFound, UnsupportedVfSetting, pf_down

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_adapter (
    name TEXT PRIMARY KEY,
    num_vfs INTEGER NOT NULL,
    -- the PF's netdev is administratively up (ip link set PF up / down)
    admin_up INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS sim_vf (
    adapter TEXT NOT NULL,
    idx INTEGER NOT NULL,
    mac TEXT NOT NULL DEFAULT '00:00:00:00:00:00',
    vlan INTEGER NOT NULL DEFAULT 0,
    qos INTEGER NOT NULL DEFAULT 0,
    vlan_protocol TEXT NOT NULL DEFAULT '802.1Q',
    spoof_check INTEGER NOT NULL DEFAULT 1,
    trust INTEGER NOT NULL DEFAULT 0,
    max_rate INTEGER NOT NULL DEFAULT 0,
    min_rate INTEGER NOT NULL DEFAULT 0,
    link_state TEXT NOT NULL DEFAULT 'auto',
    pvlan TEXT NOT NULL DEFAULT '-',
    rx_bytes INTEGER NOT NULL DEFAULT 0,
    rx_packets INTEGER NOT NULL DEFAULT 0,
    rx_dropped INTEGER NOT NULL DEFAULT 0,
    tx_bytes INTEGER NOT NULL DEFAULT 0,
    tx_packets INTEGER NOT NULL DEFAULT 0,
    tx_dropped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (adapter, idx)
) WITHOUT ROWID;
"""

#: A VF's traffic counters, in VfStats' field order; a row made by a VF count change
#: starts them at zero, as the PF driver's do.
_STATS_COLUMNS = ("rx_bytes", "rx_packets", "rx_dropped", "tx_bytes", "tx_packets", "tx_dropped")

_VF_COLUMNS = (
    "mac, vlan, qos, vlan_protocol, spoof_check, trust, max_rate, min_rate, link_state, pvlan"
)


def vf_pci_address(spec: AdapterSpec, index: int) -> str:
    """PCIe SR-IOV: VF n's routing id = PF routing id + offset + n * stride."""
    domain, bus, devfn = spec.adapter.pci_address.split(":")
    dev, fn = devfn.split(".")
    rid = (int(bus, 16) << 8) | (int(dev, 16) << 3) | int(fn)
    rid += spec.vf_offset + index * spec.vf_stride
    return f"{domain}:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}"


class SimulatedHost:
    """Implements ``HostHardware`` (ports) for a host spec. Needs no root, no hardware."""

    def __init__(self, conn: sqlite3.Connection, spec: HostSpec) -> None:
        self._conn = conn
        self.spec = spec
        self.backend_name = f"simulated:{spec.name}"
        self._by_name = {a.adapter.name: a for a in spec.adapters}
        self._group_base = {a.adapter.name: 16 + i * 4096 for i, a in enumerate(spec.adapters)}
        #: VF PCI address -> driver bound by bind_vf_driver (None: no driver).
        self.vf_drivers: dict[str, str | None] = {}
        self._stats_ready = False

    @property
    def machine(self) -> sqlite3.Connection:
        """The simulated machine's database (the simulated runtime shares it)."""
        return self._conn

    def ensure_schema(self) -> None:
        """Create the hardware tables and power the host on (idempotent)."""
        with atomic(self._conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(sim_vf)")}
            if "pvlan" not in columns:  # a machine from before VFs had private VLANs
                self._conn.execute("ALTER TABLE sim_vf ADD COLUMN pvlan TEXT NOT NULL DEFAULT '-'")
            self._add_stats_columns(columns)
            adapter_columns = {r[1] for r in self._conn.execute("PRAGMA table_info(sim_adapter)")}
            if "admin_up" not in adapter_columns:  # a machine from before PFs went down
                self._conn.execute(
                    "ALTER TABLE sim_adapter ADD COLUMN admin_up INTEGER NOT NULL DEFAULT 1"
                )
            for a in self.spec.adapters:
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO sim_adapter (name, num_vfs) VALUES (?, ?)",
                    (a.adapter.name, a.adapter.num_vfs),
                )
                if cur.rowcount:
                    self._create_vfs(a.adapter.name, a.adapter.num_vfs)

    def bind_vf_driver(self, adapter: str, index: int, driver: VfDriver) -> str | None:
        """See VfDrivers.bind_vf_driver; recorded for this instance (the simulated
        kernel's driver links), with the kernel's refusals: vfio-pci needs an IOMMU
        group (vfio_iommu_group_get: EINVAL); a VF of a PF that is down and whose
        driver answers VF resets only when up is refused, as LinuxHost refuses it."""
        vf = self.virtual_function(adapter, index)
        pf = self._spec(adapter).adapter
        if pf.driver in VF_RESET_NEEDS_PF_UP and not self._admin_up(adapter):
            raise pf_down(adapter, pf.driver, vf.pci_address)
        if driver is VfDriver.VFIO:
            if vf.iommu_group is None:
                raise HardwareError(
                    "no-iommu",
                    f"VF {vf.pci_address} has no IOMMU group, so vfio-pci cannot take it",
                    "enable the IOMMU: intel_iommu=on or amd_iommu=on on the kernel command line",
                    errno=errno.EINVAL,
                )
            bound: str | None = "vfio-pci"
        else:
            bound = VF_DRIVER.get(self.adapter(adapter).driver or "") or None
        self.vf_drivers[vf.pci_address] = bound
        return bound

    def close(self) -> None:
        """Nothing held open."""

    def refresh(self) -> None:
        """Nothing kept: every call reads the store."""

    def power_cycle(self) -> None:
        """Simulate a reboot: VF counts back to the spec's, every VF setting lost, and
        no VM running (the simulated runtime's tables are part of the machine)."""
        with atomic(self._conn):
            if self._has_runtime():
                from iovctl.adapters.sim.runtime import drop_stopped_transients, power_off_domains

                power_off_domains(self._conn, "host rebooted")
                self._conn.execute("DELETE FROM sim_vm")
                self._conn.execute("DELETE FROM sim_vm_nic")
                drop_stopped_transients(self._conn)
            for a in self.spec.adapters:
                self._conn.execute(
                    "UPDATE sim_adapter SET num_vfs = ?, admin_up = 1 WHERE name = ?",
                    (a.adapter.num_vfs, a.adapter.name),
                )
                self._conn.execute("DELETE FROM sim_vf WHERE adapter = ?", (a.adapter.name,))
                self._create_vfs(a.adapter.name, a.adapter.num_vfs)

    # -- PciBus ---------------------------------------------------------------

    def host_facts(self) -> HostFacts:
        return self.spec.facts

    def adapters(self) -> list[Adapter]:
        counts = dict(self._conn.execute("SELECT name, num_vfs FROM sim_adapter").fetchall())
        out = [_with_count(a.adapter, counts.get(a.adapter.name, 0)) for a in self.spec.adapters]
        return sorted(out, key=lambda a: a.name)

    def adapter(self, name: str) -> Adapter:
        spec = self._spec(name)
        row = self._conn.execute("SELECT num_vfs FROM sim_adapter WHERE name = ?", (name,))
        found = row.fetchone()
        return _with_count(spec.adapter, found[0] if found else 0)

    def set_num_vfs(self, adapter: str, count: int) -> None:
        spec = self._spec(adapter)
        pf = spec.adapter
        if count > 0:
            # A PF that is down is brought up first, as LinuxHost does (before the
            # kernel's sriov_numvfs checks, which it does not change).
            self._conn.execute("UPDATE sim_adapter SET admin_up = 1 WHERE name = ?", (adapter,))
        cap = pf.sriov
        facts = self.spec.facts
        if cap is None or not facts.kernel_pci_iov:
            # No SR-IOV capability: the sriov_numvfs attribute does not exist.
            raise HardwareError(
                "sriov-not-capable",
                f"adapter {adapter} ({pf.model}) has no SR-IOV capability",
                "pick an SR-IOV capable adapter: iovctl adapter list",
                errno.ENOENT,
            )
        current = self.adapter(adapter).num_vfs
        if count > cap.total_vfs:
            # iov.c sriov_numvfs_store: num_vfs > sriov_totalvfs -> -ERANGE
            raise HardwareError(
                "vf-count-out-of-range",
                f"adapter {adapter} ({pf.driver}) supports at most {cap.total_vfs} VFs, not {count}",
                f"choose a VF count from 0 to {cap.total_vfs}",
                errno.ERANGE,
            )
        if count == current:
            return  # iov.c: same value is a no-op
        if pf.driver is None:
            # iov.c: no driver or no sriov_configure -> -ENOENT
            raise HardwareError(
                "no-pf-driver",
                f"adapter {adapter} has no PF driver bound, so its VFs cannot be configured",
                f"load the PF driver and check: lspci -k -s {pf.pci_address}",
                errno.ENOENT,
            )
        if current and count:
            # iov.c: "%d VFs already enabled. Disable before enabling %d VFs" -> -EBUSY
            raise HardwareError(
                "vf-count-busy",
                f"adapter {adapter} ({pf.driver}) already has {current} VFs enabled",
                "write 0 first, then the new count (iovctl adapter set does this for you)",
                errno.EBUSY,
            )
        if count and not (facts.firmware_sriov_enabled and cap.bus_resources and cap.vf_bar_space):
            # pci_iov_resource / bus number allocation fails -> -ENOMEM
            raise HardwareError(
                "vf-resources-missing",
                f"adapter {adapter} ({pf.driver}): the firmware left no bus numbers or "
                "memory space for VFs",
                "enable SR-IOV in the BIOS/UEFI setup; on Linux pci=realloc may help",
                errno.ENOMEM,
            )
        with atomic(self._conn):
            if current and self._has_runtime():
                # The VFs are destroyed: a VM that had one loses it (hot-unplugged).
                gone = [vf_pci_address(spec, i) for i in range(current)]
                self._conn.execute(
                    "UPDATE sim_vm_nic SET vf_pci_address = NULL WHERE vf_pci_address IN"
                    f" ({', '.join('?' * len(gone))})",
                    gone,
                )
            self._conn.execute(
                "UPDATE sim_adapter SET num_vfs = ? WHERE name = ?", (count, adapter)
            )
            self._conn.execute("DELETE FROM sim_vf WHERE adapter = ?", (adapter,))
            self._create_vfs(adapter, count)

    def _admin_up(self, adapter: str) -> bool:
        row = self._conn.execute("SELECT admin_up FROM sim_adapter WHERE name = ?", (adapter,))
        found = row.fetchone()
        return found is None or bool(found[0])

    def virtual_functions(self, adapter: str) -> list[VirtualFunction]:
        spec = self._spec(adapter)
        rows = self._conn.execute(
            f"SELECT idx, {_VF_COLUMNS} FROM sim_vf WHERE adapter = ? ORDER BY idx", (adapter,)
        ).fetchall()
        return [self._vf(spec, row[0], row[1:]) for row in rows]

    def virtual_function(self, adapter: str, index: int) -> VirtualFunction:
        """One VF, without reading the others."""
        spec = self._spec(adapter)
        row = self._conn.execute(
            f"SELECT {_VF_COLUMNS} FROM sim_vf WHERE adapter = ? AND idx = ?", (adapter, index)
        ).fetchone()
        if row is None:
            raise self._no_vf(spec, index)
        return self._vf(spec, index, row)

    # -- VfCounters -----------------------------------------------------------

    def _add_stats_columns(self, columns: set[str]) -> None:
        for column in _STATS_COLUMNS:  # a machine from before VFs counted traffic
            if column not in columns:
                self._conn.execute(
                    f"ALTER TABLE sim_vf ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
                )

    def _ensure_stats_columns(self) -> None:
        """Machines powered on by an iovctl without VF counters get them, zero."""
        if self._stats_ready:
            return
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(sim_vf)")}
        if not columns.issuperset(_STATS_COLUMNS):  # a read takes no lock; this, once
            with atomic(self._conn):
                self._add_stats_columns(
                    {row[1] for row in self._conn.execute("PRAGMA table_info(sim_vf)")}
                )
        self._stats_ready = True

    def vf_stats(self, adapter: str) -> dict[int, VfStats]:
        """The counters :meth:`pass_traffic` added up since the VF was created."""
        self._spec(adapter)
        self._ensure_stats_columns()
        rows = self._conn.execute(
            f"SELECT idx, {', '.join(_STATS_COLUMNS)} FROM sim_vf WHERE adapter = ? ORDER BY idx",
            (adapter,),
        )
        return {int(row[0]): VfStats(*map(int, row[1:])) for row in rows}

    def pass_traffic(self, adapter: str, index: int, traffic: VfStats) -> None:
        """Simulated traffic: add ``traffic`` to VF ``index``'s counters (the simulated
        NIC counts nothing by itself; tests and benchmarks say what flowed).
        HardwareError ``vf-not-found`` for an index out of range."""
        spec = self._spec(adapter)
        self._ensure_stats_columns()
        written = self._conn.execute(
            "UPDATE sim_vf SET "
            + ", ".join(f"{c} = {c} + ?" for c in _STATS_COLUMNS)
            + " WHERE adapter = ? AND idx = ?",
            (*traffic.counters(), adapter, index),
        )
        if not written.rowcount:
            raise self._no_vf(spec, index)

    # -- VfConfigurator -------------------------------------------------------

    def unsupported_vf_settings(self, adapter: str) -> frozenset[VfSetting]:
        cap = self._spec(adapter).adapter.sriov
        return cap.unsupported if cap else frozenset(VfSetting)

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        spec = self._spec(adapter)
        driver = spec.adapter.driver or "unknown"
        if settings.qos > 7 or not 0 <= settings.vlan <= 4095:
            raise HardwareError(
                "vf-setting-invalid",
                f"the {driver} driver refuses VLAN {settings.vlan} qos {settings.qos} "
                f"on VF {index} of {adapter}",
                "VLAN ids are 0-4095 and the 802.1p priority (qos) is 0-7",
                errno.EINVAL,
            )
        refused = [
            s for s in settings.changed_settings() if s in self.unsupported_vf_settings(adapter)
        ]
        if refused:
            raise UnsupportedVfSetting(driver, refused[0].label, errno=_REFUSAL_ERRNO[refused[0]])
        written = self._conn.execute(  # one statement: one commit, as one netlink request
            "UPDATE sim_vf SET mac = ?, vlan = ?, qos = ?, vlan_protocol = ?, spoof_check = ?,"
            " trust = ?, max_rate = ?, min_rate = ?, link_state = ?, pvlan = ?"
            " WHERE adapter = ? AND idx = ?",
            (
                settings.mac,
                settings.vlan,
                settings.qos,
                settings.vlan_protocol.value,
                int(settings.spoof_check),
                int(settings.trust),
                settings.max_rate,
                settings.min_rate,
                settings.link_state.value,
                pvlan_text(settings.pvlan),
                adapter,
                index,
            ),
        )
        if not written.rowcount:
            raise self._no_vf(spec, index)  # rtnetlink: vf >= num_vfs -> -EINVAL

    # -- helpers --------------------------------------------------------------

    def _has_runtime(self) -> bool:
        return (
            self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sim_vm_nic'"
            ).fetchone()
            is not None
        )

    def _spec(self, name: str) -> AdapterSpec:
        spec = self._by_name.get(name)
        if spec is None:
            raise NotFound(
                "unknown-adapter",
                f"adapter {name!r} does not exist on this host",
                f"adapters: {', '.join(sorted(self._by_name))} (iovctl adapter list)",
            )
        return spec

    def _no_vf(self, spec: AdapterSpec, index: int) -> HardwareError:
        return HardwareError(
            "vf-not-found",
            f"adapter {spec.adapter.name} has no VF {index}",
            "list the VFs with: iovctl vf list " + spec.adapter.name,
            errno.EINVAL,
        )

    def _create_vfs(self, adapter: str, count: int) -> None:
        self._conn.executemany(
            "INSERT INTO sim_vf (adapter, idx) VALUES (?, ?)", [(adapter, i) for i in range(count)]
        )

    def _vf(self, spec: AdapterSpec, index: int, row: tuple[Any, ...]) -> VirtualFunction:
        facts = self.spec.facts
        group = None
        if iommu_usable(facts):
            # With ACS each VF gets its own group; without, they share the PF's.
            base = self._group_base[spec.adapter.name]
            group = base + 1 + index if facts.acs else base
        mac, vlan, qos, proto, spoof, trust, max_rate, min_rate, link, pvlan = row
        settings = VfSettings(
            mac=str(mac),
            vlan=int(vlan),
            qos=int(qos),
            vlan_protocol=VlanProtocol(proto),
            spoof_check=bool(spoof),
            trust=bool(trust),
            max_rate=int(max_rate),
            min_rate=int(min_rate),
            link_state=LinkState(link),
            pvlan=pvlan_from_text(str(pvlan)),
        )
        return VirtualFunction(
            adapter=spec.adapter.name,
            index=index,
            pci_address=vf_pci_address(spec, index),
            netdev=f"{spec.adapter.name}v{index}",
            iommu_group=group,
            settings=settings,
        )


# What the driver answers for a refused setting (measured on igb, docs/reference/linux-sriov.md).
_REFUSAL_ERRNO = {
    VfSetting.LINK_STATE: errno.EOPNOTSUPP,
    VfSetting.MIN_RATE: errno.EINVAL,
    VfSetting.VLAN_PROTOCOL: errno.EPROTONOSUPPORT,
    VfSetting.QUERY_RSS: errno.EOPNOTSUPP,
} | {
    s: errno.EOPNOTSUPP
    for s in VfSetting
    if s
    not in (VfSetting.LINK_STATE, VfSetting.MIN_RATE, VfSetting.VLAN_PROTOCOL, VfSetting.QUERY_RSS)
}


def _with_count(adapter: Adapter, num_vfs: int) -> Adapter:
    return replace(adapter, num_vfs=num_vfs)


def set_pf_admin_up(conn: sqlite3.Connection, adapter: str, up: bool) -> None:
    """``ip link set PF up`` / ``down`` behind iovctl's back (the outside world's hands:
    tests); iovctl brings a PF up only when it enables VFs."""
    if not conn.execute(
        "UPDATE sim_adapter SET admin_up = ? WHERE name = ?", (int(up), adapter)
    ).rowcount:
        raise ValueError(f"no adapter {adapter}")
