"""Domain objects: the Hyper-V SR-IOV model in Linux terms.

Field names are the snake_case forms of Hyper-V's properties where one exists
(``IovWeight`` -> ``iov_weight``); they are also the keys of the ``-o json``
contract. Pure data: no I/O, no imports beyond the standard library.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class SriovSupport(enum.StrEnum):
    """Per-adapter verdict, like ``Get-NetAdapterSriov`` ``SriovSupport``."""

    SUPPORTED = "supported"
    NOT_CAPABLE = "not-capable"
    MISSING_PF_DRIVER = "missing-pf-driver"
    FIRMWARE_DISABLED = "firmware-disabled"
    NO_IOMMU_SUPPORT = "no-iommu-support"
    MISSING_ACS = "missing-acs"
    NO_BUS_RESOURCES = "no-bus-resources"
    NO_VF_BAR_SPACE = "no-vf-bar-space"


class VfSetting(enum.StrEnum):
    """A per-VF setting a PF driver may or may not support (netlink IFLA_VF_*)."""

    MAC = "mac"
    VLAN = "vlan"
    QOS = "qos"
    VLAN_PROTOCOL = "vlan-protocol"  # 802.1ad (QinQ) on the VF
    SPOOF_CHECK = "spoof-check"
    TRUST = "trust"
    MAX_RATE = "max-rate"
    MIN_RATE = "min-rate"
    LINK_STATE = "link-state"
    QUERY_RSS = "query-rss"
    PVLAN = "pvlan"  # private VLAN isolation between VFs in the NIC's embedded switch

    @property
    def label(self) -> str:
        """Human words for messages: 'the igb driver does not support link state'."""
        return _SETTING_LABELS[self]


_SETTING_LABELS = {
    VfSetting.MAC: "MAC address",
    VfSetting.VLAN: "VLAN",
    VfSetting.QOS: "VLAN priority (qos)",
    VfSetting.VLAN_PROTOCOL: "802.1ad VLAN protocol",
    VfSetting.SPOOF_CHECK: "spoof check",
    VfSetting.TRUST: "trust",
    VfSetting.MAX_RATE: "max rate",
    VfSetting.MIN_RATE: "min rate",
    VfSetting.LINK_STATE: "link state",
    VfSetting.QUERY_RSS: "RSS query",
    VfSetting.PVLAN: "private VLAN isolation",
}


class LinkState(enum.StrEnum):
    AUTO = "auto"
    ENABLE = "enable"
    DISABLE = "disable"


class VlanProtocol(enum.StrEnum):
    DOT1Q = "802.1Q"
    DOT1AD = "802.1ad"


class PvlanMode(enum.StrEnum):
    ISOLATED = "isolated"
    COMMUNITY = "community"
    PROMISCUOUS = "promiscuous"


class VmState(enum.StrEnum):
    OFF = "off"
    RUNNING = "running"


class NicStatus(enum.StrEnum):
    """``Status`` of a VM network adapter.

    ``ok``: on the path it asked for; ``degraded``: wants a VF but runs on the
    software path (``status_description`` says why); ``off``: the VM is not running.
    """

    OK = "ok"
    DEGRADED = "degraded"
    OFF = "off"


class EventLevel(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Reason:
    """One unmet prerequisite: stable ``code``, Hyper-V-like ``message``, Linux ``hint``."""

    code: str
    message: str
    hint: str


@dataclass(frozen=True)
class HostFacts:
    """What readiness is judged on; read from the machine or a host spec.

    A fact typed ``bool | None`` is None when it could not be checked (not root,
    no IOMMU to ask, no signal Linux exposes): unverified, never a default shown
    as a fact. Rules treat None as "not known to be missing" and say so.
    """

    #: CPU vendor ("intel", "amd", ...), informational.
    cpu_vendor: str = "intel"
    #: VT-x / AMD-V present and enabled (cpu flag vmx / svm).
    cpu_virtualization: bool = True
    #: Second-level address translation (EPT / NPT).
    cpu_slat: bool = True
    #: The firmware describes an IOMMU (ACPI DMAR / IVRS table).
    iommu_present: bool = True
    #: The kernel uses it (iommu groups exist): off without intel_iommu=on etc.
    iommu_enabled: bool = True
    dma_remapping: bool = True
    #: None: no IOMMU unit to ask, or it does not say.
    interrupt_remapping: bool | None = True
    #: "SR-IOV Global Enable" in BIOS/UEFI. None: no SR-IOV PF shows it either way.
    firmware_sriov_enabled: bool | None = True
    #: Firmware grants the OS native PCIe control (ACPI _OSC); "pci=nomsi"-era BIOSes don't.
    pcie_native_control: bool | None = True
    #: Root ports carry Access Control Services. None: config space unreadable (not root).
    acs: bool | None = True
    #: Kernel built with CONFIG_PCI_IOV. None: no SR-IOV device and no kernel config.
    kernel_pci_iov: bool | None = True
    #: vfio-pci module available (needed to give a VF to a VM).
    vfio_pci: bool = True
    kernel_cmdline: str = ""
    #: This host is itself a virtual machine (cpu flag ``hypervisor``): what a BIOS
    #: setting fixes on metal is a setting of the hypervisor here.
    virtual_machine: bool = False


@dataclass(frozen=True)
class SriovCapability:
    """What an SR-IOV capable PF offers, and which VF settings its driver refuses."""

    total_vfs: int
    #: Queue pairs the PF can hand to VFs (switch ``iov_queue_pair_count``).
    queue_pairs: int
    max_queue_pairs_per_vf: int
    vf_driver: str
    vf_device_id: str = ""
    unsupported: frozenset[VfSetting] = frozenset()
    #: Enough bus numbers for the VFs (NoBusResources when false).
    bus_resources: bool = True
    #: The BIOS left MMIO space for the VF BARs (NoVfBarSpace when false).
    vf_bar_space: bool = True


@dataclass(frozen=True)
class Adapter:
    """A physical network adapter (PCI function); with ``sriov`` set, an SR-IOV PF."""

    name: str
    pci_address: str
    vendor_id: str
    device_id: str
    #: Bound PF driver, None when no driver is bound.
    driver: str | None
    model: str
    #: Mb/s; None when unknown (link down, no netdev, a driver that reports -1).
    link_speed_mbps: int | None
    numa_node: int
    mac: str
    sriov: SriovCapability | None = None
    #: VFs currently enabled (sriov_numvfs).
    num_vfs: int = 0

    @property
    def sriov_enabled(self) -> bool:
        return self.num_vfs > 0


@dataclass(frozen=True)
class PrivateVlan:
    """Private VLAN membership of a NIC (Hyper-V ``Set-VMNetworkAdapterVlan``)."""

    mode: PvlanMode
    primary_vlan: int
    #: Secondary VLAN (isolated/community); promiscuous ports list none.
    secondary_vlan: int | None = None


@dataclass(frozen=True)
class VfSettings:
    """The settings of one VF as the PF driver holds them. Defaults = scrubbed."""

    mac: str = "00:00:00:00:00:00"
    vlan: int = 0
    qos: int = 0
    vlan_protocol: VlanProtocol = VlanProtocol.DOT1Q
    spoof_check: bool = True
    trust: bool = False
    #: Mbit/s, 0 = unlimited.
    max_rate: int = 0
    min_rate: int = 0
    link_state: LinkState = LinkState.AUTO
    #: Private VLAN membership, enforced by the NIC's embedded switch between its VFs
    #: (no IFLA_VF_* attribute exists for it: only an emulated NIC does this).
    pvlan: PrivateVlan | None = None

    def changed_settings(self, base: VfSettings | None = None) -> list[VfSetting]:
        """The settings that differ from ``base`` (default: scrubbed)."""
        base = base or SCRUBBED
        out = []
        for attr, setting in _ATTR_SETTING.items():
            if getattr(self, attr) != getattr(base, attr):
                out.append(setting)
        return out

    def with_(self, **changes: object) -> VfSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


_ATTR_SETTING = {
    "mac": VfSetting.MAC,
    "vlan": VfSetting.VLAN,
    "qos": VfSetting.QOS,
    "vlan_protocol": VfSetting.VLAN_PROTOCOL,
    "spoof_check": VfSetting.SPOOF_CHECK,
    "trust": VfSetting.TRUST,
    "max_rate": VfSetting.MAX_RATE,
    "min_rate": VfSetting.MIN_RATE,
    "link_state": VfSetting.LINK_STATE,
    "pvlan": VfSetting.PVLAN,
}

#: A VF with nothing of any tenant on it.
SCRUBBED = VfSettings()


@dataclass(frozen=True)
class VirtualFunction:
    """One VF of a PF, as the bus reports it."""

    adapter: str
    index: int
    pci_address: str
    #: Net device name while bound to its net driver; None when unbound or on vfio-pci.
    netdev: str | None = None
    iommu_group: int | None = None
    settings: VfSettings = field(default_factory=VfSettings)


@dataclass(frozen=True)
class VfStats:
    """Traffic counters of one VF, as the PF counts them, seen from the VF: ``receive``
    is what the NIC delivered to the VF (to its VM), ``transmit`` what the VF sent.

    Counters only grow while the VF exists; a VF count change makes new VFs that
    start from zero (the only reset). Drivers that count nothing report zeros.
    """

    receive_bytes: int = 0
    receive_packets: int = 0
    receive_dropped: int = 0
    transmit_bytes: int = 0
    transmit_packets: int = 0
    transmit_dropped: int = 0

    def counters(self) -> tuple[int, ...]:
        """Every counter, in field order (to compare two reads counter by counter)."""
        return (
            self.receive_bytes,
            self.receive_packets,
            self.receive_dropped,
            self.transmit_bytes,
            self.transmit_packets,
            self.transmit_dropped,
        )


@dataclass(frozen=True)
class VirtualSwitch:
    """An external virtual switch bound to an uplink adapter (``New-VMSwitch``).

    Always has a software path (a Linux bridge on the uplink); with ``iov_enabled``
    it also offers the uplink's VFs to its NICs. ``iov_enabled`` is fixed at creation.
    """

    name: str
    uplink: str
    iov_enabled: bool


@dataclass(frozen=True)
class VirtualMachine:
    name: str
    state: VmState = VmState.OFF


@dataclass(frozen=True)
class NicConfig:
    """What the admin sets on a VM network adapter; must hold on both paths."""

    switch: str
    mac: str
    #: 0 = SR-IOV off for this NIC; 1-100 = on, relative importance when VFs are scarce.
    iov_weight: int = 100
    iov_queue_pairs_requested: int = 1
    vlan: int | None = None
    pvlan: PrivateVlan | None = None
    #: Mbit/s; None = unlimited.
    max_rate: int | None = None
    allow_mac_spoofing: bool = False
    trust: bool = False


@dataclass(frozen=True)
class NicTxBytes:
    """Bytes a VM's NIC has sent on each half of its failover pair (interface counters,
    from when the half was made): which path really carried the traffic."""

    #: The software half, on the switch's bridge.
    synthetic: int = 0
    #: The VF half (the VF the NIC holds now; 0 without one).
    vf: int = 0


@dataclass(frozen=True)
class VfAssignment:
    """The VF a NIC holds: adapter + index (+ its PCI address), and the queue pairs it got."""

    adapter: str
    index: int
    queue_pairs: int
    pci_address: str = ""


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    level: EventLevel
    code: str
    object_kind: str
    object_name: str
    message: str


@dataclass(frozen=True)
class VmNetworkAdapter:
    """A VM's NIC (``Get-VMNetworkAdapter``): its config plus the runtime allocation.

    As a failover pair it is one unit: a software (synthetic) interface on the
    switch's bridge always, and the VF in ``assignment`` when the allocator grants one.
    """

    id: int
    vm: str
    name: str
    config: NicConfig
    #: The VF held, None on the software path.
    assignment: VfAssignment | None = None
    #: When the NIC last became eligible for a VF (first come, first served).
    claim_seq: int | None = None
    #: Why an eligible NIC waits (allocation.WaitReason value), None otherwise.
    wait_reason: str | None = None
    #: VF settings the config needs, as nic_rules.required_mask (stored with the NIC).
    vf_needs: int = 0
    #: Why the machine refused this NIC a VF; it waits until that may have changed.
    grant_error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.vm}/{self.name}"


@dataclass(frozen=True)
class VmTemplate:
    """What a new VM of a hypervisor runtime is defined from (``vm create`` on libvirt):
    a q35 machine with this memory and these vCPUs, booting a disk image or a kernel.
    Runtimes whose VMs are iovctl's own records (sim, netns) ignore it."""

    memory_mib: int = 512
    vcpus: int = 1
    #: A disk image (qcow2 or raw) to boot; or ``kernel`` (+ ``initrd``, ``cmdline``).
    disk: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class VmPowerChange:
    """The hypervisor started or stopped a VM iovctl knows, whoever asked it to
    (``virsh start``, autostart, a crash, a guest shutdown)."""

    vm: str
    running: bool
    #: What the hypervisor said happened ("started by virsh", "crashed", "shut down").
    detail: str = ""


@dataclass(frozen=True)
class RuntimeFacts:
    """What readiness judges about the VM runtime. None: not checked / not asked."""

    #: "sim", "netns", "libvirt".
    kind: str
    #: Where the runtime lives (a libvirt URI), "" when it is this process.
    location: str = ""
    #: Versions as (major, minor, micro); None when unknown or not applicable.
    manager_version: tuple[int, int, int] | None = None
    hypervisor_version: tuple[int, int, int] | None = None
    #: The hypervisor offers a q35 machine type (PCIe hot-plug of a VF beside virtio).
    q35_machine: bool | None = None
    #: The runtime could be reached; False with ``error`` saying why.
    reachable: bool = True
    error: str = ""
