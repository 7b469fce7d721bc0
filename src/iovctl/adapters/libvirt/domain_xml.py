"""libvirt domain XML for iovctl: build the failover pair's devices and a new q35
domain, read back what a domain holds (machine type, free ``pcie-root-port``s, its
devices, iovctl's ownership record). Pure: strings in, strings or values out; no
libvirt import, no I/O.

iovctl's ownership lives in the domain's ``<metadata>``, in its own namespace
(:data:`NAMESPACE`), so that ``virsh dumpxml`` shows it and it survives iovctl's state
directory::

    <metadata>
      <iovctl:vm xmlns:iovctl="..." origin="defined|adopted">
        <iovctl:root-port index="9"/>               reserved, not yet given to a NIC
        <iovctl:nic name="nic0" mac="52:54:..." switch="sw0" alias="ua-iovctl-nic0"
                    vf-alias="ua-iovctl-nic0-vf" vf-port="10"/>
      </iovctl:vm>
    </metadata>

``vf-port`` is the index of the ``pcie-root-port`` set aside for the NIC's VF: the
VF is hot-plugged there (an explicit address), so that no other device takes it.
"""

from __future__ import annotations

import enum
import re
import zlib
from dataclasses import dataclass, field, replace
from xml.etree import ElementTree as ET

from iovctl.domain.model import VmTemplate
from iovctl.errors import InvalidInput

#: iovctl's XML namespace in a domain's <metadata> (an identifier, never fetched).
NAMESPACE = "https://iovctl.dev/xmlns/libvirt-domain/1"
#: The prefix libvirt shows it under.
PREFIX = "iovctl"
#: Spare hot-plug root ports of a domain iovctl defines: each NIC needs two while it
#: runs (its virtio half, its VF), so eight let four NICs come and go live.
SPARE_ROOT_PORTS = 8

_USER_ALIAS_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_PCI_ADDRESS = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")

ET.register_namespace(PREFIX, NAMESPACE)


class Origin(enum.Enum):
    """How a domain became iovctl's."""

    #: ``vm create``: iovctl defined it and undefines it on ``vm delete``.
    DEFINED = "defined"
    #: ``vm import``: the admin's domain; iovctl removes only what it added.
    ADOPTED = "adopted"


@dataclass(frozen=True)
class OwnedNic:
    """A NIC iovctl added to a domain: its virtio half (and later VF half) aliases."""

    name: str
    mac: str
    #: The switch whose bridge the virtio half is on.
    switch: str
    #: The virtio half's user alias (``ua-...``), the pair's persistent member.
    alias: str
    #: The VF half's alias, while hot-plugged and after.
    vf_alias: str
    #: Index of the pcie-root-port reserved for the NIC's VF; None when none could be.
    vf_port: int | None = None


@dataclass(frozen=True)
class Ownership:
    """What iovctl holds of a domain (its ``<metadata>`` record)."""

    origin: Origin
    #: Root ports reserved for VFs and not yet given to a NIC.
    spare_ports: tuple[int, ...] = ()
    nics: tuple[OwnedNic, ...] = ()

    def nic(self, name: str) -> OwnedNic | None:
        return next((n for n in self.nics if n.name == name), None)

    def reserved_ports(self) -> frozenset[int]:
        ports = {n.vf_port for n in self.nics if n.vf_port is not None}
        return frozenset(ports | set(self.spare_ports))

    def with_nic(self, nic: OwnedNic) -> Ownership:
        others = tuple(n for n in self.nics if n.name != nic.name)
        spare = tuple(p for p in self.spare_ports if p != nic.vf_port)
        return replace(self, nics=(*others, nic), spare_ports=spare)

    def without_nic(self, name: str) -> Ownership:
        return replace(self, nics=tuple(n for n in self.nics if n.name != name))


@dataclass(frozen=True)
class Hostdev:
    """A PCI device passed through to the domain (plain ``<hostdev>`` or an
    ``<interface type='hostdev'>``)."""

    pci_address: str
    alias: str | None


@dataclass(frozen=True)
class Interface:
    """An ``<interface>`` with an alias: its MAC, bridge and (live) host tap."""

    mac: str
    bridge: str | None
    target: str | None


@dataclass(frozen=True)
class DomainView:
    """What iovctl reads of one domain XML (live or persistent)."""

    name: str
    domain_type: str
    machine: str
    #: Hot-plug capable pcie-root-port indices.
    root_ports: tuple[int, ...]
    #: Buses (controller indices) a device sits on.
    used_buses: frozenset[int]
    #: Every device alias the XML shows (user and libvirt's own).
    aliases: frozenset[str]
    hostdevs: tuple[Hostdev, ...]
    #: Interfaces by alias.
    interfaces: dict[str, Interface] = field(default_factory=dict)
    ownership: Ownership | None = None

    @property
    def q35(self) -> bool:
        return is_q35(self.machine)

    def free_root_ports(self) -> list[int]:
        """Hot-plug root ports no device sits on, reserved or not, in index order."""
        return [p for p in self.root_ports if p not in self.used_buses]

    def unreserved_free_ports(self) -> list[int]:
        """Free root ports iovctl has not set aside for a VF."""
        reserved = self.ownership.reserved_ports() if self.ownership else frozenset()
        return [p for p in self.free_root_ports() if p not in reserved]


def is_q35(machine: str) -> bool:
    """``q35`` or a versioned ``pc-q35-X.Y`` machine type."""
    return machine == "q35" or machine.startswith("pc-q35-")


def user_alias(nic: str, suffix: str = "") -> str:
    """The ``ua-`` alias of a NIC's half: libvirt allows ``[A-Za-z0-9_-]`` after the
    prefix; a NIC name with other characters (``.``) gets a checksum so that two
    names never share one alias."""
    clean = _USER_ALIAS_CHARS.sub("_", nic)
    if clean != nic:
        clean = f"{clean}-{zlib.crc32(nic.encode()):08x}"
    return f"ua-iovctl-{clean}{suffix}"


def pair_aliases(nic: str) -> tuple[str, str]:
    """(virtio half alias, VF half alias) of a NIC."""
    return user_alias(nic), user_alias(nic, "-vf")


# -- building -------------------------------------------------------------------


def new_domain(
    name: str,
    template: VmTemplate,
    *,
    domain_type: str,
    console_log: str | None = None,
    spare_root_ports: int = SPARE_ROOT_PORTS,
) -> str:
    """A q35 domain from ``template`` with spare pcie-root-ports and iovctl's record
    (``defined``). Raises InvalidInput for a template that cannot boot."""
    check_template(name, template)
    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = str(template.memory_mib)
    ET.SubElement(root, "vcpu").text = str(template.vcpus)
    os_ = ET.SubElement(root, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
    if template.kernel is not None:
        ET.SubElement(os_, "kernel").text = template.kernel
        if template.initrd is not None:
            ET.SubElement(os_, "initrd").text = template.initrd
        if template.cmdline is not None:
            ET.SubElement(os_, "cmdline").text = template.cmdline
    else:
        ET.SubElement(os_, "boot", dev="hd")
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    if template.disk is not None:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        kind = "qcow2" if template.disk.endswith(".qcow2") else "raw"
        ET.SubElement(disk, "driver", name="qemu", type=kind)
        ET.SubElement(disk, "source", file=template.disk)
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
    ET.SubElement(devices, "controller", type="pci", index="0", model="pcie-root")
    # No USB controller: libvirt would put one on the first root port.
    ET.SubElement(devices, "controller", type="usb", model="none")
    # Indices are libvirt's: it numbers the ports it adds after these.
    for index in range(1, spare_root_ports + 1):
        ET.SubElement(devices, "controller", type="pci", index=str(index), model="pcie-root-port")
    serial = ET.SubElement(devices, "serial", type="pty")
    if console_log is not None:
        ET.SubElement(serial, "log", file=console_log, append="off")
    ET.SubElement(devices, "console", type="pty")
    ET.SubElement(devices, "memballoon", model="none")
    _set_ownership(root, Ownership(Origin.DEFINED))
    return ET.tostring(root, encoding="unicode")


def check_template(name: str, template: VmTemplate) -> None:
    """Raises InvalidInput naming the VM for a template that cannot boot."""
    problem = None
    if template.disk is None and template.kernel is None:
        problem = "neither a disk image nor a kernel to boot"
    elif template.disk is not None and template.kernel is not None:
        problem = "both a disk image and a kernel (choose one way to boot)"
    elif template.kernel is None and (template.initrd or template.cmdline):
        problem = "an initrd or a kernel command line without a kernel"
    elif template.memory_mib < 64 or template.vcpus < 1:
        problem = f"{template.memory_mib} MiB and {template.vcpus} vCPUs (at least 64 MiB, 1 vCPU)"
    if problem is not None:
        raise InvalidInput(
            "bad-vm-template",
            f"VM {name!r} has {problem}",
            "give --disk IMAGE, or --kernel FILE (with --initrd, --cmdline)",
        )


def virtio_interface(alias: str, mac: str, bridge: str, port: int | None) -> str:
    """The pair's persistent half: virtio-net on the switch's bridge, teamed."""
    iface = ET.Element("interface", type="bridge")
    ET.SubElement(iface, "mac", address=mac)
    ET.SubElement(iface, "source", bridge=bridge)
    ET.SubElement(iface, "model", type="virtio")
    ET.SubElement(iface, "teaming", type="persistent")
    ET.SubElement(iface, "alias", name=alias)
    if port is not None:
        _slot_on(iface, port)
    return ET.tostring(iface, encoding="unicode")


def vf_hostdev(alias: str, persistent: str, pci_address: str, port: int | None) -> str:
    """The pair's transient half: the VF as a plain ``<hostdev managed='no'>``
    (iovctl binds it to vfio-pci and sets its MAC/VLAN on the PF itself)."""
    dev = ET.Element("hostdev", mode="subsystem", type="pci", managed="no")
    source = ET.SubElement(dev, "source")
    ET.SubElement(source, "address", _pci_fields(pci_address))
    ET.SubElement(dev, "alias", name=alias)
    if port is not None:
        _slot_on(dev, port)
    ET.SubElement(dev, "teaming", type="transient", persistent=persistent)
    return ET.tostring(dev, encoding="unicode")


def with_device(domain: str, device: str) -> str:
    """``domain`` with ``device`` (an XML string) added to its devices."""
    root = ET.fromstring(domain)
    _devices(root).append(ET.fromstring(device))
    return ET.tostring(root, encoding="unicode")


def without_alias(domain: str, alias: str) -> str:
    """``domain`` without the device carrying ``alias`` (unchanged if none does)."""
    root = ET.fromstring(domain)
    devices = _devices(root)
    for dev in list(devices):
        found = dev.find("alias")
        if found is not None and found.get("name") == alias:
            devices.remove(dev)
    return ET.tostring(root, encoding="unicode")


def with_root_port(domain: str) -> tuple[str, int]:
    """``domain`` with one more pcie-root-port (for the next boot); its index."""
    root = ET.fromstring(domain)
    devices = _devices(root)
    used = [int(c.get("index", "0")) for c in devices.iter("controller") if c.get("type") == "pci"]
    index = max(used, default=0) + 1
    ET.SubElement(devices, "controller", type="pci", index=str(index), model="pcie-root-port")
    return ET.tostring(root, encoding="unicode"), index


def with_ownership(domain: str, ownership: Ownership | None) -> str:
    """``domain`` with iovctl's record replaced (removed when ``ownership`` is None)."""
    root = ET.fromstring(domain)
    _set_ownership(root, ownership)
    return ET.tostring(root, encoding="unicode")


def bus_of(domain: str, alias: str) -> int | None:
    """The bus (root port index) the device with ``alias`` sits on in ``domain``."""
    for dev in _devices(ET.fromstring(domain)):
        found, address = dev.find("alias"), dev.find("address")
        if found is not None and found.get("name") == alias and address is not None:
            return int(address.get("bus", "0"), 0)
    return None


def pci_address_of(fields: dict[str, str]) -> str:
    """``0000:03:10.1`` from libvirt's domain/bus/slot/function attributes (hex)."""
    d, b, s, f = (int(fields.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function"))
    return f"{d:04x}:{b:02x}:{s:02x}.{f:x}"


# -- reading --------------------------------------------------------------------


def parse_domain(xml: str) -> DomainView:
    """The view of a domain XML; raises InvalidInput for something that is not one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidInput("bad-domain-xml", f"libvirt gave unreadable XML: {exc}") from exc
    if root.tag != "domain":
        raise InvalidInput("bad-domain-xml", f"expected <domain>, got <{root.tag}>")
    os_type = root.find("os/type")
    devices = root.find("devices")
    if devices is None:
        devices = ET.Element("devices")
    root_ports = []
    for c in devices.findall("controller"):
        if c.get("type") == "pci" and c.get("model") == "pcie-root-port":
            target = c.find("target")
            if target is None or target.get("hotplug", "on") != "off":
                root_ports.append(int(c.get("index", "0")))
    used = set()
    for dev in devices:
        address = dev.find("address")
        if address is not None and address.get("type") == "pci":
            used.add(int(address.get("bus", "0"), 0))
    aliases = frozenset(
        str(a.get("name")) for a in devices.iter("alias") if a.get("name") is not None
    )
    hostdevs = []
    interfaces = {}
    for dev in devices:
        alias_el = dev.find("alias")
        alias = None if alias_el is None else alias_el.get("name")
        if dev.tag == "interface" and alias is not None:
            mac, source, target = dev.find("mac"), dev.find("source"), dev.find("target")
            interfaces[alias] = Interface(
                mac="" if mac is None else str(mac.get("address", "")),
                bridge=None if source is None else source.get("bridge"),
                target=None if target is None else target.get("dev"),
            )
        pci = _hostdev_source(dev)
        if pci is not None:
            hostdevs.append(Hostdev(pci, alias))
    return DomainView(
        name=str(root.findtext("name", "")),
        domain_type=str(root.get("type", "")),
        machine="" if os_type is None else str(os_type.get("machine", "")),
        root_ports=tuple(sorted(root_ports)),
        used_buses=frozenset(used),
        aliases=aliases,
        hostdevs=tuple(hostdevs),
        interfaces=interfaces,
        ownership=_ownership(root),
    )


def hostdev_pools(network_xml: str) -> tuple[list[str], list[str]]:
    """A libvirt network's hostdev pool: (its PF netdevs, its VFs' PCI addresses);
    two empty lists for a network of another kind."""
    root = ET.fromstring(network_xml)
    forward = root.find("forward")
    if forward is None or forward.get("mode") != "hostdev":
        return [], []
    pfs = [str(pf.get("dev")) for pf in forward.findall("pf") if pf.get("dev")]
    vfs = [
        pci_address_of(dict(a.attrib))
        for a in forward.findall("address")
        if a.get("type", "pci") == "pci"
    ]
    return pfs, vfs


def _hostdev_source(dev: ET.Element) -> str | None:
    kind = (dev.tag, dev.get("type"))
    if kind not in (("hostdev", "pci"), ("interface", "hostdev")):
        return None
    address = dev.find("source/address")
    if address is None:
        return None
    return pci_address_of(dict(address.attrib))


def _ownership(root: ET.Element) -> Ownership | None:
    record = root.find(f"metadata/{{{NAMESPACE}}}vm")
    if record is None:
        return None
    try:
        origin = Origin(record.get("origin", ""))
    except ValueError:
        origin = Origin.ADOPTED  # never undefine what iovctl cannot prove it made
    spare = tuple(
        int(p.get("index", "-1")) for p in record.findall(f"{{{NAMESPACE}}}root-port")
    )
    nics = []
    for n in record.findall(f"{{{NAMESPACE}}}nic"):
        name = str(n.get("name", ""))
        alias, vf_alias = pair_aliases(name)
        port = n.get("vf-port")
        nics.append(
            OwnedNic(
                name=name,
                mac=str(n.get("mac", "")),
                switch=str(n.get("switch", "")),
                alias=str(n.get("alias", alias)),
                vf_alias=str(n.get("vf-alias", vf_alias)),
                vf_port=int(port) if port is not None else None,
            )
        )
    return Ownership(origin, tuple(p for p in spare if p >= 0), tuple(nics))


def ownership_element(ownership: Ownership) -> ET.Element:
    record = ET.Element(f"{{{NAMESPACE}}}vm", origin=ownership.origin.value)
    for port in ownership.spare_ports:
        ET.SubElement(record, f"{{{NAMESPACE}}}root-port", index=str(port))
    for nic in ownership.nics:
        attrs = {
            "name": nic.name,
            "mac": nic.mac,
            "switch": nic.switch,
            "alias": nic.alias,
            "vf-alias": nic.vf_alias,
        }
        if nic.vf_port is not None:
            attrs["vf-port"] = str(nic.vf_port)
        ET.SubElement(record, f"{{{NAMESPACE}}}nic", attrs)
    return record


def _set_ownership(root: ET.Element, ownership: Ownership | None) -> None:
    metadata = root.find("metadata")
    if metadata is not None:
        for old in metadata.findall(f"{{{NAMESPACE}}}vm"):
            metadata.remove(old)
    if ownership is None:
        if metadata is not None and len(metadata) == 0:
            root.remove(metadata)
        return
    if metadata is None:
        metadata = ET.Element("metadata")
        root.insert(1, metadata)  # after <name>, where libvirt puts it
    metadata.append(ownership_element(ownership))


def _devices(root: ET.Element) -> ET.Element:
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    return devices


def _slot_on(device: ET.Element, port: int) -> None:
    """Slot 0 of root port ``port`` (a root port has one slot)."""
    ET.SubElement(
        device,
        "address",
        type="pci",
        domain="0x0000",
        bus=f"0x{port:02x}",
        slot="0x00",
        function="0x0",
    )


def _pci_fields(pci_address: str) -> dict[str, str]:
    match = _PCI_ADDRESS.match(pci_address)
    if match is None:
        raise InvalidInput("bad-pci-address", f"{pci_address!r} is not a PCI address")
    d, b, s, f = match.groups()
    return {"domain": f"0x{d}", "bus": f"0x{b}", "slot": f"0x{s}", "function": f"0x{f}"}
