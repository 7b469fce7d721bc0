"""EmulatedNic: SR-IOV NICs made of kernel devices, for hosts without SR-IOV hardware.

Implements ``HostHardware`` (ports). Each adapter of the emulation spec is built in
its own namespace ``iov-nic-<adapter>`` (the NIC's insides) like this::

    host namespace            iov-nic-<adapter>                        iov-world
    --------------            --------------------------------------   ------------------
    <adapter>  (PF) ══veth══ pf ─┐                                      w<adapter> ─ world
                                 ├─ esw (bridge: embedded switch) ─ uplink ══veth══ (bridge,
    <adapter>v0 (VF 0) ══veth══ vf0 ~tc~ vf0s ══veth══ vf0b ─┘                 10.77.0.1/16)
    <adapter>v1 (VF 1) ══veth══ vf1 ~tc~ vf1s ══veth══ vf1b ─┘

- ``vf<i>``: where VF i's frames enter the NIC; a tc mirred redirect hands them to
  ``vf<i>s`` (and back: ``vf<i>s`` ingress is redirected to ``vf<i>`` egress).
- ``vf<i>s``: its root qdisc (tbf) is the VF's **max rate** (a shaper, like the NIC).
- ``vf<i>b``: the VF's port on the embedded switch. Learning off, unknown unicast not
  flooded to it, a static sticky FDB entry for its **MAC** (the NIC's MAC filter). An
  nftables netdev ingress chain does the **spoof check** (drop frames whose source is
  not the VF's MAC) and, in VEPA mode, forwards every frame to the wire.
- Switch modes: **VEB** plain bridging between functions; **isolated** VF ports are
  isolated bridge ports (reach the wire and the PF, never each other); **VEPA** every
  function's frames are forwarded out the wire and the world's bridge reflects them
  (hairpin), with the NIC learning nothing from the wire.
- **Private VLANs**: a bridge-family chain on ``esw`` (``pvlan_nft``) drops what
  ``domain.pvlan`` denies between VF ports (each ``vf<i>b``'s alias says whose it is)
  and, by MAC, between VFs and the NICs behind the PF.

A netdev cannot be both a bridge port and a macvlan lower device, hence veth pairs and
a bridge, not macvlans: the PF must be a port of the host switch's bridge.

State lives in the devices: ``num_vfs`` in the alias of ``pf``, each VF's settings in
the alias of ``vf<i>``, both written after the devices they describe, so separate
commands agree and a killed command leaves at worst unused devices that the next
``set_num_vfs`` or cleanup removes. Settings no software enforcement exists for here
(VLAN, QoS, trust, min rate, link state, RSS query) are refused like a
real driver refuses them (:data:`UNSUPPORTED`).

Every method needs root. Must not import services, the CLI, the store or other adapters.
"""

from __future__ import annotations

import errno
import zlib
from dataclasses import dataclass

from iovctl.adapters.netns import names, pvlan_nft
from iovctl.adapters.netns.kernel import (
    NO_IPV6_ADDRESSES,
    Links,
    ensure_netns,
    kernel_error,
    netns_exists,
    run_tool,
    shape_transmit,
    tolerate,
)
from iovctl.adapters.netns.spec import EmulatedAdapterSpec, EmulationSpec, SwitchMode
from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import (
    SCRUBBED,
    Adapter,
    HostFacts,
    SriovCapability,
    VfSetting,
    VfSettings,
    VfStats,
    VirtualFunction,
)
from iovctl.domain.pvlan import as_text as pvlan_text
from iovctl.domain.pvlan import from_text as pvlan_from_text
from iovctl.errors import HardwareError, NotFound, UnsupportedVfSetting, not_simulated

DRIVER = "iovemu"
VF_DRIVER = "iovemu-vf"
V = VfSetting
#: What the emulated driver refuses: no 802.1Q module, nothing to enforce trust,
#: min rate, link state or RSS with. Private VLANs it enforces (untagged, by port and
#: MAC: ``pvlan_nft``).
UNSUPPORTED = frozenset(
    {V.VLAN, V.QOS, V.VLAN_PROTOCOL, V.TRUST, V.MIN_RATE, V.LINK_STATE, V.QUERY_RSS}
)
_REFUSAL_ERRNO = {V.MIN_RATE: errno.EINVAL, V.VLAN_PROTOCOL: errno.EPROTONOSUPPORT}

# linux/neighbour.h
NUD_NOARP = 0x40
NTF_MASTER = 0x04
NTF_STICKY = 0x40
TC_INGRESS = 0xFFFF0000
ETH_P_ALL = 0x0003

_ZERO_MAC = "00:00:00:00:00:00"
#: Ageing time of the embedded switch's FDB: one day, in centiseconds.
ESW_AGEING_CS = 86400 * 100


@dataclass(frozen=True)
class _Alias:
    """Settings of one VF as written in the alias of ``vf<i>``."""

    settings: VfSettings

    def encode(self) -> str:
        s = self.settings
        return (
            f"iovctl-vf mac={s.mac} spoof={int(s.spoof_check)} rate={s.max_rate}"
            f" pvlan={pvlan_text(s.pvlan)}"
        )

    @staticmethod
    def decode(text: str | None) -> VfSettings:
        fields = dict(p.split("=", 1) for p in (text or "").split()[1:] if "=" in p)
        try:
            return SCRUBBED.with_(
                mac=fields.get("mac", _ZERO_MAC),
                spoof_check=fields.get("spoof", "1") == "1",
                max_rate=int(fields.get("rate", "0")),
                pvlan=pvlan_from_text(fields.get("pvlan")),
            )
        except ValueError:
            return SCRUBBED


def _vf_index(ifname: str) -> int | None:
    """The VF index of a NIC-side VF device (``vf<i>``, ``vf<i>s``, ``vf<i>b``)."""
    if not ifname.startswith("vf"):
        return None
    digits = ifname[2:-1] if ifname[-1:] in ("s", "b") else ifname[2:]
    return int(digits) if digits.isdigit() else None


def _factory_mac(adapter: str, index: int) -> str:
    """The MAC a scrubbed VF netdev carries: locally administered, per VF, no tenant's."""
    h = zlib.crc32(f"{adapter}/{index}".encode())
    return f"06:{(h >> 24) & 0xFF:02x}:{(h >> 16) & 0xFF:02x}:{(h >> 8) & 0xFF:02x}:{h & 0xFF:02x}:{index & 0xFF:02x}"


class EmulatedNic:
    """Implements ``HostHardware`` with veth pairs, bridges, tc and nftables. Root."""

    def __init__(self, spec: EmulationSpec, links: Links | None = None) -> None:
        self.spec = spec
        self.backend_name = f"emulated:{spec.name}"
        self._links = links or Links()

    def close(self) -> None:
        self._links.close()

    # -- building the hardware ---------------------------------------------------

    def ensure(self) -> None:
        """Power the emulated NICs on: build what is missing, keep what exists, and
        repair what a command killed mid-operation left (:meth:`repair_vfs`)."""
        self._ensure_world()
        for a in self.spec.adapters:
            self.repair_vfs(a.name)

    def repair_vfs(self, adapter: str) -> dict[str, list[int]]:
        """Make the VF devices match the recorded VF count. Idempotent. Root.

        The count is written after the devices it counts, and a VF's alias after its
        devices: VF devices at or beyond the count are leftovers of a killed
        ``set_num_vfs`` (deleted); a VF below it that lacks a device or its alias
        was half made, or lost its host end with a VM namespace that was deleted
        with the VF inside (rebuilt, scrubbed: ``iovctl apply`` gives its tenant's
        settings back). Returns ``{"removed": [...], "rebuilt": [...]}``.
        """
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        count = self._read_num_vfs(ns)
        aliases = {
            str(m.get("IFLA_IFNAME")): m.get("IFLA_IFALIAS") for m in self._links(ns).get_links()
        }
        found = {i for i in (_vf_index(n) for n in aliases) if i is not None}
        removed = sorted(i for i in found if i >= count)
        rebuilt = [
            i
            for i in range(count)
            if not aliases.get(names.vf_port(i))
            or names.vf_shaper(i) not in aliases
            or names.vf_switch_port(i) not in aliases
        ]
        if not removed and not rebuilt:
            return {"removed": [], "rebuilt": []}
        chains = set(self._nft_vf_chains(ns))
        script = []
        for i in removed + rebuilt:
            for name in (names.vf_port(i), names.vf_shaper(i), names.vf_switch_port(i)):
                self._links.delete(name, ns)
            if names.vf_port(i) in chains:
                script.append(f"delete chain netdev {names.NFT_TABLE} {names.vf_port(i)}")
        for i in rebuilt:
            self._links.delete(names.vf_netdev(adapter, i))  # a stray host end, if any
            self._create_vf(spec, ns, i)
            script += self._nft_vf_chain(spec, i, SCRUBBED, create=True)
        if script:
            run_tool(["nft", "-f", "-"], ns, stdin="\n".join(script) + "\n")
        # Rebuilt VFs are scrubbed: in no private VLAN.
        pvlan_nft.sync_embedded_switch(self._links, ns, adapter)
        return {"removed": removed, "rebuilt": rebuilt}

    def _ensure_world(self) -> None:
        ns = self.spec.world_netns
        ensure_netns(ns, quiet_ipv6=True)
        links = self._links
        links.add("creating the world's bridge", ns, ifname=names.WORLD_BRIDGE, kind="bridge")
        index = links.index(names.WORLD_BRIDGE, ns)
        links.set("bringing the world's bridge up", ns, index=index, state="up")
        address = self.spec.world_address
        with tolerate(errno.EEXIST):
            links(ns).addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )

    def _ensure_adapter(self, a: EmulatedAdapterSpec) -> str:
        ns = names.nic_netns(a.name)
        if netns_exists(ns):
            pf = self._links.get(names.PF_PORT, ns)
            # The VF count is recorded last: without it the NIC was never finished
            # (a killed command), and what follows completes it (every step ensures).
            if pf is not None and str(pf.get("IFLA_IFALIAS") or "").startswith("iovctl-nic"):
                return ns
        self._ensure_world()
        ensure_netns(ns, quiet_ipv6=True)  # the NIC's insides send nothing of their own
        links = self._links
        world = self.spec.world_netns
        vepa = a.mode is SwitchMode.VEPA
        # Learnt MACs never age out while nothing moves (a NIC's filters do not either):
        # a quiet VM on a VF stays reachable; moves relearn at once.
        links.add(
            "creating the embedded switch",
            ns,
            ifname=names.ESW,
            kind="bridge",
            br_ageing_time=ESW_AGEING_CS,
        )
        esw = links.index(names.ESW, ns)
        links.set("starting the embedded switch", ns, index=esw, state="up")
        # The wire: uplink (NIC) <-> w<adapter> (a port of the world's bridge).
        links.add(
            f"wiring {a.name} to the world",
            ns,
            ifname=names.UPLINK_PORT,
            kind="veth",
            peer={"ifname": names.wire_world_ifname(a.name), "net_ns_fd": world},
        )
        far = links.index(names.wire_world_ifname(a.name), world)
        links.set(
            "plugging the wire into the world's bridge",
            world,
            index=far,
            master=links.index(names.WORLD_BRIDGE, world),
            state="up",
        )
        # VEPA: the adjacent bridge reflects frames back out the port they came in on.
        links.brport(
            "setting hairpin on the wire", names.wire_world_ifname(a.name), world, mode=int(vepa)
        )
        links.set(
            "plugging the wire into the embedded switch",
            ns,
            index=links.index(names.UPLINK_PORT, ns),
            master=esw,
            state="up",
        )
        # A NIC learns nothing from the wire in VEPA mode: reflected frames carry the
        # functions' own source MACs and would teach it that they live on the wire.
        links.brport(
            "setting learning on the uplink", names.UPLINK_PORT, ns, learning=int(not vepa)
        )
        # The PF: <adapter> in the host namespace <-> pf on the embedded switch.
        links.add(
            f"creating the PF of {a.name}",
            ns,
            ifname=names.PF_PORT,
            kind="veth",
            peer={"ifname": a.name, "net_ns_pid": 1},
        )
        links.set(
            "plugging the PF into the embedded switch",
            ns,
            index=links.index(names.PF_PORT, ns),
            master=esw,
            state="up",
        )
        host_pf = links.index(a.name)
        if host_pf is None:
            raise HardwareError("kernel-refused", f"the PF netdev {a.name} did not appear")
        links.set(
            f"bringing {a.name} up",
            index=host_pf,
            address=a.mac,
            state="up",
            IFLA_AF_SPEC=NO_IPV6_ADDRESSES,
        )
        nft = [f"table netdev {names.NFT_TABLE} {{}}"]
        if vepa:
            nft += [
                f"add chain netdev {names.NFT_TABLE} pf {{ type filter hook ingress device"
                f' "{names.PF_PORT}" priority 0; }}',
                f"flush chain netdev {names.NFT_TABLE} pf",  # a second run: one rule
                f'add rule netdev {names.NFT_TABLE} pf fwd to "{names.UPLINK_PORT}"',
            ]
        run_tool(["nft", "-f", "-"], ns, stdin="\n".join(nft) + "\n")
        self._write_num_vfs(ns, 0)
        return ns

    # -- PciBus --------------------------------------------------------------------

    def host_facts(self) -> HostFacts:
        # Emulated functions need no IOMMU: the host is as ready as the hardware.
        return HostFacts(kernel_cmdline="(emulated SR-IOV: kernel devices, no IOMMU needed)")

    def adapters(self) -> list[Adapter]:
        return sorted((self.adapter(a.name) for a in self.spec.adapters), key=lambda a: a.name)

    def adapter(self, name: str) -> Adapter:
        spec = self._spec(name)
        ns = self._ensure_adapter(spec)
        return Adapter(
            name=spec.name,
            pci_address=spec.pci_address,
            vendor_id="1af4",
            device_id="10ee",
            driver=DRIVER,
            model=f"iovctl emulated SR-IOV NIC ({spec.mode.value} embedded switch)",
            link_speed_mbps=spec.link_speed_mbps,
            numa_node=0,
            mac=spec.mac,
            sriov=SriovCapability(
                total_vfs=spec.total_vfs,
                queue_pairs=spec.total_vfs,
                max_queue_pairs_per_vf=1,
                vf_driver=VF_DRIVER,
                vf_device_id="10ef",
                unsupported=UNSUPPORTED,
            ),
            num_vfs=self._read_num_vfs(ns),
        )

    def set_num_vfs(self, adapter: str, count: int) -> None:
        """Create or destroy VFs with drivers/pci/iov.c's rules. Root."""
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        current = self._read_num_vfs(ns)
        if count < 0 or count > spec.total_vfs:
            # iov.c sriov_numvfs_store: num_vfs > sriov_totalvfs -> -ERANGE
            raise HardwareError(
                "vf-count-out-of-range",
                f"adapter {adapter} ({DRIVER}) supports at most {spec.total_vfs} VFs, not {count}",
                f"choose a VF count from 0 to {spec.total_vfs}",
                errno.ERANGE,
            )
        if count == current:
            return  # iov.c: same value is a no-op
        if current and count:
            # iov.c: "%d VFs already enabled. Disable before enabling %d VFs" -> -EBUSY
            raise HardwareError(
                "vf-count-busy",
                f"adapter {adapter} ({DRIVER}) already has {current} VFs enabled",
                "write 0 first, then the new count (iovctl adapter set does this for you)",
                errno.EBUSY,
            )
        if count == 0:
            self._write_num_vfs(ns, 0)  # first: a half-done removal reads as 0 VFs
            self._destroy_vfs(ns, adapter)
            return
        self._destroy_vfs(ns, adapter)  # leftovers of a killed command
        for index in range(count):
            self._create_vf(spec, ns, index)
        chains: list[str] = []
        for index in range(count):
            chains += self._nft_vf_chain(spec, index, SCRUBBED, create=True)
        run_tool(["nft", "-f", "-"], ns, stdin="\n".join(chains) + "\n")
        self._write_num_vfs(ns, count)

    def virtual_functions(self, adapter: str) -> list[VirtualFunction]:
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        count = self._read_num_vfs(ns)
        aliases = {
            str(m.get("IFLA_IFNAME")): m.get("IFLA_IFALIAS") for m in self._links(ns).get_links()
        }
        return [
            self._vf(spec, i, _Alias.decode(aliases.get(names.vf_port(i)))) for i in range(count)
        ]

    def virtual_function(self, adapter: str, index: int) -> VirtualFunction:
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        return self._vf(spec, index, self._read_settings(spec, ns, index))

    # -- VfCounters ----------------------------------------------------------------

    def vf_stats(self, adapter: str) -> dict[int, VfStats]:
        """The real counters of each VF's NIC-side device ``vf<i>`` (one link dump of
        the NIC's namespace), wherever the VF's netdev is: the host, a VM's namespace.
        ``vf<i>`` is the VF netdev's veth peer, so the VF receives what ``vf<i>``
        transmits and transmits what it receives. Root."""
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        count = self._read_num_vfs(ns)
        wanted = {names.vf_port(i): i for i in range(count)}
        out: dict[int, VfStats] = {}
        for message in self._links(ns).get_links():
            index = wanted.get(str(message.get("IFLA_IFNAME")))
            if index is None:
                continue
            c = message.get("IFLA_STATS64") or {}
            out[index] = VfStats(
                receive_bytes=int(c.get("tx_bytes", 0)),
                receive_packets=int(c.get("tx_packets", 0)),
                receive_dropped=int(c.get("tx_dropped", 0)),
                transmit_bytes=int(c.get("rx_bytes", 0)),
                transmit_packets=int(c.get("rx_packets", 0)),
                transmit_dropped=int(c.get("rx_dropped", 0)),
            )
        if len(out) != count:
            missing = sorted(set(range(count)) - set(out))
            raise HardwareError(
                "vf-info-incomplete",
                f"VF {missing[0]} of emulated adapter {adapter} has no device in {ns}",
                "iovctl apply rebuilds half-made VFs",
            )
        return out

    # -- VfConfigurator ------------------------------------------------------------

    def unsupported_vf_settings(self, adapter: str) -> frozenset[VfSetting]:
        self._spec(adapter)
        return UNSUPPORTED

    def bind_vf_driver(self, adapter: str, index: int, driver: VfDriver) -> str | None:
        """See VfDrivers.bind_vf_driver. An emulated VF is a veth: it is always a
        netdev of the host (its "net driver" is veth) and cannot go to vfio-pci."""
        vf = self.virtual_function(adapter, index)
        if driver is VfDriver.VFIO:
            raise HardwareError(
                "vfio-not-emulated",
                f"VF {index} of emulated adapter {adapter} ({vf.netdev}) is a veth, not a "
                "PCI function: vfio-pci cannot take it",
                "run VMs on emulated adapters with the namespace runtime (netns)",
            )
        return "veth"

    def refresh(self) -> None:
        """Nothing kept: every call asks the kernel."""

    def power_cycle(self) -> None:
        """Kernel devices are not power-cycled by iovctl: Conflict ``not-simulated``."""
        raise not_simulated(f"emulated:{self.spec.name}")

    def set_vf_settings(self, adapter: str, index: int, settings: VfSettings) -> None:
        """Program VF ``index``: MAC filter, spoof check, max rate. Idempotent. Root."""
        spec = self._spec(adapter)
        ns = self._ensure_adapter(spec)
        old = self._read_settings(spec, ns, index)  # raises vf-not-found
        if settings.qos > 7 or not 0 <= settings.vlan <= 4095:
            raise HardwareError(
                "vf-setting-invalid",
                f"the {DRIVER} driver refuses VLAN {settings.vlan} qos {settings.qos} "
                f"on VF {index} of {adapter}",
                "VLAN ids are 0-4095 and the 802.1p priority (qos) is 0-7",
                errno.EINVAL,
            )
        refused = [s for s in settings.changed_settings() if s in UNSUPPORTED]
        if refused:
            raise UnsupportedVfSetting(
                DRIVER, refused[0].label, errno=_REFUSAL_ERRNO.get(refused[0], errno.EOPNOTSUPP)
            )
        links = self._links
        port = links.index(names.vf_switch_port(index), ns)
        assert port is not None
        # A previous tenant's MAC must not stay behind on this port.
        if old.mac != settings.mac:
            self._forget_port_macs(ns, port)
        # The VF netdev adopts its MAC while it is in the host (a VF driver would).
        vf_dev = links.index(names.vf_netdev(adapter, index))
        if vf_dev is not None:
            mac = settings.mac if settings.mac != _ZERO_MAC else _factory_mac(adapter, index)
            links.set(f"setting the MAC of VF {index} of {adapter}", index=vf_dev, address=mac)
        chain = self._nft_vf_chain(spec, index, settings, create=False)
        run_tool(["nft", "-f", "-"], ns, stdin="\n".join(chain) + "\n")
        self._set_rate(ns, index, settings.max_rate)
        if spec.mode is SwitchMode.VEPA and settings.mac != _ZERO_MAC:
            # Nothing is learnt in VEPA mode (functions' frames bypass the switch on the
            # way out), so the MAC filter is a static entry; added last, because from
            # now on frames for this MAC go to the VF, in the VM or not.
            try:
                links(ns).fdb(
                    "replace",
                    ifindex=port,
                    lladdr=settings.mac,
                    state=NUD_NOARP,
                    flags=NTF_MASTER | NTF_STICKY,
                )
            except OSError as exc:
                raise kernel_error(
                    f"setting the MAC filter of VF {index} of {adapter}", exc
                ) from exc
        # The switch port says whose it is (MAC, private VLAN); a free VF's is no one's.
        links.set(
            f"setting the private VLAN of VF {index} of {adapter}",
            ns,
            index=port,
            IFLA_IFALIAS=""
            if settings.mac == _ZERO_MAC
            else pvlan_nft.alias(settings.mac, settings.pvlan),
        )
        pvlan_nft.sync_embedded_switch(links, ns, adapter, vf_changed=True)
        links.set(
            f"recording the settings of VF {index} of {adapter}",
            ns,
            index=links.index(names.vf_port(index), ns),
            IFLA_IFALIAS=_Alias(settings).encode(),
        )

    # -- helpers ------------------------------------------------------------------

    def _spec(self, name: str) -> EmulatedAdapterSpec:
        spec = self.spec.adapter(name)
        if spec is None:
            raise NotFound(
                "unknown-adapter",
                f"adapter {name!r} does not exist on this host",
                f"adapters: {', '.join(a.name for a in self.spec.adapters)} (iovctl adapter list)",
            )
        return spec

    def _read_num_vfs(self, ns: str) -> int:
        message = self._links.get(names.PF_PORT, ns)
        alias = str(message.get("IFLA_IFALIAS") or "") if message is not None else ""
        fields = dict(p.split("=", 1) for p in alias.split()[1:] if "=" in p)
        try:
            return int(fields.get("numvfs", "0"))
        except ValueError:
            return 0

    def _write_num_vfs(self, ns: str, count: int) -> None:
        self._links.set(
            "recording the VF count",
            ns,
            index=self._links.index(names.PF_PORT, ns),
            IFLA_IFALIAS=f"iovctl-nic numvfs={count}",
        )

    def _read_settings(self, spec: EmulatedAdapterSpec, ns: str, index: int) -> VfSettings:
        if not 0 <= index < self._read_num_vfs(ns):
            raise self._no_vf(spec, index)
        message = self._links.get(names.vf_port(index), ns)
        if message is None:
            raise self._no_vf(spec, index)
        return _Alias.decode(message.get("IFLA_IFALIAS"))

    def _no_vf(self, spec: EmulatedAdapterSpec, index: int) -> HardwareError:
        return HardwareError(
            "vf-not-found",
            f"adapter {spec.name} has no VF {index}",
            "list the VFs with: iovctl vf list " + spec.name,
            errno.EINVAL,
        )

    def _vf(self, spec: EmulatedAdapterSpec, index: int, settings: VfSettings) -> VirtualFunction:
        bus = int(spec.pci_address.split(":")[1], 16)
        rid = (bus << 8) + 1 + index  # VF offset 1, stride 1
        return VirtualFunction(
            adapter=spec.name,
            index=index,
            pci_address=f"0000:{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}",
            netdev=names.vf_netdev(spec.name, index),
            iommu_group=None,
            settings=settings,
        )

    def _create_vf(self, spec: EmulatedAdapterSpec, ns: str, index: int) -> None:
        links = self._links
        port, shaper, sw_port = (
            names.vf_port(index),
            names.vf_shaper(index),
            names.vf_switch_port(index),
        )
        links.add(
            f"creating VF {index} of {spec.name}",
            ns,
            ifname=port,
            kind="veth",
            peer={"ifname": names.vf_netdev(spec.name, index), "net_ns_pid": 1},
        )
        links.add(
            f"creating the switch port of VF {index}",
            ns,
            ifname=shaper,
            kind="veth",
            peer={"ifname": sw_port},
        )
        links.set(
            f"plugging VF {index} into the embedded switch",
            ns,
            index=links.index(sw_port, ns),
            master=links.index(names.ESW, ns),
            state="up",
        )
        links.brport(
            f"configuring the switch port of VF {index}",
            sw_port,
            ns,
            # VEB/isolated: the switch learns the VF's MAC from its frames (the spoof
            # check makes that the VF's own MAC) and relearns it at once when the VM
            # announces a path switch. VEPA: static entries instead (see settings).
            learning=int(spec.mode is not SwitchMode.VEPA),
            unicast_flood=0,
            isolated=int(spec.mode is not SwitchMode.VEB),
        )
        ipr = links(ns)
        a, s = links.index(port, ns), links.index(shaper, ns)
        for src, dst in ((a, s), (s, a)):
            ipr.link("set", index=src, state="up")
            try:
                ipr.tc("add", "ingress", src, TC_INGRESS)
                ipr.tc(
                    "add-filter",
                    "u32",
                    src,
                    parent=TC_INGRESS,
                    protocol=ETH_P_ALL,
                    prio=1,
                    target=0x10001,
                    keys=["0x0/0x0+0"],
                    action={
                        "kind": "mirred",
                        "direction": "egress",
                        "action": "redirect",
                        "ifindex": dst,
                    },
                )
            except OSError as exc:
                raise kernel_error(f"joining the halves of VF {index}", exc) from exc
        links.set(
            f"recording the settings of VF {index}",
            ns,
            index=a,
            IFLA_IFALIAS=_Alias(SCRUBBED).encode(),
        )
        vf_dev = links.index(names.vf_netdev(spec.name, index))
        if vf_dev is not None:
            links.set(
                f"setting the MAC of VF {index}",
                index=vf_dev,
                address=_factory_mac(spec.name, index),
                IFLA_AF_SPEC=NO_IPV6_ADDRESSES,
            )

    def _destroy_vfs(self, ns: str, adapter: str) -> None:
        """Delete every VF device in the NIC (their host/VM ends go with them)."""
        links = self._links
        for name in links.names(ns):
            if _vf_index(name) is not None:
                links.delete(name, ns)
        # Leaves only the base table (and the PF chain in VEPA mode).
        script = [
            f"delete chain netdev {names.NFT_TABLE} {chain}" for chain in self._nft_vf_chains(ns)
        ]
        if script:
            run_tool(["nft", "-f", "-"], ns, stdin="\n".join(script) + "\n")
        pvlan_nft.sync_embedded_switch(self._links, ns, adapter)  # no VF ports left

    def _nft_vf_chains(self, ns: str) -> list[str]:
        """Names of the VF chains (``vf<i>``) in the NIC's nftables table."""
        listing = run_tool(["nft", "list", "chains", "netdev"], ns)
        return [
            line.split()[1] for line in listing.splitlines() if line.strip().startswith("chain vf")
        ]

    def _forget_port_macs(self, ns: str, port: int) -> None:
        """Remove every learnt or static FDB entry that points at switch port ``port``."""
        ipr = self._links(ns)
        for entry in ipr.fdb("dump"):
            if entry["ifindex"] != port or entry.get("state") & 0x80:  # NUD_PERMANENT: own
                continue
            with tolerate(errno.ENOENT):
                ipr.fdb(
                    "del",
                    ifindex=port,
                    lladdr=entry.get("NDA_LLADDR"),
                    state=entry.get("state"),
                    flags=NTF_MASTER,
                )

    def _nft_vf_chain(
        self, spec: EmulatedAdapterSpec, index: int, settings: VfSettings, *, create: bool
    ) -> list[str]:
        """nft commands that make chain ``vf<i>`` hold exactly what ``settings`` need."""
        t, chain = names.NFT_TABLE, names.vf_port(index)
        out = []
        if create:
            out.append(
                f"add chain netdev {t} {chain} {{ type filter hook ingress device"
                f' "{names.vf_switch_port(index)}" priority 0; }}'
            )
        out.append(f"flush chain netdev {t} {chain}")
        if settings.spoof_check:
            out.append(f"add rule netdev {t} {chain} ether saddr != {settings.mac} counter drop")
        if spec.mode is SwitchMode.VEPA:
            out.append(f'add rule netdev {t} {chain} fwd to "{names.UPLINK_PORT}"')
        return out

    def _set_rate(self, ns: str, index: int, mbps: int) -> None:
        shaper = self._links.index(names.vf_shaper(index), ns)
        assert shaper is not None
        shape_transmit(self._links(ns), shaper, mbps, f"setting the max rate of VF {index}")
